/**
 * What the RLHTTP/1 tests share: an HttpRelayTransport on a Node HTTP server on loopback that
 * echoes every datagram (or not) and records what arrived, and a collector for a client's
 * datagrams, errors and opens.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type HttpClientOptions,
  type HttpPathView,
  type HttpRelayOptions,
  HttpRelayTransport,
} from '../src/http.ts';

export interface Relay {
  transport: HttpRelayTransport;
  server: Server;
  port: number;
  received: { d: Uint8Array; path: string; view: HttpPathView }[];
  closed: { path: string; reason: string }[];
  close(): Promise<void>;
}

export async function startRelay(
  opts: Partial<HttpRelayOptions> = {},
  echo = true,
): Promise<Relay> {
  const received: Relay['received'] = [];
  const closed: Relay['closed'] = [];
  const transport: HttpRelayTransport = new HttpRelayTransport({
    onDatagram: (d, path, view) => {
      received.push({ d, path, view });
      if (echo) transport.send(path, d);
    },
    onPathClose: (path, reason) => closed.push({ path, reason }),
    ...opts,
  });
  const server = createServer((req, res) => {
    if (!transport.handle(req, res)) {
      res.writeHead(418, { 'Content-Length': '0' });
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    transport,
    server,
    port,
    received,
    closed,
    close: () => {
      transport.close();
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Polls `pred` every 5 ms until it holds; throws after `ms`. */
export async function waitFor(pred: () => boolean, what: string, ms = 3000): Promise<void> {
  const t0 = performance.now();
  while (!pred()) {
    if (performance.now() - t0 > ms) throw new Error(`timeout: ${what}`);
    await sleep(5);
  }
}

export const bytes = (...v: number[]): Uint8Array => new Uint8Array(v);

/** Collects what a client receives; `wait(n)` resolves once n datagrams are in. */
export function collector() {
  const got: Uint8Array[] = [];
  const errors: string[] = [];
  let opened = 0;
  let waiter: (() => void) | undefined;
  const check = (): void => waiter?.();
  const opts: Pick<HttpClientOptions, 'onDatagram' | 'onError' | 'onOpen'> = {
    onDatagram: (d) => {
      got.push(d);
      check();
    },
    onError: (_p, r) => {
      errors.push(r);
      check();
    },
    onOpen: () => {
      opened++;
    },
  };
  const until = (pred: () => boolean, what: string, ms = 5000): Promise<void> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timeout: ${what} (${errors.join(', ')})`)), ms);
      waiter = () => {
        if (pred()) {
          clearTimeout(t);
          waiter = undefined;
          resolve();
        }
      };
      waiter();
    });
  return { got, errors, opts, until, opened: () => opened };
}
