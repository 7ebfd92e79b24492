import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { OuterView, Probe, ProbeAck, Rrep, Rreq } from '../src/index.ts';
import {
  decodeOuterView,
  decodePathFrame,
  decodeProbe,
  decodeProbeAck,
  decodeRrep,
  decodeRreq,
  decodeViewWithParams,
  Encapsulation,
  ErrorCode,
  encodeOuterView,
  encodePathChallenge,
  encodePathResponse,
  encodeProbe,
  encodeProbeAck,
  encodeRrep,
  encodeRreq,
  encodeViewWithParams,
  fromHex,
  isRoamlinkError,
  MAX_REGISTRATION_FRAME,
  MIN_MAX_DATAGRAM,
  RegFrameType,
  toHex,
  utf8,
  Verdict,
} from '../src/index.ts';

const { UDP, TCP, WEBSOCKET, HTTP_STREAM, HTTP_POLL } = Encapsulation;
const ALL = [UDP, TCP, WEBSOCKET, HTTP_STREAM, HTTP_POLL];
const nonce = fromHex('0102030405060708');
const MALFORMED = { code: ErrorCode.MALFORMED };
const INVALID = { code: ErrorCode.INVALID_ARGUMENT };

const rreq = (over: Partial<Rreq> = {}): Rreq => ({
  round: 7,
  nonce,
  encapsulation: UDP,
  timestamp: 0x018f_0e1a_2b3c,
  encapsulations: [UDP, TCP, WEBSOCKET],
  view: { srcAddr: '10.0.0.2', srcPort: 4500, headers: [['x-a', 'b']] },
  ...over,
});

const rrep = (over: Partial<Rrep> = {}): Rrep => ({
  round: 7,
  nonce,
  encapsulation: WEBSOCKET,
  verdict: Verdict.PROTOCOL,
  decision: 2,
  chosen: true,
  chosenEncapsulation: WEBSOCKET,
  keepaliveMs: 25_000,
  encapsulations: ALL,
  observed: { srcAddr: '198.51.100.1', srcPort: 61001, headers: [['via', '1.1 p']] },
  ...over,
});

/** The decoder either returns or throws MALFORMED; nothing else ever escapes. */
function returnsOrMalformed<T>(decode: (b: Uint8Array) => T, b: Uint8Array): T | undefined {
  try {
    return decode(b);
  } catch (e) {
    assert.ok(isRoamlinkError(e, ErrorCode.MALFORMED), `unexpected ${String(e)}`);
    return undefined;
  }
}

describe('golden bytes (docs/PROTOCOL.md §6)', () => {
  test('RREQ', () => {
    const hex =
      '10' + // type
      '01' + // encapsulation: UDP
      '00000007' + // round
      '0102030405060708' + // nonce
      '0000018f0e1a2b3c' + // timestamp
      '03010203' + // encapsulations: UDP, TCP, WebSocket
      '01000831302e302e302e32' + // srcAddr "10.0.0.2"
      '0200021194' + // srcPort 4500
      '0700060003782d6162'; // header "x-a": "b"
    const b = encodeRreq(
      rreq({ view: { srcAddr: '10.0.0.2', srcPort: 4500, headers: [['X-A', 'b']] } }),
    );
    assert.equal(toHex(b), hex);
    assert.deepEqual(decodeRreq(fromHex(hex)), rreq());
  });

  test('RREP', () => {
    const hex =
      '11' + // type
      '03' + // encapsulation: WebSocket
      '04' + // verdict: PROTOCOL
      '02' + // decision
      '01' + // flags: chosen
      '03' + // chosen encapsulation: WebSocket
      '00000007' + // round
      '0102030405060708' + // nonce
      '000061a8' + // keepalive 25000 ms
      '050102030405' + // encapsulations
      '01000c3139382e35312e3130302e31' + // srcAddr "198.51.100.1"
      '020002ee49' + // srcPort 61001
      '07000a0003766961312e312070'; // header "via": "1.1 p"
    assert.equal(toHex(encodeRrep(rrep())), hex);
    assert.deepEqual(decodeRrep(fromHex(hex)), rrep());
  });

  test('path frames, probe and probe ack', () => {
    assert.equal(toHex(encodePathChallenge(nonce)), '120102030405060708');
    assert.equal(toHex(encodePathResponse(nonce)), '130102030405060708');
    assert.equal(
      toHex(encodeProbe({ id: 0x0a0b0c0d, encapsulation: TCP, size: 8 })),
      '14020a0b0c0d0000',
    );
    assert.equal(toHex(encodeProbeAck({ id: 0x0a0b0c0d, size: 1200 })), '150a0b0c0d000004b0');
  });

  test('outer view TLVs', () => {
    const v: OuterView = {
      srcAddr: 'a',
      srcPort: 1,
      dstAddr: 'b',
      dstPort: 65535,
      url: '/',
      host: 'h',
      headers: [['k', '']],
    };
    assert.equal(
      toHex(encodeOuterView(v)),
      '01000161' +
        '0200020001' +
        '03000162' +
        '040002ffff' +
        '0500012f' +
        '06000168' +
        '07000300016b',
    );
    assert.deepEqual(decodeOuterView(encodeOuterView(v)), v);
  });
});

