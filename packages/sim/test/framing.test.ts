import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fromLatin1 } from '@roamlink/netsim';
import {
  base64,
  decodeRecords,
  EMPTY_RECORD,
  encodeFrame,
  encodeRecord,
  encodeRecords,
  isWebSocketKey,
  RecordReader,
  WsClose,
  WsOpcode,
  WsReader,
  webSocketAccept,
} from '../src/index.ts';

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((x) => Number.parseInt(x, 16)));

/** Every way to cut `b` in two, plus byte by byte. */
function splits(b: Uint8Array): Uint8Array[][] {
  const out: Uint8Array[][] = [[b], Array.from(b, (x) => new Uint8Array([x]))];
  for (let i = 1; i < b.length; i++) out.push([b.subarray(0, i), b.subarray(i)]);
  return out;
}

describe('records (RFC 8229 §3 framing)', () => {
  test('the Length field counts itself', () => {
    assert.deepEqual(encodeRecord(new Uint8Array([7, 8, 9])), new Uint8Array([0, 5, 7, 8, 9]));
    assert.deepEqual(EMPTY_RECORD, new Uint8Array([0, 2]));
    assert.deepEqual(
      encodeRecords([new Uint8Array([1]), new Uint8Array(0), new Uint8Array([2, 3])]),
      new Uint8Array([0, 3, 1, 0, 2, 0, 4, 2, 3]),
    );
  });

  test('a reader gets the same records however the stream is cut', () => {
    const ds = [new Uint8Array([1]), new Uint8Array(0), new Uint8Array(300).fill(9)];
    const wire = encodeRecords(ds);
    for (const parts of splits(wire)) {
      const got: Uint8Array[] = [];
      const r = new RecordReader();
      r.onRecord = (d) => got.push(d);
      for (const p of parts) assert.ok(r.push(p));
      assert.deepEqual(got, ds);
      assert.ok(r.atBoundary);
    }
  });

  test('zeroCopy: large records are views of the chunk, those below copyBelow are copies', () => {
    const small = new Uint8Array(10).fill(1);
    const large = new Uint8Array(5000).fill(2);
    const wire = encodeRecords([small, large]);
    const got: Uint8Array[] = [];
    const r = new RecordReader({ zeroCopy: true, copyBelow: 4096 });
    r.onRecord = (d) => got.push(d);
    assert.ok(r.push(wire));
    assert.deepEqual(got, [small, large]);
    assert.notEqual(got[0]!.buffer, wire.buffer, 'a small record holds no reference to the chunk');
    assert.equal(got[1]!.buffer, wire.buffer, 'a large record is a view');
    assert.equal(got[1]!.byteOffset, 2 + 10 + 2);
  });

  test('a Length below 2 is a framing error; a truncated body is not a whole body', () => {
    const r = new RecordReader();
    assert.equal(r.push(new Uint8Array([0, 1, 5])), false);
    assert.ok(r.failed);
    assert.equal(r.push(encodeRecord(new Uint8Array([1]))), false, 'stays failed');
    assert.equal(decodeRecords(new Uint8Array([0, 4, 1])), undefined);
    assert.equal(decodeRecords(new Uint8Array([0])), undefined);
    assert.deepEqual(decodeRecords(new Uint8Array(0)), []);
  });
});

