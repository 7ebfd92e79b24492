/**
 * BINDING_TEST (0x16) and BINDING_ACK (0x17), docs/PROTOCOL.md §6.10: golden bytes, exact lengths,
 * argument checks, and properties (round trips; random, truncated and bit-flipped input yields a
 * value or MALFORMED, nothing else).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  BINDING_FRAME_LENGTH,
  decodeBindingFrame,
  ErrorCode,
  encodeBindingAck,
  encodeBindingTest,
  fromHex,
  isRoamlinkError,
  MAX_BINDING_DELAY_MS,
  RegFrameType,
  toHex,
} from '../src/index.ts';

const MALFORMED = { code: ErrorCode.MALFORMED };
const INVALID = { code: ErrorCode.INVALID_ARGUMENT };

describe('binding frames: golden bytes', () => {
  test('BINDING_TEST id 7, delay 25 s', () => {
    const hex = '16' + '00000007' + '000061a8';
    assert.equal(toHex(encodeBindingTest({ id: 7, delayMs: 25_000 })), hex);
    assert.deepEqual(decodeBindingFrame(fromHex(hex)), { type: 0x16, id: 7, delayMs: 25_000 });
  });

  test('BINDING_ACK id 0xfffffffe, delay 300 s (the largest)', () => {
    const hex = '17' + 'fffffffe' + '000493e0';
    assert.equal(toHex(encodeBindingAck({ id: 0xffff_fffe, delayMs: 300_000 })), hex);
    assert.deepEqual(decodeBindingFrame(fromHex(hex)), {
      type: 0x17,
      id: 0xffff_fffe,
      delayMs: 300_000,
    });
  });

  test('the ack is exactly as long as the test (no amplification)', () => {
    const f = { id: 1, delayMs: 1 };
    assert.equal(encodeBindingTest(f).length, BINDING_FRAME_LENGTH);
    assert.equal(encodeBindingAck(f).length, BINDING_FRAME_LENGTH);
    assert.equal(BINDING_FRAME_LENGTH, 9);
  });
});

describe('binding frames: bad arguments and bad input', () => {
  test('encoders refuse out-of-range fields with INVALID_ARGUMENT', () => {
    for (const enc of [encodeBindingTest, encodeBindingAck]) {
      for (const f of [
        { id: -1, delayMs: 0 },
        { id: 2 ** 32, delayMs: 0 },
        { id: 1.5, delayMs: 0 },
        { id: Number.NaN, delayMs: 0 },
        { id: 0, delayMs: -1 },
        { id: 0, delayMs: MAX_BINDING_DELAY_MS + 1 },
        { id: 0, delayMs: 0.5 },
        { id: 0, delayMs: Number.POSITIVE_INFINITY },
      ]) {
        assert.throws(() => enc(f), INVALID, JSON.stringify(f));
      }
      assert.doesNotThrow(() => enc({ id: 0xffff_ffff, delayMs: MAX_BINDING_DELAY_MS }));
      assert.doesNotThrow(() => enc({ id: 0, delayMs: 0 }));
    }
  });

  test('decoders refuse wrong lengths, types and delays with MALFORMED', () => {
    const good = encodeBindingTest({ id: 1, delayMs: 1000 });
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      good.subarray(0, 8),
      new Uint8Array([...good, 0]),
      Uint8Array.of(0x15, ...good.subarray(1)),
      Uint8Array.of(0x18, ...good.subarray(1)),
      fromHex('16000000010004 93e1'.replaceAll(' ', '')), // 300 001 ms
      fromHex('17ffffffffffffffff'),
      new Uint8Array(1300).fill(0x16),
    ];
    for (const b of cases) assert.throws(() => decodeBindingFrame(b), MALFORMED, toHex(b));
    assert.throws(() => decodeBindingFrame('x' as unknown as Uint8Array), MALFORMED);
  });
});

describe('binding frames: properties', () => {
  const frame = fc.record(
    {
      id: fc.integer({ min: 0, max: 0xffff_ffff }),
      delayMs: fc.integer({ min: 0, max: MAX_BINDING_DELAY_MS }),
    },
    { noNullPrototype: true },
  );

  test('decode ∘ encode is the identity', () => {
    fc.assert(
      fc.property(frame, fc.boolean(), (f, isTest) => {
        const b = isTest ? encodeBindingTest(f) : encodeBindingAck(f);
        assert.equal(b.length, BINDING_FRAME_LENGTH);
        assert.deepEqual(decodeBindingFrame(b), {
          type: isTest ? RegFrameType.BINDING_TEST : RegFrameType.BINDING_ACK,
          ...f,
        });
      }),
      { numRuns: 1000 },
    );
  });

  /** A value that re-encodes to the same bytes, or MALFORMED; nothing else escapes. */
  function check(b: Uint8Array): void {
    let v: ReturnType<typeof decodeBindingFrame>;
    try {
      v = decodeBindingFrame(b);
    } catch (e) {
      assert.ok(isRoamlinkError(e, ErrorCode.MALFORMED), `unexpected ${String(e)}`);
      return;
    }
    const again =
      v.type === RegFrameType.BINDING_TEST
        ? encodeBindingTest({ id: v.id, delayMs: v.delayMs })
        : encodeBindingAck({ id: v.id, delayMs: v.delayMs });
    assert.deepEqual(again, b);
  }

  test('random bytes: a value or MALFORMED', () => {
    const types = fc.constantFrom(0x14, 0x15, 0x16, 0x17, 0x18, 0x00, 0xff);
    fc.assert(
      fc.property(types, fc.uint8Array({ maxLength: 24 }), (t, b) => {
        const d = b.slice();
        if (d.length > 0) d[0] = t;
        check(d);
      }),
      { numRuns: 3000 },
    );
  });

  test('truncations and bit flips of valid frames: a value or MALFORMED', () => {
    fc.assert(
      fc.property(
        frame,
        fc.boolean(),
        fc.nat(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (f, isTest, cut, flips) => {
          const b = isTest ? encodeBindingTest(f) : encodeBindingAck(f);
          check(b.subarray(0, cut % (b.length + 1)));
          const x = b.slice();
          for (const [i, bit] of flips) x[i % x.length]! ^= 1 << bit;
          check(x);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