describe('round trips', () => {
  test('every frame', () => {
    for (const r of [
      rreq(),
      rreq({
        round: 0xffff_ffff,
        timestamp: Number.MAX_SAFE_INTEGER,
        encapsulations: [],
        view: {},
      }),
      rreq({ encapsulation: HTTP_POLL, view: { url: 'https://r.example/p?q', host: 'r.example' } }),
    ]) {
      assert.deepEqual(decodeRreq(encodeRreq(r)), r);
    }
    for (const r of [
      rrep(),
      rrep({ chosen: false, chosenEncapsulation: UDP, decision: 255, keepaliveMs: 0xffff_ffff }),
      rrep({ verdict: Verdict.NONE, keepaliveMs: 0, observed: {}, encapsulations: [] }),
    ]) {
      assert.deepEqual(decodeRrep(encodeRrep(r)), r);
    }
    assert.deepEqual(decodePathFrame(encodePathChallenge(nonce)), { type: 0x12, data: nonce });
    assert.deepEqual(decodePathFrame(encodePathResponse(nonce)), { type: 0x13, data: nonce });
    for (const p of [
      { id: 0, encapsulation: UDP, size: 6 },
      { id: 0xffff_ffff, encapsulation: HTTP_STREAM, size: 1200 },
    ]) {
      const b = encodeProbe(p);
      assert.equal(b.length, p.size);
      assert.ok(b.subarray(6).every((x) => x === 0));
      assert.deepEqual(decodeProbe(b), p);
    }
    for (const a of [
      { id: 0, size: 0 },
      { id: 0xffff_ffff, size: 0xffff_ffff },
    ]) {
      assert.deepEqual(decodeProbeAck(encodeProbeAck(a)), a);
    }
  });

  test('a frame of exactly 1200 bytes, with strings of 512 bytes, encodes; one more byte does not', () => {
    const s512 = 'x'.repeat(512);
    const view = (urlLen: number): OuterView => ({
      srcAddr: s512,
      srcPort: 65535,
      dstAddr: `${'€'.repeat(170)}ab`, // 512 bytes of UTF-8
      dstPort: 1,
      url: `/${'u'.repeat(urlLen - 1)}`,
    });
    // 22 fixed + 6 list + (515 + 5 + 515 + 5 + 3 + 129) view = 1200.
    const r = rreq({ encapsulations: ALL, view: view(129) });
    const b = encodeRreq(r);
    assert.equal(b.length, MAX_REGISTRATION_FRAME);
    assert.deepEqual(decodeRreq(b), r);
    assert.throws(() => encodeRreq(rreq({ encapsulations: ALL, view: view(130) })), INVALID);
    // The same size limit for RREP, whose fixed part is as long.
    const p = rrep({ observed: view(129) });
    assert.equal(encodeRrep(p).length, MAX_REGISTRATION_FRAME);
    assert.deepEqual(decodeRrep(encodeRrep(p)), p);
    assert.throws(() => encodeRrep(rrep({ observed: view(130) })), INVALID);
  });

  test('32 headers fit, 33 do not', () => {
    const headers = Array.from({ length: 32 }, (_, i): [string, string] => [`h${i}`, `${i}`]);
    const r = rreq({ view: { headers } });
    assert.deepEqual(decodeRreq(encodeRreq(r)), r);
    assert.throws(() => encodeRreq(rreq({ view: { headers: [...headers, ['h', 'v']] } })), INVALID);
    // Decoding 33 header TLVs is refused as well.
    const extra = fromHex('07000400016878');
    const b = encodeRreq(r);
    const tooMany = new Uint8Array(b.length + extra.length);
    tooMany.set(b);
    tooMany.set(extra, b.length);
    assert.throws(() => decodeRreq(tooMany), MALFORMED);
  });

  test('header names are lower-cased; values kept verbatim; a leading U+FEFF survives', () => {
    const v = encodeOuterView({ headers: [['Sec-WebSocket-Key', ' AbC ']], host: '\uFEFFh' });
    assert.deepEqual(decodeOuterView(v), {
      host: '\uFEFFh',
      headers: [['sec-websocket-key', ' AbC ']],
    });
  });

  test('unknown TLV tags and unknown encapsulation codes are skipped', () => {
    const b = fromHex(
      `100100000007${toHex(nonce)}0000000000000001` + // fixed part
        '040109ff02' + // list: UDP, 9, 255, TCP
        '0900020000' + // unknown tag 9
        '01000161' + // srcAddr "a"
        '000000' + // tag 0, empty
        'ff000120', // unknown tag 255
    );
    assert.deepEqual(decodeRreq(b), {
      round: 7,
      nonce,
      encapsulation: UDP,
      timestamp: 1,
      encapsulations: [UDP, TCP],
      view: { srcAddr: 'a' },
    });
  });

  test('MAX_DATAGRAM (tag 16) rides after the view, not in it; a bare view skips it', () => {
    const r = rreq({ encapsulation: WEBSOCKET, maxDatagram: 1 << 20 });
    const b = encodeRreq(r);
    // The view's TLVs, then 10 00 04 00 10 00 00 (1 MiB).
    assert.ok(toHex(b).endsWith(`${toHex(encodeOuterView(r.view))}10000400100000`));
    assert.deepEqual(decodeRreq(b), r);
    assert.equal(decodeRreq(encodeRreq(rreq())).maxDatagram, undefined, 'absent stays absent');
    const p = rrep({ maxDatagram: MIN_MAX_DATAGRAM });
    assert.deepEqual(decodeRrep(encodeRrep(p)), p);
    // A decoder of views alone (as one that predates the tag) reads the same view.
    const both = encodeViewWithParams(r.view, 70_000);
    assert.deepEqual(decodeOuterView(both), r.view);
    assert.deepEqual(decodeViewWithParams(both), { view: r.view, maxDatagram: 70_000 });
    assert.deepEqual(decodeViewWithParams(encodeOuterView(r.view)), { view: r.view });
  });

  test('decoded nonces and challenge data do not alias the input buffer', () => {
    const b = encodeRreq(rreq());
    const r = decodeRreq(b);
    b.fill(0xee, 6, 14);
    assert.deepEqual(r.nonce, nonce);
    const c = encodePathChallenge(nonce);
    const d = decodePathFrame(c);
    c.fill(0);
    assert.deepEqual(d.data, nonce);
  });
});

