/**
 * One binary WebSocket message per datagram (RFC 6455).
 *
 * Opening handshake (§4): the client sends `GET <base>/ws` with `Upgrade: websocket`,
 * `Connection: Upgrade`, `Sec-WebSocket-Version: 13` and a random 16-byte `Sec-WebSocket-Key`
 * (base64); the relay answers 101 with `Sec-WebSocket-Accept` = base64(SHA-1(key + the §1.3 GUID)).
 * A request for the WebSocket endpoint without the upgrade (a proxy stripped it) gets 426.
 *
 * Framing (§5): FIN set on every data frame, opcode 2 (binary), 7-bit, 16-bit or 64-bit payload
 * length; client frames are masked with a fresh key from the path's PRNG (§5.3), server frames
 * are not, and each side closes with 1002 on the other rule broken (§5.1). Fragmented messages are
 * reassembled; text is refused with 1003 (§7.4.1), messages over the limit with 1009; pings are
 * answered (§5.5.2); a close frame is answered with a close frame and the TCP connection closed
 * (§5.5.1).
 *
 * The first datagram reaches the relay 2.5 round trips after opening: TCP handshake, upgrade,
 * then the frame.
 */
import { sha1 } from '@noble/hashes/legacy.js';
import { Encapsulation, type PathInfo } from '@roamlink/core';
import {
  fromLatin1,
  type Host,
  type HttpHeaders,
  type HttpResponder,
  type HttpResponseHead,
  type HttpServerRequest,
  headerHasToken,
  headerValue,
  type RawStream,
  type TcpConnection,
} from '@roamlink/netsim';
import { HttpClientConnection, type HttpTarget, httpTarget } from './http-client.ts';
import { onConnectionGone } from './http-session.ts';
import {
  ClientPathBase,
  type ClientPathOptions,
  defaultRng,
  MAX_DATAGRAM_BYTES,
  nextPathId,
  PathError,
  type RandomSource,
  randomBytes,
  type SimRelayStats,
} from './types.ts';

/** RFC 6455 §1.3. */
export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** RFC 6455 §5.2 opcodes. */
export const WsOpcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;
export type WsOpcode = (typeof WsOpcode)[keyof typeof WsOpcode];

/** RFC 6455 §7.4.1 status codes used here. */
export const WsClose = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  TOO_BIG: 1009,
} as const;

// ---- base64 (RFC 4648 §4) ----

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

export function base64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    s += B64[n >>> 18]! + B64[(n >>> 12) & 63]!;
    s += i + 1 < b.length ? B64[(n >>> 6) & 63]! : '=';
    s += i + 2 < b.length ? B64[n & 63]! : '=';
  }
  return s;
}

/** §4.2.1: the key must be base64 of exactly 16 bytes. */
export function isWebSocketKey(key: string): boolean {
  return /^[A-Za-z0-9+/]{21}[AQgw]==$/.test(key);
}

/** §4.2.2 step 5.4: base64(SHA-1(key + GUID)). */
export function webSocketAccept(key: string): string {
  return base64(sha1(fromLatin1(key + WS_GUID)));
}

// ---- frames (§5.2) ----

/** One frame, FIN set; masked with `mask` (4 bytes) when given (client to server). */
export function encodeFrame(opcode: number, payload: Uint8Array, mask?: Uint8Array): Uint8Array {
  const n = payload.length;
  const ext = n < 126 ? 0 : n < 65_536 ? 2 : 8;
  const head = 2 + ext + (mask === undefined ? 0 : 4);
  const out = new Uint8Array(head + n);
  out[0] = 0x80 | opcode;
  out[1] = (mask === undefined ? 0 : 0x80) | (ext === 0 ? n : ext === 2 ? 126 : 127);
  if (ext === 2) {
    out[2] = n >>> 8;
    out[3] = n & 255;
  } else if (ext === 8) {
    // Payloads here are far below 2^32: the high word stays zero.
    out[6] = n >>> 24;
    out[7] = (n >>> 16) & 255;
    out[8] = (n >>> 8) & 255;
    out[9] = n & 255;
  }
  if (mask === undefined) out.set(payload, head);
  else {
    out.set(mask, head - 4);
    for (let i = 0; i < n; i++) out[head + i] = payload[i]! ^ mask[i & 3]!;
  }
  return out;
}

export function closePayload(code: number, reason = ''): Uint8Array {
  const r = fromLatin1(reason.slice(0, 120));
  const out = new Uint8Array(2 + r.length);
  out[0] = code >>> 8;
  out[1] = code & 255;
  out.set(r, 2);
  return out;
}

