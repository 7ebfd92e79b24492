/**
 * The delay proxy of `pnpm bench upload`: every chunk arrives `delayMs` later, each way, in order
 * and intact, and an end passes too.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, connect, createServer } from 'node:net';
import { test } from 'node:test';
import { startDelayProxy } from '../src/delay-proxy.ts';

test('delay proxy: 4 MiB echoed through it arrive whole and in order, a round trip no sooner than 2 × delay', async () => {
  // An echo server behind the proxy.
  const echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const proxy = await startDelayProxy((echo.address() as AddressInfo).port, 40);
  try {
    const c = connect({ host: '127.0.0.1', port: proxy.port });
    await new Promise<void>((r) => c.once('connect', r));
    // A first byte's round trip.
    const t0 = performance.now();
    c.write('x');
    await new Promise<void>((r) => c.once('data', () => r()));
    const rtt = performance.now() - t0;
    assert.ok(rtt >= 79, `round trip ${rtt.toFixed(1)} ms`);
    const data = randomBytes(4 << 20);
    const got: Buffer[] = [];
    let n = 0;
    const done = new Promise<void>((r) => {
      c.on('data', (b: Buffer) => {
        got.push(b);
        n += b.length;
        if (n === data.length) r();
      });
    });
    c.write(data);
    await done;
    const h = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    assert.equal(h(Buffer.concat(got)), h(data));
    const ended = new Promise<void>((r) => c.once('end', () => r()));
    c.end();
    await ended;
  } finally {
    await proxy.stop();
    echo.close();
  }
});