describe('encoders refuse bad arguments with INVALID_ARGUMENT', () => {
  test('RREQ', () => {
    assert.throws(() => encodeRreq(rreq({ round: 0 })), INVALID);
    assert.throws(() => encodeRreq(rreq({ round: 2 ** 32 })), INVALID);
    assert.throws(() => encodeRreq(rreq({ round: 1.5 })), INVALID);
    assert.throws(() => encodeRreq(rreq({ nonce: new Uint8Array(7) })), INVALID);
    assert.throws(() => encodeRreq(rreq({ nonce: new Uint8Array(9) })), INVALID);
    assert.throws(() => encodeRreq(rreq({ timestamp: -1 })), INVALID);
    assert.throws(() => encodeRreq(rreq({ timestamp: 2 ** 53 })), INVALID);
    assert.throws(() => encodeRreq(rreq({ encapsulation: 9 as Encapsulation })), INVALID);
    assert.throws(() => encodeRreq(rreq({ encapsulations: [UDP, 0 as Encapsulation] })), INVALID);
    assert.throws(() => encodeRreq(rreq({ encapsulations: new Array(256).fill(UDP) })), INVALID);
  });

  test('RREP', () => {
    assert.throws(() => encodeRrep(rrep({ chosenEncapsulation: UDP })), INVALID);
    assert.throws(() => encodeRrep(rrep({ verdict: 6 as Verdict })), INVALID);
    assert.throws(() => encodeRrep(rrep({ decision: 256 })), INVALID);
    assert.throws(() => encodeRrep(rrep({ decision: -1 })), INVALID);
    assert.throws(() => encodeRrep(rrep({ keepaliveMs: 2 ** 32 })), INVALID);
    assert.throws(() => encodeRrep(rrep({ round: 0 })), INVALID);
    assert.throws(() => encodeRrep(rrep({ nonce: new Uint8Array(0) })), INVALID);
  });

  test('outer view', () => {
    assert.throws(() => encodeOuterView({ srcPort: 0 }), INVALID);
    assert.throws(() => encodeOuterView({ dstPort: 65536 }), INVALID);
    assert.throws(() => encodeOuterView({ srcPort: 80.5 }), INVALID);
    assert.throws(() => encodeOuterView({ url: 'x'.repeat(513) }), INVALID);
    assert.throws(() => encodeOuterView({ host: '€'.repeat(171) }), INVALID);
    assert.throws(() => encodeOuterView({ srcAddr: '\uD800' }), INVALID);
    assert.throws(() => encodeOuterView({ headers: [['', 'v']] }), INVALID);
    assert.throws(() => encodeOuterView({ headers: [['bad name', 'v']] }), INVALID);
    assert.throws(() => encodeOuterView({ headers: [['k', 'v'.repeat(513)]] }), INVALID);
    const big = { srcAddr: 'x'.repeat(512), dstAddr: 'x'.repeat(512), url: 'x'.repeat(200) };
    assert.throws(() => encodeOuterView(big), INVALID);
  });

  test('path frames and probes', () => {
    assert.throws(() => encodePathChallenge(new Uint8Array(7)), INVALID);
    assert.throws(() => encodePathResponse(new Uint8Array(16)), INVALID);
    assert.throws(() => encodeProbe({ id: 1, encapsulation: UDP, size: 5 }), INVALID);
    assert.throws(() => encodeProbe({ id: 1, encapsulation: UDP, size: 1201 }), INVALID);
    assert.throws(() => encodeProbe({ id: -1, encapsulation: UDP, size: 6 }), INVALID);
    assert.throws(
      () => encodeProbe({ id: 1, encapsulation: 0 as Encapsulation, size: 6 }),
      INVALID,
    );
    assert.throws(() => encodeProbeAck({ id: 2 ** 32, size: 6 }), INVALID);
    assert.throws(() => encodeProbeAck({ id: 1, size: -1 }), INVALID);
  });
});