/**
 * Incremental frame parser: feed bytes, get whole binary messages and control frames. On a rule
 * broken it calls onError with the close code to send and stops.
 */
export class WsReader {
  onMessage: (data: Uint8Array) => void = () => {};
  onPing: (payload: Uint8Array) => void = () => {};
  onPong: (payload: Uint8Array) => void = () => {};
  onClose: (code: number | undefined, reason: string) => void = () => {};
  onError: (code: number, reason: string) => void = () => {};
  readonly #requireMask: boolean;
  readonly #maxMessage: number;
  #chunks: Uint8Array[] = [];
  #have = 0;
  /** Bytes needed before parsing can progress. */
  #need = 2;
  #fragments: Uint8Array[] | undefined;
  #fragmentBytes = 0;
  #stopped = false;

  /** `requireMask`: true on the server (client frames must be masked), false on the client. */
  constructor(requireMask: boolean, maxMessageBytes = MAX_DATAGRAM_BYTES) {
    this.#requireMask = requireMask;
    this.#maxMessage = maxMessageBytes;
  }

  push(bytes: Uint8Array): void {
    if (this.#stopped || bytes.length === 0) return;
    this.#chunks.push(bytes);
    this.#have += bytes.length;
    // Join only once a whole frame (or its header) can be there: no quadratic copying when a
    // large frame arrives in many small pieces.
    if (this.#have < this.#need) return;
    let b = this.#chunks.length === 1 ? this.#chunks[0]! : new Uint8Array(this.#have);
    if (this.#chunks.length > 1) {
      let at = 0;
      for (const c of this.#chunks) {
        b.set(c, at);
        at += c.length;
      }
    }
    let o = 0;
    this.#need = 2;
    while (!this.#stopped) {
      const r = this.#frame(b, o);
      if (r <= 0) {
        this.#need = -r;
        break;
      }
      o += r;
    }
    b = this.#stopped || o === b.length ? new Uint8Array(0) : b.slice(o);
    this.#chunks = b.length === 0 ? [] : [b];
    this.#have = b.length;
  }

  /**
   * Parses one frame at `o`: returns the bytes it used (> 0), or minus the bytes needed from `o`
   * before it can (0 when stopped).
   */
  #frame(b: Uint8Array, o: number): number {
    if (b.length - o < 2) return -2;
    const b0 = b[o]!;
    const b1 = b[o + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    let len = b1 & 0x7f;
    let p = o + 2;
    if (b0 & 0x70) return this.#error(WsClose.PROTOCOL_ERROR, 'reserved bits set');
    if (masked !== this.#requireMask) {
      return this.#error(WsClose.PROTOCOL_ERROR, masked ? 'masked server frame' : 'unmasked frame');
    }
    const control = opcode >= 0x8;
    if (control && (!fin || len > 125)) return this.#error(WsClose.PROTOCOL_ERROR, 'bad control');
    if (len === 126) {
      if (b.length - p < 2) return -4;
      len = (b[p]! << 8) | b[p + 1]!;
      p += 2;
    } else if (len === 127) {
      if (b.length - p < 8) return -10;
      const hi = ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
      if (hi !== 0) return this.#error(WsClose.TOO_BIG, 'frame too big');
      len = ((b[p + 4]! << 24) | (b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!) >>> 0;
      p += 8;
    }
    if (!control && this.#fragmentBytes + len > this.#maxMessage) {
      return this.#error(WsClose.TOO_BIG, 'message too big');
    }
    const maskAt = p;
    if (masked) p += 4;
    if (b.length - p < len) return -(p + len - o);
    const payload = b.slice(p, p + len);
    if (masked) for (let i = 0; i < len; i++) payload[i]! ^= b[maskAt + (i & 3)]!;
    const used = p + len - o;
    switch (opcode) {
      case WsOpcode.CLOSE: {
        const code = len >= 2 ? (payload[0]! << 8) | payload[1]! : undefined;
        let reason = '';
        for (let i = 2; i < len; i++) reason += String.fromCharCode(payload[i]!);
        this.#stopped = true;
        this.onClose(code, reason);
        return used;
      }
      case WsOpcode.PING:
        this.onPing(payload);
        return used;
      case WsOpcode.PONG:
        this.onPong(payload);
        return used;
      case WsOpcode.TEXT:
        return this.#error(WsClose.UNSUPPORTED_DATA, 'text messages are not used');
      case WsOpcode.BINARY:
        if (this.#fragments !== undefined)
          return this.#error(WsClose.PROTOCOL_ERROR, 'interleaved');
        if (fin) this.onMessage(payload);
        else {
          this.#fragments = [payload];
          this.#fragmentBytes = len;
        }
        return used;
      case WsOpcode.CONTINUATION: {
        const f = this.#fragments;
        if (f === undefined) return this.#error(WsClose.PROTOCOL_ERROR, 'stray continuation');
        f.push(payload);
        this.#fragmentBytes += len;
        if (fin) {
          const all = new Uint8Array(this.#fragmentBytes);
          let at = 0;
          for (const x of f) {
            all.set(x, at);
            at += x.length;
          }
          this.#fragments = undefined;
          this.#fragmentBytes = 0;
          this.onMessage(all);
        }
        return used;
      }
      default:
        return this.#error(WsClose.PROTOCOL_ERROR, `opcode ${opcode}`);
    }
  }

  #error(code: number, reason: string): number {
    this.#stopped = true;
    this.onError(code, reason);
    return 0;
  }
}

// ---- client half ----

export class WebSocketClientPath extends ClientPathBase {
  readonly http: HttpClientConnection;
  readonly target: HttpTarget;
  readonly #rng: RandomSource;
  readonly #url: string;
  readonly #headers: HttpHeaders;
  readonly #key: string;
  readonly #reader = new WsReader(false);
  #upgraded = false;
  #closeSent = false;

  constructor(host: Host, opts: ClientPathOptions) {
    const id = nextPathId(host, 'ws');
    super(host, id, opts);
    this.#rng = opts.rng ?? defaultRng(host, id);
    this.target = httpTarget(host, opts);
    this.#key = base64(randomBytes(this.#rng, 16));
    const path = `${this.target.basePath}/ws`;
    this.#url = `ws://${this.target.authority}${path}`;
    this.#headers = [
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Key', this.#key],
      ['Sec-WebSocket-Version', '13'],
      ...(opts.headers ?? []),
    ];
    this.http = new HttpClientConnection(host, this.target, opts);
    this.http.onFail = (r) => this.fail(r);
    this.http.onRaw = (b) => this.#reader.push(b);
    this.http.request('GET', path, this.#headers, undefined, {
      onHead: (h) => this.#answer(h),
      onBody: () => {},
      onEnd: () => {},
    });
    const r = this.#reader;
    r.onMessage = (d) => this.delivered(d);
    r.onPing = (p) => this.#frame(WsOpcode.PONG, p);
    r.onClose = (code, reason) => {
      // §5.5.1: answer the close, then the relay closes TCP.
      this.#sendClose(code ?? WsClose.NORMAL, '');
      this.fail(`${PathError.CLOSED}: ${code ?? 'no code'}${reason === '' ? '' : ` ${reason}`}`);
    };
    r.onError = (code, reason) => {
      this.#sendClose(code, reason);
      this.fail(`${PathError.PROTOCOL}: ${reason}`);
    };
  }

  get info(): PathInfo {
    return {
      encapsulation: Encapsulation.WEBSOCKET,
      view: this.http.view(this.#url, [['Host', this.target.authority], ...this.#headers]),
    };
  }

  #answer(h: HttpResponseHead): void {
    if (h.status !== 101) {
      const via = headerValue(h.headers, 'via');
      const detail = `${h.status} ${h.reason}${via === undefined ? '' : ` (via ${via})`}`;
      // 426 is the relay saying it got no upgrade; a 2xx means someone answered it as plain HTTP.
      const stripped = h.status === 426 || (h.status >= 200 && h.status < 300);
      this.fail(`${stripped ? PathError.UPGRADE_STRIPPED : PathError.UPGRADE_REFUSED}: ${detail}`);
      return;
    }
    // §4.1: the client must check Upgrade, Connection and the accept value.
    if (
      !headerHasToken(h.headers, 'upgrade', 'websocket') ||
      !headerHasToken(h.headers, 'connection', 'upgrade') ||
      headerValue(h.headers, 'sec-websocket-accept') !== webSocketAccept(this.#key)
    ) {
      this.fail(`${PathError.BAD_HANDSHAKE}: 101 without a valid Sec-WebSocket-Accept`);
      return;
    }
    this.#upgraded = true;
    this.opened();
  }

  protected transmit(datagram: Uint8Array): boolean {
    if (this.http.conn.bufferedAmount + datagram.length > this.maxQueuedBytes) return false;
    return this.#frame(WsOpcode.BINARY, datagram);
  }

  #frame(opcode: number, payload: Uint8Array): boolean {
    // §5.3: a fresh, unpredictable masking key for every frame.
    return this.http.write(encodeFrame(opcode, payload, randomBytes(this.#rng, 4)));
  }

  #sendClose(code: number, reason: string): void {
    if (this.#closeSent || !this.#upgraded) return;
    this.#closeSent = true;
    this.#frame(WsOpcode.CLOSE, closePayload(code, reason));
  }

  protected shutdown(): void {
    this.#sendClose(WsClose.NORMAL, '');
    this.http.close();
  }
}

// ---- relay half ----

interface RelayWs {
  conn: TcpConnection;
  raw: RawStream;
  closeSent: boolean;
  unwatch: () => void;
}

/** Relay side: upgrades requests for `<base>/ws`, then reads frames. Ids "ws:<n>". */
export class WebSocketRelay {
  onDatagram: (datagram: Uint8Array, pathId: string, info: PathInfo) => void = () => {};
  onPathClose: (pathId: string, reason: string) => void = () => {};
  readonly #stats: SimRelayStats;
  readonly #maxBuffered: number;
  readonly #socks = new Map<string, RelayWs>();
  #n = 0;

  constructor(stats: SimRelayStats, opts: { maxBufferedBytes: number }) {
    this.#stats = stats;
    this.#maxBuffered = opts.maxBufferedBytes;
  }

  /** Handles a request routed to the WebSocket endpoint; `info` is what the relay observed. */
  handle(req: HttpServerRequest, res: HttpResponder, info: PathInfo): void {
    const h = req.head.headers;
    const refuse = (status: number, headers: HttpHeaders = []) => {
      this.#stats.httpRejected++;
      res.writeHead(status, [...headers, ['Content-Length', '0']]);
      res.end();
    };
    if (
      req.head.method !== 'GET' ||
      !headerHasToken(h, 'upgrade', 'websocket') ||
      !headerHasToken(h, 'connection', 'upgrade')
    ) {
      // RFC 9110 §15.5.22: say which protocol is required.
      refuse(426, [
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade'],
      ]);
      return;
    }
    if (headerValue(h, 'sec-websocket-version') !== '13') {
      refuse(426, [['Sec-WebSocket-Version', '13']]); // §4.4
      return;
    }
    const key = headerValue(h, 'sec-websocket-key');
    if (key === undefined || !isWebSocketKey(key)) {
      refuse(400);
      return;
    }
    const raw = res.upgrade([
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Accept', webSocketAccept(key)],
    ]);
    const id = `ws:${++this.#n}`;
    const ws: RelayWs = { conn: req.conn, raw, closeSent: false, unwatch: () => {} };
    this.#socks.set(id, ws);
    const reader = new WsReader(true);
    reader.onMessage = (d) => {
      this.#stats.datagramsReceived++;
      this.onDatagram(d, id, info);
    };
    reader.onPing = (p) => raw.write(encodeFrame(WsOpcode.PONG, p));
    reader.onClose = (code) =>
      this.#end(id, code ?? WsClose.NORMAL, `${PathError.CLOSED}: ${code}`);
    reader.onError = (code, reason) => this.#end(id, code, `${PathError.PROTOCOL}: ${reason}`);
    raw.onData = (d) => reader.push(d);
    ws.unwatch = onConnectionGone(req.conn, (reason) => this.#gone(id, reason));
  }

  send(pathId: string, datagram: Uint8Array): boolean {
    const ws = this.#socks.get(pathId);
    if (ws === undefined || ws.closeSent || !ws.conn.writable) return false;
    if (datagram.length === 0 || datagram.length > MAX_DATAGRAM_BYTES) return false;
    if (ws.conn.bufferedAmount + datagram.length > this.#maxBuffered) return false;
    ws.raw.write(encodeFrame(WsOpcode.BINARY, datagram));
    this.#stats.datagramsSent++;
    return true;
  }

  close(): void {
    for (const id of [...this.#socks.keys()])
      this.#end(id, WsClose.GOING_AWAY, 'relay closing', false);
  }

  /** Sends a close frame (once) and closes the connection. */
  #end(id: string, code: number, reason: string, notify = true): void {
    const ws = this.#socks.get(id);
    if (ws === undefined) return;
    if (!ws.closeSent && ws.conn.writable) {
      ws.closeSent = true;
      ws.raw.write(encodeFrame(WsOpcode.CLOSE, closePayload(code)));
    }
    ws.raw.close();
    if (
      code === WsClose.PROTOCOL_ERROR ||
      code === WsClose.UNSUPPORTED_DATA ||
      code === WsClose.TOO_BIG
    ) {
      this.#stats.wsProtocolErrors++;
    }
    this.#gone(id, reason, notify);
  }

  #gone(id: string, reason: string, notify = true): void {
    const ws = this.#socks.get(id);
    if (ws === undefined) return;
    this.#socks.delete(id);
    ws.raw.onData = undefined;
    ws.unwatch();
    if (notify) this.onPathClose(id, reason);
  }
}
