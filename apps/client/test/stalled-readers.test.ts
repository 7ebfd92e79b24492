/**
 * Readers that stop, with the real relay and client processes: four downloads paused by their
 * readers after 32 MiB each, or four uploads to a server that stops reading after 32 MiB. Each stopped stream is
 * held by its own credit (the server behind it stops being read: memory stays bounded); the
 * session's other streams, new ones included, go on (PROTOCOL §8.6, Mux `sessionMemory`). Before,
 * two such streams whose windows had grown stopped the whole session.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import {
  connectArgs,
  echoed,
  hostPort,
  type RelayFixture,
  run,
  serve,
  sleep,
  tcpEcho,
  withRelay,
} from './cli-process.ts';

/** Resolves with `p`, or rejects with `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A client with `-L` forwards to each of `ports` (in order); resolves with the forwards' local
 * ports once it has registered.
 */
async function clientWithForwards(p: RelayFixture, ports: number[]): Promise<number[]> {
  const c = p.track(
    run(
      connectArgs(
        p.listening,
        p.dir,
        ports.flatMap((port) => ['-L', `127.0.0.1:0:127.0.0.1:${port}`]),
      ),
    ),
  );
  await c.until((l) => l.msg === 'registered', 'registration');
  const out: number[] = [];
  for (const port of ports) {
    const f = await c.until(
      (l) => l.msg === 'forward-listening' && l.spec === `127.0.0.1:0:127.0.0.1:${port}`,
      `forward to ${port}`,
    );
    out.push(hostPort(String(f.address)).port);
  }
  return out;
}

