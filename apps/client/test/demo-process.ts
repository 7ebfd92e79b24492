/**
 * Runs `./dev run`'s demo (a relay and a client as real processes on loopback, ephemeral ports)
 * for a real-process test: waits for events the client logs (`--log-events`), sends it signals,
 * and returns its JSON summary with the events that came before it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export type Line = Record<string, unknown>;

export interface DemoControl {
  /** Resolves when a logged line matches; fails the test after 10 s. */
  until(pred: (l: Line) => boolean, what: string): Promise<void>;
  signal(sig: NodeJS.Signals): void;
  sleep(ms: number): Promise<void>;
}

export interface DemoResult {
  summary: Line;
  events: Line[];
  /** The summary as JSON, for assertion messages. */
  detail: string;
}

export async function runDemo(
  args: string[],
  script: (d: DemoControl) => Promise<void>,
  opts: { env?: Record<string, string> } = {},
): Promise<DemoResult> {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-demo-'));
  const demo = fileURLToPath(new URL('../src/echo-demo.ts', import.meta.url));
  const child = spawn(
    process.execPath,
    [demo, '--port', '0', '--dir', dir, '--log-events', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } },
  );
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const lines: Line[] = [];
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  let onLine = (): void => {};
  createInterface({ input: child.stdout }).on('line', (l) => {
    lines.push(JSON.parse(l) as Line);
    onLine();
  });
  const control: DemoControl = {
    until: (pred, what) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${what} in 10 s: ${err}`)), 10_000);
        onLine = () => {
          if (lines.some(pred)) {
            clearTimeout(timer);
            resolve();
          }
        };
        onLine();
      }),
    signal: (sig) => child.kill(sig),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  };
  try {
    await script(control);
  } finally {
    child.kill('SIGINT');
  }
  assert.equal(await exited, 0, `demo failed: ${err}`);
  const summary = lines.at(-1)!;
  return { summary, events: lines.slice(0, -1), detail: JSON.stringify(summary) };
}

/**
 * No ESP drops but replays: racing encapsulations and the copies sent right after a move send
 * some packets twice on purpose, and the replay window drops the second copy.
 */
export function assertOnlyReplayDrops(r: DemoResult): void {
  const drops = r.summary.espDropsByReason as Record<string, number>;
  for (const [reason, n] of Object.entries(drops)) {
    if (reason !== 'replay') assert.equal(n, 0, `${reason}: ${r.detail}`);
  }
}

/**
 * A move kept the SA: one handshake, no rekey, a registration round per move, the session on
 * `before` until the move (for `reason`) and on `after` from then on, echoes after the move.
 */
export function assertMoved(r: DemoResult, reason: string, before: string, after: string): void {
  const { summary, events, detail } = r;
  assert.equal(summary.state, 'established', detail);
  assert.equal(summary.encapsulation, after, detail);
  // The move was a registration round on the same SA: no new key exchange, no rekey in 4 s.
  assert.equal(summary.handshakes, 1, detail);
  assert.equal(summary.rekeys, 0, detail);
  assert.ok((summary.registrations as number) >= 2, detail);
  assert.equal(summary.moves, 1, detail);
  const moved = events.findIndex((e) => e.event === 'moved');
  assert.ok(moved > 0, JSON.stringify(events));
  assert.equal(events[moved]!.reason, reason);
  const regBefore = events.slice(0, moved).filter((e) => e.event === 'registered');
  const regAfter = events.slice(moved).filter((e) => e.event === 'registered');
  assert.equal(regBefore.at(-1)?.encapsulation, before, JSON.stringify(events));
  assert.ok(regAfter.length >= 1, JSON.stringify(events));
  assert.ok(
    regAfter.every((e) => e.encapsulation === after),
    JSON.stringify(events),
  );
  // Echoes kept coming after the move: 2.5 s at one ping per 100 ms, most of them answered.
  assert.ok((summary.echoesAfterMove as number) >= 15, detail);
  // Only an echo or two in flight on the old path when it closed may be missing.
  assert.ok((summary.pingsSent as number) - (summary.pongs as number) <= 3, detail);
  assertOnlyReplayDrops(r);
}
