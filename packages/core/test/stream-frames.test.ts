import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { MuxFrame } from '../src/index.ts';
import {
  decodeMuxPacket,
  encodeFrame,
  encodeMuxPacket,
  encodeTarget,
  FrameReader,
  fromHex,
  isMuxPayload,
  isRoamlinkError,
  StreamError,
  toHex,
  varintLength,
  writeVarint,
} from '../src/index.ts';

const malformed = (e: unknown): boolean => isRoamlinkError(e, 'ROAMLINK_ERR_MALFORMED');

test('varints: RFC 9000 Appendix A.1 examples', () => {
  const read = (hex: string): number => new FrameReader(fromHex(hex)).varint();
  assert.equal(read('9d7f3e7d'), 494_878_333);
  assert.equal(read('7bbd'), 15_293);
  assert.equal(read('25'), 37);
  assert.equal(read('4025'), 37, 'non-minimal encodings are accepted');
  // The 8-byte example, 151 288 809 941 952 652, is beyond 2^53: malformed here.
  assert.throws(() => read('c2197c5eff14e88c'), malformed);
  const write = (v: number): string => {
    const b = new Uint8Array(varintLength(v));
    assert.equal(writeVarint(b, 0, v), b.length);
    return toHex(b);
  };
  assert.equal(write(494_878_333), '9d7f3e7d');
  assert.equal(write(15_293), '7bbd');
  assert.equal(write(37), '25');
  assert.equal(write(2 ** 53 - 1), 'c01fffffffffffff');
  assert.equal(read('c01fffffffffffff'), 2 ** 53 - 1);
  assert.throws(() => read('c020000000000000'), malformed);
  assert.throws(() => read('9d7f3e'), malformed, 'truncated');
});

test('varints round-trip at every length boundary', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (v) => {
      const b = new Uint8Array(8);
      const n = writeVarint(b, 0, v);
      assert.equal(n, varintLength(v));
      const r = new FrameReader(b.subarray(0, n));
      assert.equal(r.varint(), v);
      assert.equal(r.remaining, 0);
    }),
  );
  for (const v of [63, 64, 16_383, 16_384, 2 ** 30 - 1, 2 ** 30]) {
    const b = new Uint8Array(8);
    assert.equal(new FrameReader(b.subarray(0, writeVarint(b, 0, v))).varint(), v);
  }
});

test('targets: layout and validation', () => {
  assert.equal(toHex(encodeTarget({ host: 'a.b', port: 443 })), '03612e6201bb');
  const bad = (host: string, port: number): void =>
    assert.throws(
      () => encodeTarget({ host, port }),
      (e) => isRoamlinkError(e, 'ROAMLINK_ERR_INVALID_ARGUMENT'),
    );
  bad('', 1);
  bad('x'.repeat(256), 1);
  bad('a\u0000b', 1);
  bad('a', 0);
  bad('a', 65_536);
  bad('a', 1.5);
  assert.equal(encodeTarget({ host: 'x'.repeat(255), port: 1 }).length, 258);
  assert.equal(encodeTarget({ host: 'bücher.example', port: 80 })[0], 15, 'UTF-8 bytes counted');
});

const arbTarget = fc
  .tuple(fc.stringMatching(/^[a-z0-9.:-]{1,40}$/), fc.integer({ min: 1, max: 65_535 }))
  .map(([host, port]) => ({ host, port }));
const arbId = fc.integer({ min: 0, max: 2 ** 40 });
const arbBytes = fc.uint8Array({ maxLength: 300 });
const arbFrame: fc.Arbitrary<MuxFrame> = fc.oneof(
  fc.constant<MuxFrame>({ type: 'ping' }),
  arbId.map<MuxFrame>((id) => ({ type: 'accept', id })),
  fc.tuple(arbId, arbId).map<MuxFrame>(([id, code]) => ({ type: 'refuse', id, code })),
  fc
    .tuple(arbId, arbId, arbId)
    .map<MuxFrame>(([id, code, finalSize]) => ({ type: 'reset', id, code, finalSize })),
  arbId.map<MuxFrame>((max) => ({ type: 'max-data', max })),
  fc.tuple(arbId, arbId).map<MuxFrame>(([id, max]) => ({ type: 'max-stream-data', id, max })),
  arbId.map<MuxFrame>((count) => ({ type: 'max-streams', count })),
  arbId.map<MuxFrame>((code) => ({ type: 'goaway', code })),
  fc
    .tuple(arbId, arbTarget, arbBytes)
    .map<MuxFrame>(([flow, target, data]) => ({ type: 'datagram', flow, target, data })),
  fc
    .tuple(arbId, arbId, fc.boolean(), fc.option(arbTarget, { nil: undefined }), arbBytes)
    .map<MuxFrame>(([id, offset, fin, target, data]) => ({
      type: 'stream',
      id,
      offset: target ? 0 : offset,
      fin,
      target,
      data,
    })),
);

