/**
 * The Node floor of `pnpm bench tunnel`: the two processes of node-pipe-hop.ts (an entry hop with
 * a SOCKS5 port and a `-L` forward, an exit hop that dials the target), which carry the bytes
 * with `stream.pipe` alone. roamlink's client and relay are two Node processes in the same chain
 * that also encrypt, frame, acknowledge and multiplex; what this pair reaches on a machine is as
 * far as they could go there, and ssh's C processes are not held to it.
 */
import { fileURLToPath } from 'node:url';
import { type NodeChild, spawnNode, stopChild } from './child.ts';
import type { SocksTunnel } from './tunnel-ssh.ts';

const HOP = fileURLToPath(new URL('./node-pipe-hop.ts', import.meta.url));

/** Starts the two hops; `-L` leads to 127.0.0.1:`forwardTo`. */
export async function startNodePipe(forwardTo: number): Promise<SocksTunnel> {
  const exit = spawnNode(HOP, ['exit']);
  let entry: NodeChild | undefined;
  const stop = async (): Promise<void> => {
    await Promise.all([exit, ...(entry ? [entry] : [])].map((h) => stopChild(h.child)));
  };
  try {
    const { port } = await exit.next((l) => typeof l.port === 'number', 'exit hop port');
    entry = spawnNode(HOP, ['entry', String(port), `127.0.0.1:${forwardTo}`]);
    const ports = await entry.next((l) => typeof l.socksPort === 'number', 'entry hop ports');
    return {
      socksPort: ports.socksPort as number,
      forwardPort: ports.forwardPort as number,
      pids: [entry.child.pid, exit.child.pid].filter((p): p is number => p !== undefined),
      info: { node: process.version },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
