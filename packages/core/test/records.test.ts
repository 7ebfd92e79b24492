/**
 * RFC 8229-style records as the HTTP encapsulation writes them: `recordPieces` is
 * `encodeRecords` cut into pieces around the large datagrams, which it does not copy. Extended
 * records (Length 0, then a u32) for datagrams beyond 65 533 bytes, where the reader takes them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { concatBytes } from '../src/bytes.ts';
import {
  EXTENDED_RECORD_HEADER_BYTES,
  encodeRecords,
  MAX_RECORD_DATAGRAM_BYTES,
  RECORD_COPY_BELOW_BYTES,
  RecordReader,
  recordHeader,
  recordPieces,
} from '../src/records.ts';

const datagram = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 255);

test('recordPieces: the same bytes as encodeRecords; large datagrams are pieces, not copies', () => {
  const L = RECORD_COPY_BELOW_BYTES;
  const cases: number[][] = [
    [],
    [10],
    [L],
    [60_000],
    [1, 2, 3],
    [60_000, 60_000],
    [5, 60_000, 7, 8, 60_000],
    [L - 1, L, L + 1],
    [60_000, 3],
    [MAX_RECORD_DATAGRAM_BYTES],
  ];
  for (const sizes of cases) {
    const ds = sizes.map((n, i) => datagram(n, i));
    const pieces = recordPieces(ds);
    assert.deepEqual(concatBytes(...pieces), encodeRecords(ds), `sizes ${sizes}`);
    const large = ds.filter((d) => d.length >= L);
    const uncopied = pieces.filter((p) => ds.includes(p));
    assert.deepEqual(uncopied, large, `sizes ${sizes}: every large datagram as itself`);
    // Around each large one: one piece of Lengths and small records before it, none empty.
    assert.ok(pieces.length <= 2 * large.length + 1, `sizes ${sizes}: ${pieces.length} pieces`);
    for (const p of pieces) assert.ok(p.length > 0, `sizes ${sizes}: an empty piece`);
  }
  assert.deepEqual(recordPieces([]), []);
  assert.throws(
    () => recordPieces([new Uint8Array(MAX_RECORD_DATAGRAM_BYTES + 1)]),
    /too long for a record/,
  );
});

/** Reads `parts` in order with `r`; the records it gave, and whether every push succeeded. */
function read(r: RecordReader, parts: Uint8Array[]): { got: Uint8Array[]; ok: boolean } {
  const got: Uint8Array[] = [];
  r.onRecord = (d) => got.push(d);
  let ok = true;
  for (const p of parts) ok = r.push(p) && ok;
  return { got, ok };
}

test('recordHeader: a 16-bit Length up to 65 533 bytes, then Length 0 and a u32', () => {
  assert.deepEqual(recordHeader(0), new Uint8Array([0, 2]));
  assert.deepEqual(recordHeader(MAX_RECORD_DATAGRAM_BYTES), new Uint8Array([0xff, 0xff]));
  assert.deepEqual(
    recordHeader(MAX_RECORD_DATAGRAM_BYTES + 1),
    new Uint8Array([0, 0, 0, 0, 0xff, 0xfe]),
  );
  assert.deepEqual(recordHeader(1 << 20), new Uint8Array([0, 0, 0, 0x10, 0, 0]));
  assert.equal(recordHeader(70_000).length, EXTENDED_RECORD_HEADER_BYTES);
});

