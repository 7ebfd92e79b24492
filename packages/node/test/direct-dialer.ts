/**
 * Test stand-ins for the tunnel: a dialer that connects straight to the target with node:net (and
 * carries UDP through one real dgram socket per association), and one that rejects every CONNECT
 * with a given TunnelError code.
 */
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  type TunnelDatagrams,
  type TunnelDialer,
  TunnelError,
  type TunnelErrorCode,
  type TunnelTarget,
} from '../src/socks5.ts';

const CODES: Record<string, TunnelErrorCode> = {
  ECONNREFUSED: 'refused',
  ENOTFOUND: 'dns',
  EAI_AGAIN: 'dns',
  ETIMEDOUT: 'timeout',
  EHOSTUNREACH: 'unreachable',
  ENETUNREACH: 'network',
};

export interface DirectDialer extends TunnelDialer {
  /** Every target asked for, as given. */
  readonly targets: TunnelTarget[];
  /** Sockets handed out, in order. */
  readonly streams: Socket[];
  /** Associations opened and how many were closed. */
  readonly udp: { opened: number; closed: number };
}

export function directDialer(o: { udp?: boolean } = {}): DirectDialer {
  const targets: TunnelTarget[] = [];
  const streams: Socket[] = [];
  const udp = { opened: 0, closed: 0 };
  const d: DirectDialer = {
    targets,
    streams,
    udp,
    connect(target, signal): Promise<Duplex> {
      targets.push(target);
      return new Promise((resolve, reject) => {
        const s = connect({ host: target.host, port: target.port, allowHalfOpen: true });
        const fail = (e: NodeJS.ErrnoException): void => {
          s.destroy();
          reject(new TunnelError(CODES[e.code ?? ''] ?? 'internal', e.message, { cause: e }));
        };
        s.once('error', fail);
        signal?.addEventListener('abort', () => s.destroy(), { once: true });
        s.once('connect', () => {
          s.off('error', fail);
          streams.push(s);
          resolve(s);
        });
      });
    },
  };
  if (o.udp !== false) {
    d.openDatagrams = (): TunnelDatagrams => {
      udp.opened++;
      const sock = createSocket('udp4');
      sock.bind(0, '127.0.0.1');
      let cb: (from: TunnelTarget, data: Uint8Array) => void = () => {};
      sock.on('message', (msg, rinfo) => cb({ host: rinfo.address, port: rinfo.port }, msg));
      return {
        send: (target, data) => sock.send(data, target.port, target.host),
        onMessage: (f) => {
          cb = f;
        },
        close: () => {
          udp.closed++;
          sock.close();
        },
      };
    };
  }
  return d;
}

/** A dialer whose every CONNECT fails with `err` (a TunnelError, or anything else). */
export function failingDialer(err: unknown): TunnelDialer {
  return { connect: () => Promise.reject(err) };
}
