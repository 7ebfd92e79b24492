/**
 * The origin the tunnel benchmark downloads from: a plain HTTP/1.1 server on 127.0.0.1 that
 * runs in a worker thread of its own, so that it never shares an event loop with a tunnel end
 * running in the benchmark's process (the ceiling must not be the server).
 *
 * Routes:
 * - `GET /bytes?n=N`: N bytes (Content-Length N) written from one pre-filled 1 MiB buffer of
 *   random bytes (incompressible), honouring backpressure.
 * - `GET /small`: a fixed 100-byte body, for request latency on a kept-alive connection.
 * - `POST /sink`: reads the body whole and answers its length (text), for uploads.
 * Anything else: 404.
 *
 * `startOrigin()` runs it in a worker; `serveOrigin()` is the server itself (what the worker
 * runs). Bytes written for `/bytes` are added to a shared counter so the benchmark can show
 * progress and check that the server sent exactly what the client counted.
 */
import { randomFillSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

export const SMALL_BODY_BYTES = 100;
const CHUNK = 1 << 20;
const MAX_BYTES = 2 ** 40;

export interface Origin {
  port: number;
  /** Total body bytes the server has written for `/bytes` so far. */
  bytesSent(): number;
  stop(): Promise<void>;
}

/** The server itself; `counter[0]` accumulates body bytes written for `/bytes`. */
export function serveOrigin(counter: BigInt64Array): Promise<Server> {
  const chunk = randomFillSync(Buffer.allocUnsafe(CHUNK));
  const small = Buffer.alloc(SMALL_BODY_BYTES, 'r');
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://origin');
    if (req.method === 'POST' && url.pathname === '/sink') {
      let n = 0;
      req.on('data', (b: Buffer) => {
        n += b.length;
      });
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(String(n)));
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if (url.pathname === '/small') {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': SMALL_BODY_BYTES,
      });
      res.end(small);
      return;
    }
    if (url.pathname !== '/bytes') {
      res.writeHead(404).end();
      return;
    }
    const n = Number(url.searchParams.get('n'));
    if (!Number.isSafeInteger(n) || n < 0 || n > MAX_BYTES) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('n must be an integer byte count\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
    let left = n;
    let closed = false;
    res.on('close', () => {
      closed = true;
    });
    const pump = (): void => {
      while (left > 0 && !closed) {
        const k = Math.min(left, CHUNK);
        const ok = res.write(k === CHUNK ? chunk : chunk.subarray(0, k));
        left -= k;
        Atomics.add(counter, 0, BigInt(k));
        if (!ok) {
          res.once('drain', pump);
          return;
        }
      }
      if (!closed) res.end();
    };
    pump();
  });
  // Tunnels may be slow to carry the next request; never let the origin close a kept-alive
  // connection in the middle of a latency series.
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** Runs the origin in a worker thread and resolves once it listens. */
export function startOrigin(): Promise<Origin> {
  const counter = new BigInt64Array(new SharedArrayBuffer(8));
  const worker = new Worker(new URL(import.meta.url), { workerData: { counter } });
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`origin worker exited (${code})`)));
    worker.once('message', (m: { port: number }) => {
      worker.removeAllListeners('exit');
      resolve({
        port: m.port,
        bytesSent: () => Number(Atomics.load(counter, 0)),
        stop: async () => {
          await worker.terminate();
        },
      });
    });
  });
}

if (!isMainThread && parentPort && (workerData as { counter?: unknown })?.counter) {
  const { counter } = workerData as { counter: BigInt64Array };
  const server = await serveOrigin(counter);
  parentPort.postMessage({ port: (server.address() as AddressInfo).port });
}
