/**
 * The Worker under test: bundled with esbuild (as wrangler bundles it) and run on workerd through
 * miniflare, with its Durable Object binding and storage in a directory that outlives one
 * workerd process (so a test can restart it). Plus a small client built from the real Node
 * machinery (ClientSession, Mux, WebSocketTransport, HttpStreamClient/HttpPollClient) that names
 * its session with a routing id on every request, and a TCP echo server as the streams' target.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import type { Candidate, SaKeyInfo, SessionEvent } from '@roamlink/core';
import {
  ClientSession,
  decodeRrep,
  Encapsulation,
  EspReceiver,
  generateKeypair,
  type Keypair,
  Mux,
  NextHeader,
  newEspOpened,
  nobleProvider,
  RegFrameType,
  toHex,
} from '@roamlink/core';
import {
  HttpPollClient,
  HttpStreamClient,
  isHttpPath,
  MuxHost,
  SessionDriver,
  WebSocketTransport,
  WsCloseCode,
} from '@roamlink/node';
import { Miniflare } from 'miniflare';
import { bundleWorker } from '../scripts/bundle.ts';

/** The workerd build miniflare ships supports dates up to its own. */
export const COMPATIBILITY_DATE = '2026-07-30';

const rnd = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * The Worker as one ES module (what `wrangler deploy` uploads, scripts/bundle.ts: the status
 * page's files in it), and how long the build took.
 */
export function buildWorker(): Promise<{ code: string; ms: number; bytes: number }> {
  return bundleWorker();
}

export interface RelayKeys {
  relay: Keypair;
  client: Keypair;
}

export function makeKeys(): RelayKeys {
  return { relay: generateKeypair(rnd), client: generateKeypair(rnd) };
}

/** One workerd process serving the Worker; `persist` keeps Durable Object storage across them. */
export async function startWorker(o: {
  code: string;
  keys: RelayKeys;
  persist: string;
  port?: number;
  /** Serve https:// (and wss://) with this PEM certificate and key, as the edge does. */
  tls?: { certPath: string; keyPath: string };
}): Promise<{ mf: Miniflare; url: URL; port: number }> {
  const mf = new Miniflare({
    ...(o.tls ? { https: true, httpsCertPath: o.tls.certPath, httpsKeyPath: o.tls.keyPath } : {}),
    modules: true,
    script: o.code,
    compatibilityDate: COMPATIBILITY_DATE,
    durableObjects: { SESSIONS: 'RoamlinkSession' },
    durableObjectsPersist: o.persist,
    host: '127.0.0.1',
    ...(o.port ? { port: o.port } : {}),
    bindings: {
      ROAMLINK_RELAY_KEY: toHex(o.keys.relay.secretKey),
      ROAMLINK_ALLOW_CLIENTS: toHex(o.keys.client.publicKey),
      // The echo target is on loopback, which the policy refuses unless a rule names it.
      ROAMLINK_EGRESS_ALLOW: '127.0.0.1',
      ROAMLINK_DEBUG: '1',
    },
  });
  const url = await mf.ready;
  return { mf, url, port: Number(url.port) };
}

/** A TCP echo server on 127.0.0.1. */
export async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : 0 };
}

export type HttpClient = HttpStreamClient | HttpPollClient;

/**
 * The client side, wired as the Node client wires it (apps/client/src/tunnel.ts), with the
 * session routing id on every request: `?sid=` on the WebSocket URL, `Roamlink-Session` on HTTP.
 */
export class TestClient {
  readonly sid = toHex(rnd(16));
  readonly session: ClientSession<string>;
  readonly driver: SessionDriver<string, SessionEvent>;
  readonly host: MuxHost;
  readonly ws: WebSocketTransport;
  readonly http = new Map<string, HttpClient>();
  readonly events: SessionEvent[] = [];
  /** RREPs seen (decrypted with the key log): what the relay said it supports. */
  readonly rreps: ReturnType<typeof decodeRrep>[] = [];
  readonly pathErrors: string[] = [];
  #lastPath: string | undefined;
  readonly #inbound: EspReceiver[] = [];
  base = '';

  constructor(keys: RelayKeys) {
    this.session = new ClientSession<string>({
      staticKeypair: keys.client,
      relayStaticKey: keys.relay.publicKey,
      provider: nobleProvider,
      random: rnd,
      keyLog: true,
    });
    this.driver = new SessionDriver<string, SessionEvent>(
      this.session,
      (p, d) => this.#sendOn(p, d),
      (e) => this.#event(e),
    );
    this.host = new MuxHost({
      mux: new Mux({ role: 'client', now: Date.now(), maxPayload: 60_000, pacing: false }),
      canSend: () =>
        this.session.state === 'established' &&
        this.session.dataPaths.every((p) => !(isHttpPath(p) && this.http.get(p)?.congested)),
      send: (payload, t) => {
        const pkt = this.session.send(payload, NextHeader.ROAMLINK, t);
        if (pkt) for (const p of this.session.dataPaths) this.#sendOn(p, pkt);
        this.driver.pump();
      },
    });
    this.ws = new WebSocketTransport({
      onDatagram: (d, p) => this.#receive(d, p),
      onPathClose: (p, reason) => this.pathErrors.push(`${p} ${reason}`),
    });
  }

