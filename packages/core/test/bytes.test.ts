import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromHex, readU64, toHex, writeU64 } from '../src/index.ts';

test('hex round-trips and rejects junk', () => {
  assert.equal(toHex(fromHex('00ff10Ab')), '00ff10ab');
  assert.throws(() => fromHex('abc'), { code: 'ROAMLINK_ERR_INVALID_ARGUMENT' });
});

test('u64 big-endian', () => {
  const b = new Uint8Array(8);
  writeU64(b, 0, 0x1234_5678_9abc);
  assert.equal(toHex(b), '0000123456789abc');
  assert.equal(readU64(b, 0), 0x1234_5678_9abc);
  assert.throws(() => readU64(fromHex('ffffffffffffffff'), 0), { code: 'ROAMLINK_ERR_MALFORMED' });
});
