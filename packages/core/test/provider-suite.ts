/**
 * The shared test suite every `CryptoProvider` must pass (packages/core/src/crypto/aead.ts). Each
 * provider's test file calls `providerSuite(provider)`; because every provider is held to the same
 * published vectors, passing it proves that all providers produce identical bytes.
 *
 * Vectors (test/vectors/*.json, copied from the documents they cite):
 * - rfc8439-aead.json: RFC 8439 §2.8.2 and Appendix A.5 (ChaCha20-Poly1305).
 * - gcm-aead.json: the GCM specification's AES-256 test cases 13-16.
 * - rfc7634-esp.json: RFC 7634 Appendix A, the ChaCha20-Poly1305 ESP example.
 * - gcm-esp.json: draft-mcgrew-gcm-test-01 §4, AES-GCM in ESP (only 256-bit keys run here).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  type Aead,
  type CryptoProvider,
  ErrorCode,
  fromHex,
  isRoamlinkError,
  SUITE_NAMES,
  Suite,
  toHex,
} from '../src/index.ts';

export interface AeadVector {
  readonly name: string;
  readonly source: string;
  readonly key: string;
  readonly nonce: string;
  readonly aad: string;
  readonly plaintext: string;
  readonly ciphertext: string;
  readonly tag: string;
}

/** One ESP test case; see the `fields` key at the top of the JSON files for the meaning. */
export interface EspVector {
  readonly name: string;
  readonly source: string;
  readonly keyBits?: number;
  readonly key: string;
  readonly salt: string;
  readonly spi: string;
  readonly seq: string;
  readonly esn: boolean;
  readonly seqHigh: string | null;
  readonly seqLow: string;
  readonly iv: string;
  readonly nonce: string;
  readonly aad: string;
  readonly payload: string;
  readonly padding: string;
  readonly padLength: number;
  readonly nextHeader: number;
  readonly plaintext: string;
  readonly ciphertext: string;
  readonly tag: string;
  readonly packet: string;
}

function loadVectors<T>(file: string): T[] {
  const url = new URL(`./vectors/${file}`, import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { vectors: T[] }).vectors;
}

export const RFC8439_VECTORS = loadVectors<AeadVector>('rfc8439-aead.json');
export const GCM_VECTORS = loadVectors<AeadVector>('gcm-aead.json');
export const RFC7634_ESP_VECTORS = loadVectors<EspVector>('rfc7634-esp.json');
export const GCM_ESP_VECTORS = loadVectors<EspVector>('gcm-esp.json');

const ALL_SUITES = [Suite.CHACHA20_POLY1305, Suite.AES_256_GCM] as const;

/** A deterministic, patterned byte string (so failures are reproducible and readable). */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed + i * 31 + (i >> 3)) & 0xff;
  return out;
}

/** Seals into a fresh exact-size buffer and returns ciphertext || tag. */
export function sealToBytes(
  aead: Aead,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const buf = new Uint8Array(plaintext.length + AEAD_TAG_BYTES);
  buf.set(plaintext);
  aead.seal(nonce, aad, buf, 0, plaintext.length);
  return buf;
}

/** Opens ciphertext || tag from a copy; returns the plaintext, or undefined if `open` refused. */
export function openToBytes(
  aead: Aead,
  nonce: Uint8Array,
  aad: Uint8Array,
  sealed: Uint8Array,
): Uint8Array | undefined {
  const buf = sealed.slice();
  const end = buf.length - AEAD_TAG_BYTES;
  const opened = aead.open(nonce, aad, buf, 0, end) ? buf.subarray(0, end) : undefined;
  if (aead.openOut) {
    // A backend with openOut must agree with its own open on every input the tests feed it.
    const out = aead.openOut(nonce, aad, sealed.slice(), 0, end);
    assert.equal(out === undefined, opened === undefined, 'openOut and open agree on the tag');
    if (out && opened) assert.equal(toHex(out), toHex(opened));
  }
  return opened;
}

function espPlaintext(v: EspVector): Uint8Array {
  return fromHex(
    v.payload +
      v.padding +
      v.padLength.toString(16).padStart(2, '0') +
      v.nextHeader.toString(16).padStart(2, '0'),
  );
}

