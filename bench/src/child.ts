/**
 * The benchmark's own child processes (roamlink's CLI, the node pipe's hops): Node scripts that
 * report on stdout one JSON object per line, and that stop on SIGINT.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export type Line = Record<string, unknown>;

export interface NodeChild {
  child: ChildProcess;
  /** The first line (so far or to come) that `pred` accepts; rejects after 15 s or on exit. */
  next: (pred: (l: Line) => boolean, what: string) => Promise<Line>;
}

/** Runs `script` with this Node; stdout lines that are not JSON come as `{ raw }`. */
export function spawnNode(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): NodeChild {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
  const lines: Line[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Line);
    } catch {
      lines.push({ raw: l });
    }
    for (const w of waiters) w();
  });
  const next = (pred: (l: Line) => boolean, what: string): Promise<Line> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no ${what} in 15 s: ${err}`));
      }, 15_000);
      const onExit = (code: number | null): void => {
        clearTimeout(timer);
        reject(new Error(`exited (${code}) before ${what}: ${err}`));
      };
      child.once('exit', onExit);
      const check = (): void => {
        const hit = lines.find(pred);
        if (hit) {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
          resolve(hit);
        }
      };
      waiters.add(check);
      check();
    });
  return { child, next };
}

/** SIGINT, then SIGKILL if it has not exited after 3 s. */
export const stopChild = (c: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGINT');
    setTimeout(() => c.kill('SIGKILL'), 3000).unref();
  });
