import assert from 'node:assert/strict';
import { test } from 'node:test';
import { onStopSignal, REPEAT_WINDOW_MS, STOP_SIGNALS, type StopSignal } from '../src/signals.ts';

/** Sends `signal` to this process and waits until the handlers have run. */
async function raise(signal: StopSignal, seen: () => number): Promise<void> {
  const before = seen();
  process.kill(process.pid, signal);
  const deadline = Date.now() + 5000;
  while (seen() === before) {
    assert.ok(Date.now() < deadline, `${signal} was not delivered`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('real signals: stop once; a duplicate or another signal is ignored; the same one after the window exits 128 + n', async () => {
  const baseline = STOP_SIGNALS.map((s) => process.listenerCount(s));
  let clock = 0;
  const stops: StopSignal[] = [];
  const exits: number[] = [];
  const forced: StopSignal[] = [];
  // A witness that counts deliveries, so the test knows when our handler has had its turn too.
  let delivered = 0;
  const witness = (): void => {
    delivered++;
  };
  for (const s of STOP_SIGNALS) process.on(s, witness);
  const dispose = onStopSignal((s) => stops.push(s), {
    now: () => clock,
    exit: (code) => exits.push(code),
    onForce: (s) => forced.push(s),
  });
  try {
    await raise('SIGINT', () => delivered);
    assert.deepEqual(stops, ['SIGINT']);
    // The same Ctrl-C forwarded by a parent, a moment later: alive, nothing more.
    clock += REPEAT_WINDOW_MS - 1;
    await raise('SIGINT', () => delivered);
    // A supervisor's SIGTERM while stopping: ignored, whenever it comes.
    clock += 10 * REPEAT_WINDOW_MS;
    await raise('SIGTERM', () => delivered);
    assert.deepEqual(stops, ['SIGINT'], 'stop ran once');
    assert.deepEqual(exits, []);
    // The person presses Ctrl-C again after the window: exit now, as the default action reports.
    await raise('SIGINT', () => delivered);
    assert.deepEqual(forced, ['SIGINT']);
    assert.deepEqual(exits, [130]);
  } finally {
    dispose();
    for (const s of STOP_SIGNALS) process.off(s, witness);
  }
  assert.deepEqual(
    STOP_SIGNALS.map((s) => process.listenerCount(s)),
    baseline,
    'dispose removed every handler',
  );
});

test('SIGTERM first: a repeated SIGTERM after the window exits 143', async () => {
  let clock = 0;
  const exits: number[] = [];
  let delivered = 0;
  const witness = (): void => {
    delivered++;
  };
  for (const s of STOP_SIGNALS) process.on(s, witness);
  const dispose = onStopSignal(() => {}, {
    now: () => clock,
    exit: (code) => exits.push(code),
    onForce: () => {},
  });
  try {
    await raise('SIGTERM', () => delivered);
    clock += REPEAT_WINDOW_MS;
    await raise('SIGTERM', () => delivered);
    assert.deepEqual(exits, [143]);
  } finally {
    dispose();
    for (const s of STOP_SIGNALS) process.off(s, witness);
  }
});
