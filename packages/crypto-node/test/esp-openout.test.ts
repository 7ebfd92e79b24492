/**
 * ESP over node:crypto's `openOut`: the receiver takes OpenSSL's output buffer as the payload
 * instead of copying it back into the packet. Same results as the in-place path: payloads, next
 * headers, padding checks, and drops for forged, replayed and badly padded packets.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Drop, EspReceiver, EspSender, newEspOpened, nobleProvider, Suite } from '@roamlink/core';
import { nodeCryptoProvider } from '../src/index.ts';

const key = new Uint8Array(32).map((_, i) => i + 1);
const salt = Uint8Array.of(9, 8, 7, 6);

for (const suite of [Suite.AES_256_GCM, Suite.CHACHA20_POLY1305]) {
  test(`suite ${suite}: packets sealed by noble open through openOut, exactly as in place`, () => {
    const aead = nodeCryptoProvider.aead(suite, key);
    assert.ok(aead.openOut, 'node:crypto offers openOut');
    const tx = new EspSender({ spi: 0x4242, aead: nobleProvider.aead(suite, key), salt });
    const rx = new EspReceiver({ spi: 0x4242, aead, salt });
    const opened = newEspOpened();
    for (const len of [0, 1, 3, 4, 5, 100, 1400, 60_000]) {
      const payload = new Uint8Array(len).map((_, i) => (i * 7 + len) & 0xff);
      const pkt = tx.seal(payload, 253);
      const copy = pkt.slice();
      assert.equal(rx.open(pkt, opened), Drop.NONE, `len ${len}`);
      assert.equal(Buffer.compare(opened.payload, payload), 0, `payload of ${len} bytes`);
      assert.equal(opened.nextHeader, 253);
      // The same packet again is a replay; a forged one fails its tag.
      assert.equal(rx.open(copy, opened), Drop.REPLAY);
    }
    const forged = tx.seal(new Uint8Array(50), 253);
    forged[20]! ^= 1;
    assert.equal(rx.open(forged, opened), Drop.BAD_ICV);
    assert.equal(rx.drops.bad_icv, 1);
    assert.equal(rx.drops.replay, 8);
  });
}
