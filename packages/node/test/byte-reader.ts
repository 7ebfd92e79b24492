/** Exact byte counts off a socket, for tests that speak a binary protocol by hand. */
import type { Socket } from 'node:net';

/** Reads exact byte counts off a socket. */
export function byteReader(s: Socket): (n: number) => Promise<Buffer> {
  let buf = Buffer.alloc(0);
  let want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  const pump = (): void => {
    if (want && buf.length >= want.n) {
      const w = want;
      want = undefined;
      const out = buf.subarray(0, w.n);
      buf = buf.subarray(w.n);
      w.resolve(out);
    }
  };
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    pump();
  });
  const fail = (): void => want?.reject(new Error(`socket closed with ${buf.length} bytes unread`));
  s.on('close', fail);
  s.on('error', fail);
  return (n) =>
    new Promise((resolve, reject) => {
      want = { n, resolve, reject };
      pump();
    });
}
