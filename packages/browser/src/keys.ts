/**
 * Randomness and the client's static key in a browser.
 *
 * Randomness is `crypto.getRandomValues` (Web Crypto), in pieces of at most 65 536 bytes, the
 * most one call may fill. The static key is an X25519 key pair made by the core's
 * `generateKeypair` and kept, unless the caller gives one, in `localStorage` (pages) or IndexedDB
 * (workers, where `localStorage` does not exist), under one name per origin, as 64 hex digits of
 * the secret key. Where neither is usable (private modes that throw, a runtime without them) the
 * key lives only as long as the page: the relay then sees a new client on every load, which an
 * allow-list refuses.
 *
 * Anything that runs script on the page's origin can read a key kept this way (as it can read
 * cookies without HttpOnly): a relay that must tell clients apart should not trust such a key more
 * than it trusts the origin. A non-extractable Web Crypto key would not help: the Noise handshake
 * runs in JavaScript and needs the secret's bytes.
 */
import type { Keypair, RandomBytes } from '@roamlink/core';
import { fromHex, generateKeypair, keypairFromSecret, toHex } from '@roamlink/core';

/** `crypto.getRandomValues` as the core's RandomBytes. */
export const browserRandom: RandomBytes = (n: number): Uint8Array => {
  const out = new Uint8Array(n);
  for (let o = 0; o < n; o += 65_536) {
    globalThis.crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65_536)));
  }
  return out;
};

/** Where the client key is kept: "auto" tries localStorage, then IndexedDB, then memory only. */
export type KeyStorage = 'auto' | 'localStorage' | 'indexedDB' | 'none';

export const DEFAULT_KEY_NAME = 'roamlink.client-key';

export interface StoredKey {
  keypair: Keypair;
  /** Where it is kept now ("memory": nowhere that outlives the page). */
  storage: 'localStorage' | 'indexedDB' | 'memory';
  /** True when it was made now. */
  created: boolean;
}

const DB_NAME = 'roamlink';
const DB_STORE = 'keys';

function localStore(): Storage | undefined {
  try {
    // Reading the property itself throws where storage is blocked.
    const s = (globalThis as { localStorage?: Storage }).localStorage;
    return s ?? undefined;
  } catch {
    return undefined;
  }
}

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

async function openDb(): Promise<IDBDatabase | undefined> {
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!idb) return undefined;
  try {
    const r = idb.open(DB_NAME, 1);
    r.onupgradeneeded = () => {
      if (!r.result.objectStoreNames.contains(DB_STORE)) r.result.createObjectStore(DB_STORE);
    };
    return await request(r);
  } catch {
    return undefined;
  }
}

async function idbGet(db: IDBDatabase, name: string): Promise<string | undefined> {
  const v = await request(db.transaction(DB_STORE, 'readonly').objectStore(DB_STORE).get(name));
  return typeof v === 'string' ? v : undefined;
}

async function idbPut(db: IDBDatabase, name: string, value: string): Promise<void> {
  const tx = db.transaction(DB_STORE, 'readwrite');
  tx.objectStore(DB_STORE).put(value, name);
  await new Promise<void>((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** A stored value that is not 64 hex digits is replaced, not trusted. */
function parseSecret(hex: string | null | undefined): Keypair | undefined {
  if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/i.test(hex)) return undefined;
  return keypairFromSecret(fromHex(hex));
}

/**
 * The client's key pair from `storage` under `name`, made (and kept there) on first use. Never
 * throws for a storage that is missing or blocked: the key is then kept in memory only.
 */
export async function loadOrCreateClientKey(
  storage: KeyStorage = 'auto',
  name: string = DEFAULT_KEY_NAME,
  random: RandomBytes = browserRandom,
): Promise<StoredKey> {
  if (storage === 'auto' || storage === 'localStorage') {
    const ls = localStore();
    if (ls) {
      try {
        const found = parseSecret(ls.getItem(name));
        if (found) return { keypair: found, storage: 'localStorage', created: false };
        const keypair = generateKeypair(random);
        ls.setItem(name, toHex(keypair.secretKey));
        return { keypair, storage: 'localStorage', created: true };
      } catch {
        // Quota or a blocked store: try the next place.
      }
    }
  }
  if (storage === 'auto' || storage === 'indexedDB') {
    const db = await openDb();
    if (db) {
      try {
        const found = parseSecret(await idbGet(db, name));
        if (found) return { keypair: found, storage: 'indexedDB', created: false };
        const keypair = generateKeypair(random);
        await idbPut(db, name, toHex(keypair.secretKey));
        return { keypair, storage: 'indexedDB', created: true };
      } catch {
        // Fall through to memory.
      } finally {
        db.close();
      }
    }
  }
  return { keypair: generateKeypair(random), storage: 'memory', created: true };
}