/** Connects to a forward; errors are kept, not thrown. */
async function open(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

/** Reads `bytes` from `s`, then pauses it; resolves with what it read (at least `bytes`). */
function readThenPause(s: Socket, bytes: number): Promise<number> {
  return new Promise((resolve) => {
    let n = 0;
    const onData = (d: Buffer): void => {
      n += d.length;
      if (n >= bytes) {
        s.off('data', onData);
        s.pause();
        resolve(n);
      }
    };
    s.on('data', onData);
  });
}

const MiB = 1 << 20;

test('four downloads whose readers stop: the server behind each is held back, and the session goes on (a new round trip, a new 32 MiB download)', {
  timeout: 120_000,
}, async () => {
  // An endless download: 1 MiB chunks for as long as the socket takes them; written bytes counted.
  let written = 0;
  const chunk = Buffer.alloc(MiB, 0x5a);
  const endless = await serve((s) => {
    const go = (): void => {
      while (!s.destroyed && s.write(chunk)) written += chunk.length;
      if (!s.destroyed) written += chunk.length;
    };
    s.on('drain', go);
    go();
  });
  const echo = await tcpEcho();
  const stalled: Socket[] = [];
  try {
    await withRelay(['--egress-allow', '127.0.0.1/32'], async (p) => {
      const [big, small] = await clientWithForwards(p, [endless.port, echo.port]);
      for (let i = 0; i < 4; i++) {
        const s = await open(big!);
        stalled.push(s);
        await within(readThenPause(s, 32 * MiB), 30_000, `download ${i} reads 32 MiB`);
      }
      // Held back: what the endless server writes stops growing (its sockets stay full).
      await sleep(1500);
      const at = written;
      await sleep(1500);
      const grew = written - at;
      assert.ok(grew <= 2 * MiB, `the paused downloads hold the server back (+${grew} bytes)`);

      assert.equal(
        await within(echoed(`127.0.0.1:${small!}`, 'still there'), 5000, 'a round trip'),
        'still there',
      );
      const fresh = await open(big!);
      const n = await within(readThenPause(fresh, 32 * MiB), 30_000, 'a new 32 MiB download');
      assert.ok(n >= 32 * MiB);
      fresh.destroy();
      // Gone before the relay stops: its graceful shutdown waits for open streams.
      for (const x of stalled) x.destroy();
    });
  } finally {
    for (const s of stalled) s.destroy();
    endless.server.close();
    echo.server.close();
  }
});

test('four uploads to a server that stops reading after 32 MiB: the uploads are held back, and the session goes on (a round trip, 8 MiB up and back intact)', {
  timeout: 120_000,
}, async () => {
  // Reads the first 32 MiB of each upload quickly (so that the stream's window grows, as a
  // fast server's would), then never again.
  const sinkRead: number[] = [];
  const sinkConns: Socket[] = [];
  const sink = await serve((s) => {
    sinkConns.push(s);
    const k = sinkRead.push(0) - 1;
    s.on('data', (d: Buffer) => {
      sinkRead[k]! += d.length;
    });
    void readThenPause(s, 32 * MiB);
  });
  const echo = await tcpEcho();
  const uploads: Socket[] = [];
  try {
    await withRelay(['--egress-allow', '127.0.0.1/32', '--metrics'], async (p) => {
      const held = async (): Promise<number> => {
        const text = await (await fetch(`http://${String(p.listening.http)}/metrics`)).text();
        const m = /^roamlink_stream_held_bytes\{direction="from_clients"\} (\d+)$/m.exec(text);
        assert.ok(m, 'roamlink_stream_held_bytes{direction="from_clients"} is served');
        return Number(m[1]);
      };
      const [toSink, toEcho] = await clientWithForwards(p, [sink.port, echo.port]);
      // Each upload writes 1 MiB chunks while its socket takes them; a socket that stays full
      // for a second is held back.
      let sent = 0;
      const chunk = randomBytes(MiB);
      for (let i = 0; i < 4; i++) {
        const s = await open(toSink!);
        uploads.push(s);
        const go = (): void => {
          while (!s.destroyed) {
            sent += chunk.length;
            if (!s.write(chunk)) break;
          }
        };
        s.on('drain', go);
        go();
      }
      await sleep(4000);
      const at = sent;
      await sleep(1500);
      assert.ok(sent - at <= 2 * MiB, `the uploads are held back (+${sent - at} bytes)`);
      assert.ok(
        sinkRead.length === 4 && sinkRead.every((n) => n >= 32 * MiB),
        `each upload got 32 MiB to the server: ${sinkRead.join(' ')}`,
      );
      // What the relay holds for the stopped server shows in its metrics.
      const holding = await held();
      console.log(`# relay holds ${(holding / MiB).toFixed(1)} MiB for the stopped server`);
      assert.ok(holding >= 8 * MiB, `the relay's metrics show what it holds (${holding} bytes)`);

      assert.equal(
        await within(echoed(`127.0.0.1:${toEcho!}`, 'hello'), 5000, 'a round trip'),
        'hello',
      );
      // 8 MiB up to the echo server and back, compared by hash.
      const data = randomBytes(8 * MiB);
      const s = await open(toEcho!);
      const h = createHash('sha256');
      let n = 0;
      const done = new Promise<void>((resolve) => {
        s.on('data', (d: Buffer) => {
          h.update(d);
          n += d.length;
          if (n >= data.length) resolve();
        });
      });
      s.end(data);
      await within(done, 30_000, '8 MiB up and back');
      assert.equal(n, data.length);
      assert.equal(h.digest('hex'), createHash('sha256').update(data).digest('hex'));
      s.destroy();
      for (const x of uploads) x.destroy();
      // Data the client sent is delivered even after it closed, so the relay holds it until the
      // server goes away too; then it lets go of it.
      for (const x of sinkConns) x.destroy();
      let after = await held();
      for (let i = 0; i < 40 && after > 0; i++) {
        await sleep(50);
        after = await held();
      }
      assert.equal(after, 0, 'nothing held once the streams are gone');
    });
  } finally {
    for (const s of uploads) s.destroy();
    sink.server.close();
    echo.server.close();
  }
});
