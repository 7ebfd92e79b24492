/**
 * A scripted HTTP proxy for tests: it reads request heads and answers each as `answer` says.
 */
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';

export interface Scripted {
  port: number;
  url: string;
  /** Each CONNECT request's head as received. */
  heads: string[];
  /** Connections still open on the proxy's side. */
  open(): number;
  close(): Promise<void>;
}

/**
 * A scripted proxy: `answer` is called with each request head; it returns true to read another
 * request on the same connection (after a 407), anything else to stop reading (the connection
 * is a tunnel, or closed).
 */
export async function scripted(answer: (s: Socket, head: string) => unknown): Promise<Scripted> {
  const heads: string[] = [];
  const conns = new Set<Socket>();
  const server: Server = createServer((s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => {});
    let buf = '';
    const onData = (b: Buffer): void => {
      buf += b.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        heads.push(head);
        if (answer(s, head) !== true) {
          s.off('data', onData);
          return;
        }
      }
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    heads,
    open: () => conns.size,
    close: () => {
      for (const s of conns) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
