/**
 * allocUninitialized: plain Uint8Arrays of the asked length, small ones from Node's pool, large
 * ones on their own; never two that share a byte.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allocUninitialized } from '../src/index.ts';

test('uninitialised packet buffers: right length, plain Uint8Array, never overlapping', () => {
  const got: Uint8Array[] = [];
  for (const n of [1, 100, 1435, 1435, 1435, 4095, 4096, 60_035, 60_035]) {
    const b = allocUninitialized(n);
    assert.equal(b.length, n);
    assert.equal(Object.getPrototypeOf(b), Uint8Array.prototype, 'not a Buffer');
    got.push(b);
  }
  // Small ones share a pool's ArrayBuffer; large ones have their own.
  assert.equal(got[2]!.buffer, got[3]!.buffer);
  assert.notEqual(got[7]!.buffer, got[8]!.buffer);
  assert.equal(got[7]!.byteOffset, 0);
  // No two views share a byte: each write shows only in its own buffer.
  for (const [i, b] of got.entries()) b.fill(i + 1);
  for (const [i, b] of got.entries()) {
    assert.ok(
      b.every((x) => x === i + 1),
      `buffer ${i} was overwritten`,
    );
  }
});
