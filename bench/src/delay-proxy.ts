/**
 * A TCP proxy on 127.0.0.1 that holds every chunk `delayMs` before passing it on, each way, in
 * order: a wide-area round trip of 2 × delayMs in front of a local server, for `pnpm bench upload`
 * (no `tc netem` here). What it holds is bounded: past 8 MiB in flight one way, it stops reading
 * that way until the backlog is written.
 */
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

const MAX_HELD_BYTES = 8 << 20;

export interface DelayProxy {
  port: number;
  stop(): Promise<void>;
}

function delayed(from: Socket, to: Socket, delayMs: number): void {
  let held = 0;
  from.on('data', (b: Buffer) => {
    held += b.length;
    if (held > MAX_HELD_BYTES) from.pause();
    setTimeout(() => {
      held -= b.length;
      if (!to.destroyed) to.write(b);
      if (held <= MAX_HELD_BYTES && from.isPaused()) from.resume();
    }, delayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), delayMs));
  from.on('error', () => to.destroy());
}

export async function startDelayProxy(targetPort: number, delayMs: number): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((a) => {
    const b = connect({ host: '127.0.0.1', port: targetPort });
    for (const s of [a, b]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    delayed(a, b, delayMs);
    delayed(b, a, delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