describe('WebSocket (RFC 6455)', () => {
  test('§1.3: the accept value of the example key', () => {
    assert.equal(webSocketAccept('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.ok(isWebSocketKey('dGhlIHNhbXBsZSBub25jZQ=='));
    assert.ok(!isWebSocketKey('dGhlIHNhbXBsZSBub25jZQ='));
    assert.ok(!isWebSocketKey('Zm9vYmFy'));
  });

  test('RFC 4648 §10 base64 vectors', () => {
    const v: [string, string][] = [
      ['', ''],
      ['f', 'Zg=='],
      ['fo', 'Zm8='],
      ['foo', 'Zm9v'],
      ['foob', 'Zm9vYg=='],
      ['fooba', 'Zm9vYmE='],
      ['foobar', 'Zm9vYmFy'],
    ];
    for (const [plain, enc] of v) assert.equal(base64(fromLatin1(plain)), enc);
  });

  test('§5.7 examples, byte for byte', () => {
    const hello = fromLatin1('Hello');
    const mask = hex('37fa213d');
    assert.deepEqual(encodeFrame(WsOpcode.TEXT, hello), hex('810548656c6c6f'));
    assert.deepEqual(encodeFrame(WsOpcode.TEXT, hello, mask), hex('818537fa213d7f9f4d5158'));
    assert.deepEqual(encodeFrame(WsOpcode.PING, hello), hex('890548656c6c6f'));
    assert.deepEqual(encodeFrame(WsOpcode.PONG, hello, mask), hex('8a8537fa213d7f9f4d5158'));
    const b256 = encodeFrame(WsOpcode.BINARY, new Uint8Array(256));
    assert.deepEqual(b256.subarray(0, 4), hex('827e0100'));
    assert.equal(b256.length, 4 + 256);
    const b64k = encodeFrame(WsOpcode.BINARY, new Uint8Array(65_536));
    assert.deepEqual(b64k.subarray(0, 10), hex('827f0000000000010000'));
    assert.equal(b64k.length, 10 + 65_536);
  });

  test('the reader reassembles §5.7’s fragmented message (as binary), split anywhere', () => {
    const wire = hex('020348656c80026c6f');
    for (const parts of splits(wire)) {
      const r = new WsReader(false);
      const got: string[] = [];
      r.onMessage = (d) => got.push(String.fromCharCode(...d));
      r.onError = (c, m) => assert.fail(`${c} ${m}`);
      for (const p of parts) r.push(p);
      assert.deepEqual(got, ['Hello']);
    }
  });

  test('masked frames unmask, with 7-, 16- and 64-bit lengths, split anywhere', () => {
    const sizes = [0, 1, 125, 126, 65_535, 65_536];
    const msgs = sizes.map((n) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + n) & 255));
    const mask = hex('01020304');
    const wire = new Uint8Array(
      msgs.reduce((n, m) => n + encodeFrame(WsOpcode.BINARY, m, mask).length, 0),
    );
    let o = 0;
    for (const m of msgs) {
      const f = encodeFrame(WsOpcode.BINARY, m, mask);
      wire.set(f, o);
      o += f.length;
    }
    for (const cut of [1, 7, 127, 4096, wire.length]) {
      const r = new WsReader(true, 65_536);
      const got: Uint8Array[] = [];
      r.onMessage = (d) => got.push(d);
      r.onError = (c, m) => assert.fail(`${c} ${m}`);
      for (let i = 0; i < wire.length; i += cut) r.push(wire.subarray(i, i + cut));
      assert.deepEqual(got, msgs);
    }
  });

  test('rules: masking direction, text, size, control frames', () => {
    const errs = (requireMask: boolean, frame: Uint8Array, max?: number) => {
      const r = new WsReader(requireMask, max);
      const out: number[] = [];
      r.onError = (c) => out.push(c);
      r.onMessage = () => out.push(0);
      r.push(frame);
      return out;
    };
    const m = hex('0a0b0c0d');
    const one = new Uint8Array([1]);
    assert.deepEqual(errs(true, encodeFrame(WsOpcode.BINARY, one)), [WsClose.PROTOCOL_ERROR]);
    assert.deepEqual(errs(false, encodeFrame(WsOpcode.BINARY, one, m)), [WsClose.PROTOCOL_ERROR]);
    assert.deepEqual(errs(false, encodeFrame(WsOpcode.TEXT, one)), [WsClose.UNSUPPORTED_DATA]);
    assert.deepEqual(errs(false, encodeFrame(WsOpcode.BINARY, new Uint8Array(11)), 10), [
      WsClose.TOO_BIG,
    ]);
    assert.deepEqual(errs(false, encodeFrame(WsOpcode.PING, new Uint8Array(126))), [
      WsClose.PROTOCOL_ERROR,
    ]);
    assert.deepEqual(errs(false, hex('0201ff')), [], 'a first fragment waits');
    assert.deepEqual(errs(false, hex('8001ff')), [WsClose.PROTOCOL_ERROR], 'stray continuation');
    assert.deepEqual(errs(false, hex('c201ff')), [WsClose.PROTOCOL_ERROR], 'RSV1 set');
    assert.deepEqual(errs(false, hex('8301ff')), [WsClose.PROTOCOL_ERROR], 'reserved opcode');
  });

  test('close frames carry their status and reason', () => {
    const r = new WsReader(false);
    let got: [number | undefined, string] | undefined;
    r.onClose = (c, why) => {
      got = [c, why];
    };
    r.push(encodeFrame(WsOpcode.CLOSE, new Uint8Array([0x03, 0xe9, 0x62, 0x79, 0x65])));
    assert.deepEqual(got, [1001, 'bye']);
    r.push(encodeFrame(WsOpcode.BINARY, new Uint8Array([1])));
    assert.deepEqual(got, [1001, 'bye'], 'nothing after a close');
  });
});