describe('decoders refuse bad input with MALFORMED', () => {
  const valid = encodeRreq(rreq());
  const patched = (b: Uint8Array, at: number, ...bytes: number[]): Uint8Array => {
    const c = b.slice();
    c.set(bytes, at);
    return c;
  };
  const withView = (viewHex: string): Uint8Array =>
    fromHex(`100100000007${toHex(nonce)}000000000000000100${viewHex}`);

  test('wrong type byte, empty, truncated, too long', () => {
    for (const t of [0x11, 0x01, 0x00, 0xff]) {
      assert.throws(() => decodeRreq(patched(valid, 0, t)), MALFORMED);
    }
    assert.throws(() => decodeRrep(valid), MALFORMED);
    assert.throws(() => decodeRreq(new Uint8Array(0)), MALFORMED);
    for (let n = 0; n < valid.length; n++) {
      // Every cut either lands inside a field or a TLV, or (at a TLV boundary) loses a field.
      const r = returnsOrMalformed(decodeRreq, valid.subarray(0, n));
      if (r !== undefined) assert.notDeepEqual(r, rreq());
    }
    const long = new Uint8Array(1201);
    long.set(valid);
    const pad = long.length - valid.length - 3;
    long.set([9, pad >> 8, pad & 255], valid.length); // an unknown TLV that pads to 1201
    assert.throws(() => decodeRreq(long), MALFORMED);
    assert.throws(() => decodeProbe(patched(new Uint8Array(1201), 0, 0x14, 1)), MALFORMED);
    assert.throws(() => decodeOuterView(new Uint8Array(1201)), MALFORMED);
  });

  test('fixed fields', () => {
    assert.throws(() => decodeRreq(patched(valid, 2, 0, 0, 0, 0)), MALFORMED); // round 0
    assert.throws(() => decodeRreq(patched(valid, 1, 0)), MALFORMED); // encapsulation 0
    assert.throws(() => decodeRreq(patched(valid, 1, 6)), MALFORMED); // encapsulation 6
    assert.throws(() => decodeRreq(patched(valid, 14, 0x00, 0x20)), MALFORMED); // timestamp ≥ 2^53
    assert.throws(() => decodeRreq(patched(valid, 22, 0x40)), MALFORMED); // list runs past the end
    const rp = encodeRrep(rrep());
    assert.throws(() => decodeRrep(patched(rp, 2, 6)), MALFORMED); // verdict 6
    assert.throws(() => decodeRrep(patched(rp, 5, 1)), MALFORMED); // chosen, but chosen enc. differs
    assert.equal(decodeRrep(patched(rp, 4, 0xfe, 1)).chosen, false); // reserved flag bits ignored
    assert.throws(() => decodeRrep(patched(rp, 6, 0, 0, 0, 0)), MALFORMED); // round 0
  });

  test('MAX_DATAGRAM: 4 bytes, at least 1280, once', () => {
    assert.equal(decodeRreq(withView('10000400000500')).maxDatagram, 1280);
    assert.throws(() => decodeRreq(withView('100004000004ff')), MALFORMED); // 1279
    assert.throws(() => decodeRreq(withView('1000030100')), MALFORMED); // 3 bytes
    assert.throws(() => decodeRreq(withView('10000400010000' + '10000400010000')), MALFORMED);
    assert.throws(() => encodeRreq(rreq({ maxDatagram: 1279 })), INVALID);
    assert.throws(() => encodeRrep(rrep({ maxDatagram: 2 ** 32 })), INVALID);
    assert.throws(() => encodeRreq(rreq({ maxDatagram: 1.5e4 + 0.5 })), INVALID);
  });

  test('outer view TLVs', () => {
    assert.ok(decodeRreq(withView('0200021194')));
    assert.throws(() => decodeRreq(withView('0200020000')), MALFORMED); // port 0
    assert.throws(() => decodeRreq(withView('040003001194')), MALFORMED); // port TLV of 3 bytes
    assert.throws(() => decodeRreq(withView('02000111')), MALFORMED); // port TLV of 1 byte
    assert.throws(() => decodeRreq(withView('0100')), MALFORMED); // TLV header cut
    assert.throws(() => decodeRreq(withView('01000561')), MALFORMED); // value cut
    assert.throws(() => decodeRreq(withView('010001ff')), MALFORMED); // bad UTF-8
    assert.throws(() => decodeRreq(withView('050002c0af')), MALFORMED); // overlong UTF-8
    assert.throws(() => decodeRreq(withView('010003eda080')), MALFORMED); // UTF-8 surrogate
    assert.throws(() => decodeRreq(withView('0100016101000162')), MALFORMED); // repeated srcAddr
    assert.throws(() => decodeRreq(withView('070001' + '00')), MALFORMED); // header TLV cut
    assert.throws(() => decodeRreq(withView('0700020000')), MALFORMED); // empty header name
    assert.throws(() => decodeRreq(withView('07000300056b')), MALFORMED); // name past the TLV
    assert.throws(() => decodeRreq(withView('07000700036120627676')), MALFORMED); // "a b" not a token
    const s513 = '78'.repeat(513);
    assert.throws(() => decodeRreq(withView(`050201${s513}`)), MALFORMED); // 513-byte string
    // Upper-case names from a sloppy peer are lower-cased, like the encoder does.
    assert.deepEqual(decodeRreq(withView('0700060003582d4162')).view, { headers: [['x-a', 'b']] });
  });

  test('path frames and probes', () => {
    const pc = encodePathChallenge(nonce);
    assert.throws(() => decodePathFrame(pc.subarray(0, 8)), MALFORMED);
    assert.throws(() => decodePathFrame(fromHex(`${toHex(pc)}00`)), MALFORMED);
    assert.throws(() => decodePathFrame(patched(pc, 0, 0x14)), MALFORMED);
    assert.throws(() => decodeProbe(fromHex('1401000000')), MALFORMED); // 5 bytes
    assert.throws(() => decodeProbe(fromHex('140700000000')), MALFORMED); // encapsulation 7
    assert.throws(() => decodeProbe(fromHex('150100000000')), MALFORMED);
    assert.throws(() => decodeProbeAck(fromHex('15000000010000')), MALFORMED);
    assert.throws(() => decodeProbeAck(fromHex('15000000010000000600')), MALFORMED);
    assert.throws(() => decodeProbeAck(fromHex('140000000100000006')), MALFORMED);
    // Padding contents are not checked; the size is what arrived.
    assert.deepEqual(decodeProbe(fromHex('1401000000ffabcd')), {
      id: 0xff,
      encapsulation: UDP,
      size: 8,
    });
  });

  test('non-byte input is MALFORMED too', () => {
    for (const d of [
      decodeRreq,
      decodeRrep,
      decodePathFrame,
      decodeProbe,
      decodeProbeAck,
      decodeOuterView,
    ]) {
      assert.throws(() => d(undefined as unknown as Uint8Array), MALFORMED);
      assert.throws(() => d('abc' as unknown as Uint8Array), MALFORMED);
    }
  });
});

