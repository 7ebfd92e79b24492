/**
 * The Node side of the stream layer's event-loop timing: how MuxHost and corkedPipe trade one
 * syscall per chunk against latency. A lone write on an idle path must leave at once; writes of
 * one turn while data is in flight are gathered into full packets; a pipe writes the first chunk
 * of a turn at once and the rest of the turn in one writev.
 */
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { Mux } from '@roamlink/core';
import { CORK_BELOW_BYTES, corkedPipe, MuxHost } from '../src/index.ts';

const T = { host: '127.0.0.1', port: 9 };
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A client MuxHost whose packets go straight into a relay Mux, which accepts and consumes. */
function pair() {
  const relay = new Mux({ role: 'relay', now: 0, pacing: false, maxPayload: 60_000 });
  const sent: number[] = [];
  let now = 0;
  const host = new MuxHost({
    mux: new Mux({ role: 'client', now: 0, pacing: false, maxPayload: 60_000 }),
    canSend: () => true,
    send: (p) => {
      sent.push(p.length);
      relay.receive(p, now);
      for (let e = relay.pollEvent(); e; e = relay.pollEvent()) {
        if (e.type === 'stream-open') relay.accept(e.id);
        if (e.type === 'stream-data') relay.consumed(e.id, e.data.length);
      }
    },
    clock: () => now,
  });
  /** The relay's ACKs and credit back to the client. */
  const answer = (): void => {
    now += 1;
    relay.handleTimeout(now + 30);
    for (let p = relay.pollPacket(now + 30); p; p = relay.pollPacket(now + 30)) host.receive(p);
  };
  return { host, sent, answer };
}

test('a write on an idle path is sent at once; writes of one turn in flight are gathered', async () => {
  const { host, sent, answer } = pair();
  const opened = host.open(T);
  host.pump();
  answer();
  const d = await opened;
  answer();
  assert.equal(host.mux.idle, true);
  const before = sent.length;
  d.write(Buffer.alloc(100, 1));
  // Synchronously, before the turn ends: a request does not wait for the event loop.
  assert.equal(sent.length, before + 1, 'sent at once');
  // Now data is in flight: 4 writes of 30 000 bytes in one turn leave as two full packets,
  // not four half-empty ones.
  assert.equal(host.mux.idle, false);
  const mark = sent.length;
  for (let i = 0; i < 4; i++) d.write(Buffer.alloc(30_000, 2));
  assert.equal(sent.length, mark, 'nothing yet: gathered until the turn is over');
  await turn();
  assert.deepEqual(
    sent.slice(mark).map((n) => Math.round(n / 1000)),
    [60, 60],
    'two full packets',
  );
  d.on('error', () => {}); // closing the host ends the stream with 'tunnel closed'
  host.close();
});

/** A Writable that records how it was called: `write N` or `writev N+M+...`. */
function recorder(calls: string[]): Writable {
  return new Writable({
    write(chunk: Buffer, _e, cb) {
      calls.push(`write ${chunk.length}`);
      cb();
    },
    writev(chunks, cb) {
      calls.push(`writev ${chunks.map((c) => (c.chunk as Buffer).length).join('+')}`);
      cb();
    },
  });
}

test('corkedPipe: the first chunk of a turn at once, the rest of the turn in one writev', async () => {
  const calls: string[] = [];
  const src = new PassThrough();
  corkedPipe(src, recorder(calls));
  src.write(Buffer.alloc(1));
  await turn();
  assert.deepEqual(calls, ['write 1'], 'a lone chunk is written alone');
  calls.length = 0;
  // Three chunks read in one turn: the first goes at once, the other two together.
  const burst = new PassThrough();
  const dst = recorder(calls);
  corkedPipe(burst, dst);
  await turn();
  burst.push(Buffer.alloc(2));
  burst.push(Buffer.alloc(3));
  burst.push(Buffer.alloc(4));
  await turn();
  await turn();
  assert.deepEqual(calls, ['write 2', 'writev 3+4']);
  burst.end();
  await turn();
  assert.equal(dst.writableEnded, true, 'end is passed on');
});

test('corkedPipe: a large chunk is never corked; it flushes the small ones corked before it', async () => {
  const calls: string[] = [];
  const src = new PassThrough();
  corkedPipe(src, recorder(calls));
  await turn();
  const L = CORK_BELOW_BYTES;
  // One turn's reads. Corked large chunks would count against the socket's high-water mark, and
  // a bulk download would then move a chunk or two per turn.
  for (const n of [L, L, 2, 3, 4, L, 5]) src.push(Buffer.alloc(n));
  await turn();
  await turn();
  assert.deepEqual(calls, [
    `write ${L}`,
    `write ${L}`,
    'write 2',
    'writev 3+4',
    `write ${L}`,
    'write 5',
  ]);
});