  /** Dials the WebSocket path; resolves with its candidate. */
  async dialWs(base: string): Promise<Candidate<string>> {
    this.base = base;
    const url = `${base.replace(/^http/, 'ws')}/rl/ws?sid=${this.sid}`;
    const path = await this.ws.connect(url, { 'User-Agent': 'roamlink-test' });
    const v = this.ws.view(path)!;
    return {
      path,
      info: {
        encapsulation: Encapsulation.WEBSOCKET,
        view: {
          srcAddr: v.local.address,
          srcPort: v.local.port,
          dstAddr: v.remote.address,
          dstPort: v.remote.port,
          url: v.url,
          ...(v.host === undefined ? {} : { host: v.host }),
          headers: v.headers,
        },
      },
    };
  }

  /** Opens an HTTP path (streaming or polling); its first request leaves with its first datagram. */
  openHttp(base: string, mode: 'stream' | 'poll'): Candidate<string> {
    this.base = base;
    const Kind = mode === 'stream' ? HttpStreamClient : HttpPollClient;
    const c = new Kind({
      baseUrl: `${base}/rl`,
      headers: { 'Roamlink-Session': this.sid, 'User-Agent': 'roamlink-test' },
      onDatagram: (d, p) => this.#receive(d, p),
      onError: (p, reason) => {
        this.pathErrors.push(`${p} ${reason}`);
        this.http.delete(p);
      },
    });
    this.http.set(c.pathId, c);
    const v = c.view();
    return {
      path: c.pathId,
      info: {
        encapsulation: mode === 'stream' ? Encapsulation.HTTP_STREAM : Encapsulation.HTTP_POLL,
        view: {
          dstAddr: v.remote.address,
          dstPort: v.remote.port,
          url: v.url,
          ...(v.host === undefined ? {} : { host: v.host }),
          headers: v.headers,
        },
      },
    };
  }

  connect(candidates: Candidate<string>[]): void {
    this.session.connect(candidates, this.driver.now());
    this.driver.pump();
  }

  move(candidates: Candidate<string>[], reason: string): void {
    this.session.move(candidates, this.driver.now(), reason);
    this.host.mux.pathChanged(this.driver.now(), reason);
    this.driver.pump();
    this.host.pump();
  }

  /** Handshakes completed (first and rekeys). */
  get handshakes(): number {
    return this.events.filter((e) => e.type === 'established').length;
  }

  async close(): Promise<void> {
    this.host.close();
    this.driver.close();
    for (const c of this.http.values()) c.close();
    await this.ws.close(WsCloseCode.CLIENT_CLOSING, 'client closing');
  }

  #sendOn(path: string, data: Uint8Array): void {
    if (isHttpPath(path)) this.http.get(path)?.send(data);
    else this.ws.send(path, data);
  }

  #receive(data: Uint8Array, path: string): void {
    this.#peekRrep(data);
    const got = this.session.receive(data, path, this.driver.now());
    if (got && got.nextHeader === NextHeader.ROAMLINK && this.host.mux.isMuxFrame(got.payload)) {
      this.host.receive(got.payload);
    }
    this.driver.pump();
    this.#checkPath();
  }

  #event(e: SessionEvent): void {
    if (e.type === 'sa-keys') {
      this.#keys(e.info);
      return;
    }
    this.events.push(e);
    if (e.type === 'established' || e.type === 'registered') this.host.pump();
    this.#checkPath();
  }

  #checkPath(): void {
    const p = this.session.path;
    if (p === undefined || p === this.#lastPath) return;
    const first = this.#lastPath === undefined;
    this.#lastPath = p;
    this.host.mux.setMaxPayload(60_000);
    if (!first) this.host.mux.pathChanged(this.driver.now(), 'path-changed');
    this.host.pump();
  }

  /** The key log's inbound keys, to read the relay's RREPs independently of the session. */
  #keys(info: SaKeyInfo): void {
    if (info.direction !== 'inbound') return;
    this.#inbound.push(
      new EspReceiver({
        spi: info.spi,
        aead: nobleProvider.aead(info.suite, info.keys.key),
        salt: info.keys.salt,
      }),
    );
  }

  #peekRrep(data: Uint8Array): void {
    if (data.length < 36 || (data[0] === 0 && data[1] === 0 && data[2] === 0 && data[3] === 0)) {
      return;
    }
    const out = newEspOpened();
    for (const rx of this.#inbound) {
      if (rx.open(data.slice(), out) !== 0) continue;
      if (out.nextHeader === NextHeader.ROAMLINK && out.payload[0] === RegFrameType.RREP) {
        this.rreps.push(decodeRrep(out.payload));
      }
      return;
    }
  }
}

/** Resolves when `cond()` holds (checked every 20 ms), rejects after `ms`. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends `data` through `duplex` and collects as many bytes back; resolves with them. */
export function echoThrough(
  duplex: NodeJS.ReadWriteStream & { destroyed?: boolean },
  data: Uint8Array,
  ms: number,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const timer = setTimeout(
      () => reject(new Error(`echo: ${n} of ${data.length} bytes after ${ms} ms`)),
      ms,
    );
    const onData = (b: Buffer): void => {
      chunks.push(b);
      n += b.length;
      if (n >= data.length) {
        clearTimeout(timer);
        duplex.off('data', onData);
        resolve(new Uint8Array(Buffer.concat(chunks)));
      }
    };
    duplex.on('data', onData);
    duplex.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    duplex.write(Buffer.from(data));
  });
}