test('extended records: read whole and cut at every header byte, among plain ones', () => {
  const big = datagram(200_000, 3);
  const small = datagram(100, 4);
  const wire = concatBytes(
    recordHeader(small.length),
    small,
    recordHeader(big.length),
    big,
    recordHeader(0),
    recordHeader(MAX_RECORD_DATAGRAM_BYTES + 1),
    datagram(MAX_RECORD_DATAGRAM_BYTES + 1, 5),
  );
  const want = [small, big, new Uint8Array(0), datagram(MAX_RECORD_DATAGRAM_BYTES + 1, 5)];
  // Every cut through the first 120 bytes and around the big record's header and its end.
  const at = 2 + small.length;
  const cuts = [
    ...Array.from({ length: 120 }, (_, i) => i + 1),
    ...Array.from({ length: 12 }, (_, i) => at + i - 2),
    at + 6 + big.length - 1,
    at + 6 + big.length + 3,
  ];
  for (const c of cuts) {
    const r = new RecordReader({ maxDatagram: 1 << 20 });
    const { got, ok } = read(r, [wire.subarray(0, c), wire.subarray(c)]);
    assert.ok(ok, `cut at ${c}`);
    assert.deepEqual(got, want, `cut at ${c}`);
    assert.ok(r.atBoundary);
  }
  // Byte by byte through the big record's header.
  const r = new RecordReader({ maxDatagram: 1 << 20 });
  const parts = [
    wire.subarray(0, at),
    ...Array.from(wire.subarray(at, at + 6), (b) => new Uint8Array([b])),
    wire.subarray(at + 6),
  ];
  assert.deepEqual(read(r, parts).got, want);
  // zeroCopy: an extended record inside one chunk is a view of it.
  const z = new RecordReader({ maxDatagram: 1 << 20, zeroCopy: true });
  const zr = read(z, [wire]);
  assert.equal(zr.got[1]!.buffer, wire.buffer);
  assert.equal(zr.got[1]!.byteOffset, at + EXTENDED_RECORD_HEADER_BYTES);
});

test('extended records: refused unless enabled, above maxDatagram, or for what fits a Length', () => {
  const big = datagram(70_000, 1);
  const wire = concatBytes(recordHeader(big.length), big);
  // A reader that takes plain records only: Length 0 is the framing error it always was.
  const plain = new RecordReader();
  assert.equal(read(plain, [wire]).ok, false);
  assert.ok(plain.failed);
  // Above the reader's limit: refused at the header, before anything is allocated for it.
  const small = new RecordReader({ maxDatagram: 69_999 });
  assert.equal(read(small, [wire.subarray(0, EXTENDED_RECORD_HEADER_BYTES)]).ok, false);
  assert.ok(small.failed);
  assert.equal(small.atBoundary, true);
  // A u32 length a 16-bit Length would hold: not the one encoding, so refused.
  const short = new RecordReader({ maxDatagram: 1 << 20 });
  assert.equal(short.push(new Uint8Array([0, 0, 0, 0, 0xff, 0xfd])), false);
  // One larger than 2^31 (the top bit set) is read unsigned, and refused as over the limit.
  const huge = new RecordReader({ maxDatagram: 1 << 20 });
  assert.equal(huge.push(new Uint8Array([0, 0, 0x80, 0, 0, 0])), false);
  // A Length of 1 stays an error with extended records on.
  assert.equal(new RecordReader({ maxDatagram: 1 << 20 }).push(new Uint8Array([0, 1, 9])), false);
});

test('gatherTarget/gathered: the rest of a split record is written in place, then handed up whole', () => {
  const allocated: Uint8Array[] = [];
  const r = new RecordReader({
    maxDatagram: 1 << 20,
    alloc: (n) => {
      const b = new Uint8Array(n).fill(0xee);
      allocated.push(b);
      return b;
    },
  });
  const got: Uint8Array[] = [];
  r.onRecord = (d) => got.push(d);
  const big = datagram(300_000, 9);
  const wire = concatBytes(recordHeader(big.length), big, recordHeader(2), datagram(2, 1));
  assert.equal(r.gatherTarget(1), undefined, 'nothing being gathered');
  // The header and the first 10 000 bytes come as a push; then reads go into the record.
  assert.ok(r.push(wire.subarray(0, 6 + 10_000)));
  let t = r.gatherTarget(65_536);
  assert.ok(t);
  assert.equal(t.buffer, allocated[0]!.buffer, "the record's own buffer");
  assert.equal(t.length, big.length - 10_000);
  t.set(big.subarray(10_000, 200_000));
  assert.ok(r.gathered(190_000));
  assert.equal(got.length, 0);
  // 100 000 missing: not offered when the caller wants more than that.
  assert.equal(r.gatherTarget(100_001), undefined);
  t = r.gatherTarget(65_536)!;
  assert.equal(t.length, 100_000);
  t.set(big.subarray(200_000));
  assert.ok(r.gathered(100_000));
  assert.equal(got.length, 1);
  assert.equal(got[0], allocated[0], 'handed up as it was gathered, not copied');
  assert.deepEqual(got[0], big);
  // What follows goes through push as before.
  assert.ok(r.push(wire.subarray(6 + big.length)));
  assert.deepEqual(got[1], datagram(2, 1));
  assert.ok(r.atBoundary);
  assert.throws(() => r.gathered(1), RangeError, 'nothing being gathered');
});
