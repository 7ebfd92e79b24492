/**
 * The client half of an RLHTTP/1 streaming path: every numbered datagram delivered once,
 * whichever way it came first (the stream or a POST answer's copies); the ack each request
 * carries until the stream shows a byte; the wait for that byte before falling back to polling.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUFFER_DETECT, bufferDetect, bufferWaitMs, HttpStreamOrder } from '../src/index.ts';

test('numbered datagrams: each once, whichever way it comes first; a gap is skipped', () => {
  const o = new HttpStreamOrder();
  assert.equal(o.ack, 0, 'nothing held yet');
  // A POST answer brings copies 0..2 before the stream shows anything.
  assert.deepEqual(
    [0, 1, 2].map((n) => o.admit(n)),
    [true, true, true],
  );
  assert.equal(o.ack, 3);
  // The stream starts at 1 (Roamlink-Seq): 1 and 2 are duplicates, 3 is new.
  o.streamOpened(1);
  assert.deepEqual(
    [1, 2, 3].map(() => o.fromStream()),
    [false, false, true],
  );
  assert.equal(o.next, 4);
  // A copy answer that overlaps: 3 is old, 4 new; then a gap (copies the relay could not keep).
  assert.deepEqual(
    [3, 4, 7].map((n) => o.admit(n)),
    [false, true, true],
  );
  assert.equal(o.next, 8);
  // The stream's numbering went on counting its own records (it is at 4 now): 4..7 duplicates.
  assert.deepEqual(
    [4, 5, 6, 7, 8].map(() => o.fromStream()),
    [false, false, false, false, true],
  );
  o.bodySeen = true;
  assert.equal(o.ack, undefined, 'no ack once the stream has shown a byte');
});

test('a relay that does not number its stream: every record is delivered', () => {
  const o = new HttpStreamOrder();
  o.streamOpened(undefined);
  assert.deepEqual(
    [1, 2, 3].map(() => o.fromStream()),
    [true, true, true],
  );
  assert.equal(o.next, 0, 'the numbering is untouched');
});

test('the wait for the first byte: clamp(factor × first answer, min, max); defaults', () => {
  const d = { factor: 1.5, minMs: 100, maxMs: 3000 };
  assert.deepEqual(BUFFER_DETECT, d);
  assert.equal(bufferWaitMs(d, undefined), 3000, 'no answer yet: the longest');
  assert.equal(bufferWaitMs(d, 10), 100);
  assert.equal(bufferWaitMs(d, 200), 300);
  assert.equal(bufferWaitMs(d, 5000), 3000);
  assert.deepEqual(bufferDetect(undefined), d);
  assert.deepEqual(bufferDetect({ minMs: 1000 }), { ...d, minMs: 1000 });
  assert.deepEqual(bufferDetect({ factor: undefined, maxMs: 50 }), { ...d, maxMs: 50 });
});