function isInvalidArgument(e: unknown): boolean {
  return e instanceof RangeError || isRoamlinkError(e, ErrorCode.INVALID_ARGUMENT);
}

/** Registers the full provider test suite for `provider` with node:test. */
export function providerSuite(provider: CryptoProvider): void {
  describe(`crypto provider "${provider.name}"`, () => {
    test('declares only known suites', () => {
      assert.ok(provider.suites.length > 0);
      for (const s of provider.suites) assert.ok(ALL_SUITES.includes(s), `suite ${s}`);
    });

    test('an unsupported suite throws ROAMLINK_ERR_UNSUPPORTED', () => {
      const key = new Uint8Array(AEAD_KEY_BYTES);
      assert.throws(() => provider.aead(99 as Suite, key), { code: ErrorCode.UNSUPPORTED });
      for (const s of ALL_SUITES) {
        if (!provider.suites.includes(s)) {
          assert.throws(() => provider.aead(s, key), { code: ErrorCode.UNSUPPORTED });
        }
      }
    });

    // Suites the provider lacks are covered by the UNSUPPORTED test above, not registered here.
    for (const suite of ALL_SUITES.filter((s) => provider.suites.includes(s))) {
      describe(SUITE_NAMES[suite], () => suiteTests(provider, suite));
    }
  });
}

