/**
 * The Node floor of `pnpm bench tunnel`: the two processes of node-pipe-hop.ts (an entry hop with
 * a SOCKS5 port and a `-L` forward, an exit hop that dials the target), which carry the bytes
 * with `stream.pipe` alone. roamlink's client and relay are two Node processes in the same chain
 * that also encrypt, frame, acknowledge and multiplex; what this pair reaches on a machine is as
 * far as they could go there, and ssh's C processes are not held to it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { SocksTunnel } from './tunnel-ssh.ts';

const HOP = fileURLToPath(new URL('./node-pipe-hop.ts', import.meta.url));

function hop(args: string[]): { child: ChildProcess; ready: Promise<Record<string, number>> } {
  const child = spawn(process.execPath, [HOP, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + d).slice(-2000)));
  const ready = new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`node pipe ${args[0]}: not up in 10 s`)),
      10_000,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node pipe ${args[0]} exited (${code}): ${err}`));
    });
    createInterface({ input: child.stdout! }).once('line', (l) => {
      clearTimeout(timer);
      resolve(JSON.parse(l) as Record<string, number>);
    });
  });
  return { child, ready };
}

function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    c.once('exit', () => resolve());
    c.kill('SIGKILL');
  });
}

/** Starts the two hops; `-L` leads to 127.0.0.1:`forwardTo`. */
export async function startNodePipe(forwardTo: number): Promise<SocksTunnel> {
  const exit = hop(['exit']);
  let entry: ReturnType<typeof hop> | undefined;
  try {
    const { port } = await exit.ready;
    entry = hop(['entry', String(port), `127.0.0.1:${forwardTo}`]);
    const { socksPort, forwardPort } = await entry.ready;
    const children = [entry.child, exit.child];
    return {
      socksPort: socksPort!,
      forwardPort: forwardPort!,
      pids: children.map((c) => c.pid!),
      info: { node: process.version },
      stop: async () => {
        await Promise.all(children.map(stop));
      },
    };
  } catch (e) {
    await Promise.all([exit.child, ...(entry ? [entry.child] : [])].map(stop));
    throw e;
  }
}
