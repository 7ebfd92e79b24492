/**
 * Static identity keys on disk: one X25519 secret per file, as 64 hex characters and a newline,
 * mode 0600. Generated on first use, so a relay or client has an identity without ceremony.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Keypair } from '@roamlink/core';
import {
  ErrorCode,
  fromHex,
  generateKeypair,
  keypairFromSecret,
  RoamlinkError,
} from '@roamlink/core';

export const nodeRandom = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

/** Loads the key in `file`, or creates it. Returns the keypair and whether it was created. */
export function loadOrCreateKey(file: string): { keypair: Keypair; created: boolean } {
  if (existsSync(file)) {
    const hex = readFileSync(file, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/i.test(hex)) {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `${file}: not a 32-byte hex key`);
    }
    return { keypair: keypairFromSecret(fromHex(hex)), created: false };
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const keypair = generateKeypair(nodeRandom);
  writeFileSync(file, `${Buffer.from(keypair.secretKey).toString('hex')}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { keypair, created: true };
}

/** Parses a public key given as 64 hex characters. */
export function parsePublicKey(hex: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/i.test(hex.trim())) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'a public key is 64 hex characters');
  }
  return fromHex(hex.trim());
}