function suiteTests(provider: CryptoProvider, suite: Suite): void {
  const aeadVectors = suite === Suite.CHACHA20_POLY1305 ? RFC8439_VECTORS : GCM_VECTORS;
  const espVectors = suite === Suite.CHACHA20_POLY1305 ? RFC7634_ESP_VECTORS : GCM_ESP_VECTORS;

  for (const v of aeadVectors) {
    test(`vector: ${v.source} (${v.name})`, () => {
      const aead = provider.aead(suite, fromHex(v.key));
      assert.equal(aead.suite, suite);
      const nonce = fromHex(v.nonce);
      const aad = fromHex(v.aad);
      const sealed = sealToBytes(aead, nonce, aad, fromHex(v.plaintext));
      assert.equal(toHex(sealed), v.ciphertext + v.tag);
      const opened = openToBytes(aead, nonce, aad, fromHex(v.ciphertext + v.tag));
      assert.ok(opened, 'open refused a published vector');
      assert.equal(toHex(opened), v.plaintext);
    });
  }

  // The AEAD inside the published ESP examples: nonce = salt || IV, the AAD as printed, and the
  // plaintext = payload || padding || pad length || next header.
  // AES-128/192 cases are not an offered suite; esp.test.ts runs them through the ESP codec.
  for (const v of espVectors.filter((x) => (x.keyBits ?? x.key.length * 4) === 256)) {
    test(`ESP vector: ${v.name}`, () => {
      assert.equal(v.nonce, v.salt + v.iv, 'nonce is salt || iv');
      assert.equal(v.aad, v.spi + (v.esn ? v.seqHigh : '') + v.seqLow, 'aad layout');
      const plaintext = espPlaintext(v);
      assert.equal(toHex(plaintext), v.plaintext);
      const aead = provider.aead(suite, fromHex(v.key));
      const nonce = fromHex(v.salt + v.iv);
      const aad = fromHex(v.aad);
      const sealed = sealToBytes(aead, nonce, aad, plaintext);
      assert.equal(toHex(sealed), v.ciphertext + v.tag);
      // The packet is header (8) || IV (8) || ciphertext || tag: open it where it sits.
      const packet = fromHex(v.packet);
      assert.equal(toHex(packet.subarray(16)), toHex(sealed));
      assert.ok(aead.open(nonce, aad, packet, 16, packet.length - AEAD_TAG_BYTES));
      assert.equal(toHex(packet.subarray(16, packet.length - AEAD_TAG_BYTES)), v.plaintext);
      assert.equal(toHex(packet.subarray(0, 16)), v.spi + v.seqLow + v.iv, 'header untouched');
    });
  }

  test('seals and opens in place at an offset, leaving surrounding bytes untouched', () => {
    const aead = provider.aead(suite, pattern(AEAD_KEY_BYTES, 1));
    const nonce = pattern(AEAD_NONCE_BYTES, 2);
    const aad = pattern(13, 3);
    for (const len of [0, 1, 15, 16, 17, 63, 64, 65, 255, 1400]) {
      const plaintext = pattern(len, len);
      const expected = sealToBytes(aead, nonce, aad, plaintext);
      for (const start of [1, 3, 8, 37]) {
        const slack = 11;
        // A view with an odd byteOffset into a larger ArrayBuffer, so that no backend can rely on
        // the buffer being aligned or starting at offset 0 of its ArrayBuffer.
        const backing = new Uint8Array(5 + start + len + AEAD_TAG_BYTES + slack).fill(0xa5);
        const buf = backing.subarray(5);
        buf.set(plaintext, start);
        const before = backing.slice();
        const end = start + len;
        aead.seal(nonce, aad, buf, start, end);
        assert.equal(
          toHex(buf.subarray(start, end + AEAD_TAG_BYTES)),
          toHex(expected),
          `len ${len}`,
        );
        assert.equal(toHex(backing.subarray(0, 5 + start)), toHex(before.subarray(0, 5 + start)));
        assert.equal(
          toHex(backing.subarray(5 + end + AEAD_TAG_BYTES)),
          toHex(before.subarray(5 + end + AEAD_TAG_BYTES)),
        );
        assert.ok(aead.open(nonce, aad, buf, start, end), `open at ${start}, len ${len}`);
        assert.equal(toHex(buf.subarray(start, end)), toHex(plaintext));
        // Everything but the tag is back to how it was; the tag bytes are not touched by open.
        assert.equal(toHex(backing.subarray(0, 5 + end)), toHex(before.subarray(0, 5 + end)));
        assert.equal(
          toHex(backing.subarray(5 + end)),
          toHex(before.subarray(5 + end)).replace(/^.{32}/, toHex(expected.subarray(len))),
        );
      }
    }
  });

  test('handles empty plaintext and empty AAD', () => {
    const aead = provider.aead(suite, pattern(AEAD_KEY_BYTES, 4));
    const nonce = pattern(AEAD_NONCE_BYTES, 5);
    const empty = new Uint8Array(0);
    for (const [aad, pt] of [
      [empty, empty],
      [pattern(20, 6), empty],
      [empty, pattern(33, 7)],
    ] as const) {
      const sealed = sealToBytes(aead, nonce, aad, pt);
      assert.equal(sealed.length, pt.length + AEAD_TAG_BYTES);
      const opened = openToBytes(aead, nonce, aad, sealed);
      assert.ok(opened);
      assert.equal(toHex(opened), toHex(pt));
      // An empty message is still authenticated: the tag depends on the AAD and the nonce.
      const other = sealToBytes(aead, pattern(AEAD_NONCE_BYTES, 9), aad, pt);
      assert.notEqual(toHex(other), toHex(sealed));
    }
  });

  test('open returns false, without throwing, on any tampering', () => {
    const aead = provider.aead(suite, pattern(AEAD_KEY_BYTES, 10));
    const nonce = pattern(AEAD_NONCE_BYTES, 11);
    const aad = pattern(12, 12);
    for (const len of [0, 1, 100]) {
      const plaintext = pattern(len, 13);
      const sealed = sealToBytes(aead, nonce, aad, plaintext);
      const refuse = (n: Uint8Array, a: Uint8Array, bytes: Uint8Array, what: string): void => {
        const buf = bytes.slice();
        let ok: boolean | undefined;
        assert.doesNotThrow(() => {
          ok = aead.open(n, a, buf, 0, len);
        }, what);
        assert.equal(ok, false, what);
        // Whatever the backend leaves behind, it must not be the plaintext.
        if (len > 0) assert.notEqual(toHex(buf.subarray(0, len)), toHex(plaintext), what);
      };
      for (const bit of [0, 7]) {
        const badTag = sealed.slice();
        badTag[len + (bit === 0 ? 0 : AEAD_TAG_BYTES - 1)]! ^= 1 << bit;
        refuse(nonce, aad, badTag, `tag bit ${bit}, len ${len}`);
      }
      if (len > 0) {
        const badCt = sealed.slice();
        badCt[len - 1]! ^= 0x80;
        refuse(nonce, aad, badCt, `ciphertext bit, len ${len}`);
      }
      const badAad = aad.slice();
      badAad[0]! ^= 1;
      refuse(nonce, badAad, sealed, `aad bit, len ${len}`);
      refuse(nonce, new Uint8Array(0), sealed, `aad dropped, len ${len}`);
      const badNonce = nonce.slice();
      badNonce[AEAD_NONCE_BYTES - 1]! ^= 1;
      refuse(badNonce, aad, sealed, `wrong nonce, len ${len}`);
      const otherKey = provider.aead(suite, pattern(AEAD_KEY_BYTES, 99));
      const buf = sealed.slice();
      assert.equal(otherKey.open(nonce, aad, buf, 0, len), false, `wrong key, len ${len}`);
      // The untouched packet still opens after all those failures.
      assert.equal(
        toHex(openToBytes(aead, nonce, aad, sealed) ?? new Uint8Array(1)),
        toHex(plaintext),
      );
    }
  });

  test('aead() rejects keys that are not 32 bytes', () => {
    for (const len of [0, 16, 24, 31, 33, 64]) {
      assert.throws(
        () => provider.aead(suite, new Uint8Array(len)),
        isInvalidArgument,
        `len ${len}`,
      );
    }
  });

  test('seal and open reject a bad nonce length or an out-of-range view', () => {
    const aead = provider.aead(suite, pattern(AEAD_KEY_BYTES, 14));
    const nonce = pattern(AEAD_NONCE_BYTES, 15);
    const aad = new Uint8Array(0);
    const buf = new Uint8Array(40);
    for (const op of [aead.seal.bind(aead), aead.open.bind(aead)]) {
      assert.throws(() => op(new Uint8Array(8), aad, buf, 0, 10), isInvalidArgument);
      assert.throws(() => op(new Uint8Array(16), aad, buf, 0, 10), isInvalidArgument);
      assert.throws(() => op(nonce, aad, buf, 0, 25), isInvalidArgument, 'no room for tag');
      assert.throws(() => op(nonce, aad, buf, -1, 10), isInvalidArgument);
      assert.throws(() => op(nonce, aad, buf, 10, 9), isInvalidArgument);
      assert.throws(() => op(nonce, aad, buf, 0.5, 10), isInvalidArgument);
    }
    // Exactly enough room is fine.
    aead.seal(nonce, aad, buf, 4, 24);
    assert.ok(aead.open(nonce, aad, buf, 4, 24));
  });

  test('one Aead seals many packets, and keeps its own copy of the key', () => {
    const key = pattern(AEAD_KEY_BYTES, 16);
    const aead = provider.aead(suite, key);
    const reference = provider.aead(suite, key.slice());
    key.fill(0); // the caller wiping its key must not affect the Aead
    const aad = pattern(8, 17);
    for (let i = 0; i < 5; i++) {
      const nonce = pattern(AEAD_NONCE_BYTES, 20 + i);
      const pt = pattern(50 + i, i);
      assert.equal(
        toHex(sealToBytes(aead, nonce, aad, pt)),
        toHex(sealToBytes(reference, nonce, aad, pt)),
      );
    }
  });

  test('property: seal then open round-trips for lengths 0..2000', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: AEAD_KEY_BYTES, maxLength: AEAD_KEY_BYTES }),
        fc.uint8Array({ minLength: AEAD_NONCE_BYTES, maxLength: AEAD_NONCE_BYTES }),
        fc.uint8Array({ maxLength: 64 }),
        // size 'max': lengths spread over the whole 0..2000 range, not only small ones.
        fc.uint8Array({ maxLength: 2000, size: 'max' }),
        fc.nat({ max: 40 }),
        (key, nonce, aad, plaintext, start) => {
          const aead = provider.aead(suite, key);
          const buf = new Uint8Array(start + plaintext.length + AEAD_TAG_BYTES);
          buf.set(plaintext, start);
          const end = start + plaintext.length;
          aead.seal(nonce, aad, buf, start, end);
          if (plaintext.length >= 16) {
            // Not a proof of encryption, but catches a backend that forgot to encrypt.
            assert.notEqual(toHex(buf.subarray(start, end)), toHex(plaintext));
          }
          assert.ok(aead.open(nonce, aad, buf, start, end));
          assert.equal(toHex(buf.subarray(start, end)), toHex(plaintext));
        },
      ),
      { numRuns: 100 },
    );
  });
}