test('every frame type round-trips through encode and decode', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 50 }),
      fc.array(arbFrame, { minLength: 1, maxLength: 6 }),
      (pn, frames) => {
        const bytes = encodeMuxPacket(pn, frames);
        assert.ok(isMuxPayload(bytes));
        const got = decodeMuxPacket(bytes);
        assert.equal(got.pn, pn);
        assert.deepEqual(got.frames, frames);
      },
    ),
  );
});

test('frame layouts byte by byte (the examples in PROTOCOL.md §8)', () => {
  const hex = (f: MuxFrame): string => toHex(encodeFrame(f));
  assert.equal(
    hex({
      type: 'stream',
      id: 0,
      offset: 0,
      fin: false,
      target: { host: 'a.b', port: 443 },
      data: fromHex('6869'),
    }),
    '2a' + '00' + '00' + '03612e6201bb' + '02' + '6869',
  );
  assert.equal(
    hex({
      type: 'stream',
      id: 3,
      offset: 1200,
      fin: true,
      target: undefined,
      data: new Uint8Array(0),
    }),
    '29' + '03' + '44b0' + '00',
  );
  assert.equal(hex({ type: 'accept', id: 3 }), '2303');
  assert.equal(hex({ type: 'refuse', id: 3, code: StreamError.POLICY }), '240301');
  assert.equal(
    hex({ type: 'reset', id: 3, code: StreamError.RESET, finalSize: 1200 }),
    '25030644b0',
  );
  assert.equal(hex({ type: 'max-data', max: 16_777_216 }), '2681000000');
  assert.equal(hex({ type: 'max-stream-data', id: 3, max: 1_048_576 }), '270380100000');
  assert.equal(hex({ type: 'max-streams', count: 256 }), '2c4100');
  assert.equal(hex({ type: 'goaway', code: StreamError.SHUTDOWN }), '2e05');
  assert.equal(hex({ type: 'ping' }), '22');
  assert.equal(
    hex({
      type: 'datagram',
      flow: 7,
      target: { host: '1.1.1.1', port: 53 },
      data: fromHex('abcd'),
    }),
    '2d' + '07' + '07312e312e312e31' + '0035' + '02' + 'abcd',
  );
  assert.equal(toHex(encodeMuxPacket(300, [{ type: 'ping' }])), '20412c22');
});

test('decoding refuses what it cannot accept, and only with MALFORMED', () => {
  const bad = (hex: string): void =>
    assert.throws(() => decodeMuxPacket(fromHex(hex)), malformed, hex);
  bad(''); // empty
  bad('21'); // not a packet header
  bad('2000'); // no frames
  bad('200022 2f'); // unknown type 0x2f
  bad('200010'); // registration type inside a mux packet
  bad('20002a0001'); // OPEN at a non-zero offset
  bad('20002a00000001'); // OPEN with an empty host... and truncated
  bad('20002a0000 01 61 0000 00'); // target port 0
  bad('20002a0000 02 611f 01bb 00'); // control character in the host
  bad('20002a0000 02 c3 28 01bb 00'); // host not UTF-8
  bad('2000280000 05 6869'); // data shorter than its length
  bad('2000 28 c01fffffffffffff 01'); // the largest id, then no length
  bad('2000 28 00 c01fffffffffffff 02 6869'); // offset + length beyond 2^53
  bad('2000 2d 01 01 61 0035 03 00'); // datagram data truncated
  bad('2000 25 01 02'); // reset truncated
  // Every strict prefix of a valid packet with one frame is malformed.
  const ok = encodeMuxPacket(9, [
    {
      type: 'stream',
      id: 1,
      offset: 0,
      fin: true,
      target: { host: 'h', port: 1 },
      data: new Uint8Array(3),
    },
  ]);
  decodeMuxPacket(ok);
  for (let n = 0; n < ok.length; n++) bad(toHex(ok.subarray(0, n)));
});

test('random bytes: decoding returns or throws MALFORMED, nothing else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (b, header) => {
      if (header && b.length > 0) b[0] = 0x20;
      try {
        decodeMuxPacket(b);
      } catch (e) {
        assert.ok(malformed(e), String(e));
      }
    }),
    { numRuns: 2000 },
  );
});