// --- Properties ---------------------------------------------------------------------------------

const str = fc.oneof(
  { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 4 },
  { arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 80 }), weight: 4 },
  { arbitrary: fc.constant('\uFEFF'), weight: 1 },
  { arbitrary: fc.ipV4(), weight: 2 },
  { arbitrary: fc.ipV6(), weight: 2 },
  // Long strings, so that some views hit the 512-byte and 1200-byte limits.
  { arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 200, maxLength: 520 }), weight: 1 },
  { arbitrary: fc.string({ unit: 'binary', minLength: 100, maxLength: 200 }), weight: 1 },
);
const port = fc.integer({ min: 1, max: 65535 });
const headerName = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9a-z]{1,16}$/);
const viewArb: fc.Arbitrary<OuterView> = fc.record(
  {
    srcAddr: str,
    srcPort: port,
    dstAddr: str,
    dstPort: port,
    url: str,
    host: str,
    headers: fc.array(fc.tuple(headerName, str), { minLength: 1, maxLength: 32 }),
  },
  { requiredKeys: [], noNullPrototype: true },
);
const encArb = fc.constantFrom(...ALL);
const encList = fc.array(encArb, { maxLength: 8 });
const nonceArb = fc.uint8Array({ minLength: 8, maxLength: 8 });
const round = fc.integer({ min: 1, max: 0xffff_ffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

const rreqArb: fc.Arbitrary<Rreq> = fc.record(
  {
    round,
    nonce: nonceArb,
    encapsulation: encArb,
    timestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    encapsulations: encList,
    view: viewArb,
  },
  { noNullPrototype: true },
);
const rrepArb: fc.Arbitrary<Rrep> = fc
  .record(
    {
      round,
      nonce: nonceArb,
      encapsulation: encArb,
      verdict: fc.constantFrom(...Object.values(Verdict)),
      decision: fc.integer({ min: 0, max: 255 }),
      chosen: fc.boolean(),
      chosenEncapsulation: encArb,
      keepaliveMs: u32,
      encapsulations: encList,
      observed: viewArb,
    },
    { noNullPrototype: true },
  )
  .map((r) => (r.chosen ? { ...r, chosenEncapsulation: r.encapsulation } : r));
const probeArb: fc.Arbitrary<Probe> = fc.record(
  { id: u32, encapsulation: encArb, size: fc.integer({ min: 6, max: 1200 }) },
  { noNullPrototype: true },
);
const ackArb: fc.Arbitrary<ProbeAck> = fc.record({ id: u32, size: u32 }, { noNullPrototype: true });

/** The encoded length of a view, computed independently of the codec. */
function viewLength(v: OuterView): number {
  let n = 0;
  for (const s of [v.srcAddr, v.dstAddr, v.url, v.host])
    if (s !== undefined) n += 3 + utf8(s).length;
  for (const p of [v.srcPort, v.dstPort]) if (p !== undefined) n += 5;
  for (const [k, val] of v.headers ?? []) n += 5 + k.length + utf8(val).length;
  return n;
}
const tooLongString = (v: OuterView): boolean =>
  [v.srcAddr, v.dstAddr, v.url, v.host, ...(v.headers ?? []).map(([, x]) => x)].some(
    (s) => s !== undefined && utf8(s).length > 512,
  );

/** Either the frame fits and round-trips, or it would not fit and the encoder says so. */
function roundTrip<T>(
  x: T,
  fixed: number,
  view: OuterView,
  enc: (x: T) => Uint8Array,
  dec: (b: Uint8Array) => T,
) {
  if (tooLongString(view) || fixed + viewLength(view) > MAX_REGISTRATION_FRAME) {
    assert.throws(() => enc(x), INVALID);
    return;
  }
  const b = enc(x);
  assert.equal(b.length, fixed + viewLength(view));
  assert.deepEqual(dec(b), x);
}

describe('properties', () => {
  test('decode ∘ encode is the identity on valid inputs', () => {
    fc.assert(
      fc.property(viewArb, (v) => roundTrip(v, 0, v, encodeOuterView, decodeOuterView)),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(rreqArb, (r) =>
        roundTrip(r, 23 + r.encapsulations.length, r.view, encodeRreq, decodeRreq),
      ),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(rrepArb, (r) =>
        roundTrip(r, 23 + r.encapsulations.length, r.observed, encodeRrep, decodeRrep),
      ),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(probeArb, (p) => assert.deepEqual(decodeProbe(encodeProbe(p)), p)),
      { numRuns: 300 },
    );
    fc.assert(fc.property(ackArb, (a) => assert.deepEqual(decodeProbeAck(encodeProbeAck(a)), a)));
    fc.assert(
      fc.property(nonceArb, fc.boolean(), (d, challenge) => {
        const b = challenge ? encodePathChallenge(d) : encodePathResponse(d);
        assert.deepEqual(decodePathFrame(b), { type: challenge ? 0x12 : 0x13, data: d });
      }),
    );
  });

  type Codec = [
    string,
    (b: Uint8Array) => unknown,
    (x: never) => Uint8Array,
    fc.Arbitrary<Uint8Array>,
  ];
  const fits =
    (enc: (x: never) => Uint8Array) =>
    (x: unknown): Uint8Array | null => {
      try {
        return enc(x as never);
      } catch {
        return null; // too long for a frame: not a valid input
      }
    };
  const framesOf = <T>(arb: fc.Arbitrary<T>, enc: (x: T) => Uint8Array): fc.Arbitrary<Uint8Array> =>
    arb.map(fits(enc as (x: never) => Uint8Array)).filter((b): b is Uint8Array => b !== null);
  const codecs: Codec[] = [
    ['RREQ', decodeRreq, encodeRreq as (x: never) => Uint8Array, framesOf(rreqArb, encodeRreq)],
    ['RREP', decodeRrep, encodeRrep as (x: never) => Uint8Array, framesOf(rrepArb, encodeRrep)],
    [
      'view',
      decodeOuterView,
      encodeOuterView as (x: never) => Uint8Array,
      framesOf(viewArb, encodeOuterView),
    ],
    ['PROBE', decodeProbe, encodeProbe as (x: never) => Uint8Array, probeArb.map(encodeProbe)],
    [
      'PROBE_ACK',
      decodeProbeAck,
      encodeProbeAck as (x: never) => Uint8Array,
      ackArb.map(encodeProbeAck),
    ],
    [
      'PATH',
      decodePathFrame,
      ((x: { type: number; data: Uint8Array }) =>
        x.type === RegFrameType.PATH_CHALLENGE
          ? encodePathChallenge(x.data)
          : encodePathResponse(x.data)) as (x: never) => Uint8Array,
      nonceArb.map(encodePathChallenge),
    ],
  ];

  /**
   * Whatever a decoder accepts, the encoder accepts back and the decoder reads the same again: the
   * two agree on what is valid.
   */
  function check(
    name: string,
    dec: (b: Uint8Array) => unknown,
    enc: (x: never) => Uint8Array,
    b: Uint8Array,
  ) {
    const v = returnsOrMalformed(dec, b);
    if (v === undefined) return;
    const again = enc(v as never);
    assert.ok(again.length <= b.length, `${name}: re-encoding grew`);
    assert.deepEqual(dec(again), v, name);
  }

  test('random bytes: every decoder returns a value or throws MALFORMED', () => {
    const types = fc.constantFrom(0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x00, 0xff);
    fc.assert(
      fc.property(types, fc.uint8Array({ maxLength: 1300 }), (t, b) => {
        const d = b.slice();
        if (d.length > 0) d[0] = t;
        for (const [name, dec, enc] of codecs) check(name, dec, enc, d);
      }),
      { numRuns: 3000 },
    );
  });

  test('random TLVs after a valid fixed part: a value or MALFORMED', () => {
    // Random bytes rarely get past the fixed fields; this reaches the list and TLV parsers.
    const tlvs = fc.array(
      fc.tuple(
        fc.integer({ min: 0, max: 9 }),
        fc.uint8Array({ maxLength: 24 }),
        fc.integer({ min: -3, max: 3 }),
      ),
      { maxLength: 12 },
    );
    const list = fc.uint8Array({ maxLength: 6 });
    fc.assert(
      fc.property(fc.boolean(), list, tlvs, (isReq, codes, items) => {
        const fixed = isReq
          ? encodeRreq(rreq({ encapsulations: [], view: {} }))
          : encodeRrep(rrep({ encapsulations: [], observed: {} }));
        const parts = [fixed.subarray(0, 22), new Uint8Array([codes.length]), codes];
        for (const [tag, value, skew] of items) {
          const len = Math.max(0, value.length + skew);
          parts.push(new Uint8Array([tag, len >> 8, len & 255]), value);
        }
        const b = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          b.set(p, o);
          o += p.length;
        }
        for (const [name, dec, enc] of codecs) check(name, dec, enc, b);
        check(
          'view',
          decodeOuterView,
          encodeOuterView as (x: never) => Uint8Array,
          b.subarray(23 + codes.length),
        );
      }),
      { numRuns: 3000 },
    );
  });

  test('truncations and bit flips of valid frames: a value or MALFORMED', () => {
    for (const [name, dec, enc, frames] of codecs) {
      fc.assert(
        fc.property(
          frames,
          fc.nat(),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), {
            minLength: 1,
            maxLength: 4,
          }),
          (b, cut, flips) => {
            check(name, dec, enc, b.subarray(0, cut % (b.length + 1)));
            const f = b.slice();
            for (const [i, bit] of flips) f[i % f.length]! ^= 1 << bit;
            check(name, dec, enc, f);
          },
        ),
        { numRuns: 500 },
      );
    }
  });
});
