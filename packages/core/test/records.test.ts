/**
 * RFC 8229-style records as the HTTP encapsulation writes them: `recordPieces` is
 * `encodeRecords` cut into pieces around the large datagrams, which it does not copy.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { concatBytes } from '../src/bytes.ts';
import {
  encodeRecords,
  MAX_RECORD_DATAGRAM_BYTES,
  RECORD_COPY_BELOW_BYTES,
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
