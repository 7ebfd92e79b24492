/**
 * ESP over WebSocket (RFC 6455) with the browser's `WebSocket`: one binary message is one roamlink
 * datagram, to `<relay>/rl/ws`, byte for byte what the Node client and the relay speak
 * (packages/node/src/websocket.ts). One connection is one path, "ws:<n>".
 *
 * A browser WebSocket has no backpressure but `bufferedAmount`: `send` drops past a bound
 * (1 MiB), which the core recovers from like a UDP loss, and `congested` tells the stream layer to
 * wait before that. A text message from the relay is a protocol violation: the path closes with
 * 4002. This side closes with 4004 (client closing); browsers may only send 1000 and 3000-4999.
 *
 * The view: the URL, and Host as the browser sends it (the URL's authority). A page sets no
 * headers on a WebSocket and cannot see its own address or port, so those are left out: the
 * verdict on this path is at best "unknown", or "protocol" when a proxy shows.
 */
import type { OuterView } from '@roamlink/core';
import { Encapsulation } from '@roamlink/core';
import type { BrowserPath, PathEvents, RelayEndpoint } from './transport.ts';

/** The largest message either side sends (the relay closes with 1009 beyond it). */
export const WS_MAX_PAYLOAD = 65_535;
/** `bufferedAmount` beyond which `send` drops. */
export const WS_MAX_BUFFERED_BYTES = 1 << 20;
export const WS_CLIENT_CLOSING = 4004;
export const WS_PROTOCOL_VIOLATION = 4002;

export interface WsStats {
  datagramsSent: number;
  datagramsReceived: number;
  bufferDrops: number;
}

export class WsPath implements BrowserPath {
  readonly id: string;
  readonly kind = 'ws' as const;
  readonly encapsulation = Encapsulation.WEBSOCKET;
  readonly stats: WsStats = { datagramsSent: 0, datagramsReceived: 0, bufferDrops: 0 };
  readonly #ws: WebSocket;
  readonly #relay: RelayEndpoint;
  readonly #ev: PathEvents;
  #done = false;

  constructor(ws: WebSocket, id: string, relay: RelayEndpoint, ev: PathEvents) {
    this.#ws = ws;
    this.id = id;
    this.#relay = relay;
    this.#ev = ev;
    ws.onmessage = (m: MessageEvent) => {
      if (this.#done) return;
      if (!(m.data instanceof ArrayBuffer)) {
        this.#fail(WS_PROTOCOL_VIOLATION, 'text not allowed');
        return;
      }
      this.stats.datagramsReceived++;
      // The buffer is this message's own: the core may decrypt in place.
      ev.onDatagram(new Uint8Array(m.data), id);
    };
    ws.onclose = (c: CloseEvent) => {
      if (this.#done) return;
      this.#done = true;
      ev.onClose(id, `ws-closed: ${c.code}${c.reason ? ` ${c.reason}` : ''}`);
    };
    ws.onerror = () => {};
  }

  /**
   * Opens a WebSocket to the relay; resolves with the path once the upgrade succeeded, rejects
   * when it failed (refused upgrade, no connection) or took longer than `timeoutMs`.
   */
  static open(
    relay: RelayEndpoint,
    id: string,
    ev: PathEvents,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<WsPath> {
    return new Promise<WsPath>((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(relay.wsUrl);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      ws.binaryType = 'arraybuffer';
      const settle = (e?: Error): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        ws.onopen = null;
        ws.onclose = null;
        ws.onerror = null;
        if (e === undefined) {
          resolve(new WsPath(ws, id, relay, ev));
          return;
        }
        try {
          ws.close(WS_CLIENT_CLOSING, 'giving up');
        } catch {
          // Already closed.
        }
        reject(e);
      };
      const onAbort = (): void => settle(new Error('ws-aborted'));
      const timer = setTimeout(() => settle(new Error('ws-timeout')), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      ws.onopen = () => settle();
      // A refused upgrade or a failed connection: 'error', then 'close' (code 1006).
      ws.onclose = (c: CloseEvent) => settle(new Error(`ws-closed: ${c.code}`));
      ws.onerror = () => settle(new Error('ws-error'));
    });
  }

  view(): OuterView {
    return {
      dstAddr: this.#relay.hostname,
      dstPort: this.#relay.port,
      url: this.#relay.wsUrl,
      host: this.#relay.host,
      headers: [],
    };
  }

  get congested(): boolean {
    return this.#ws.bufferedAmount > WS_MAX_BUFFERED_BYTES / 2;
  }

  send(datagram: Uint8Array): boolean {
    if (this.#done || this.#ws.readyState !== WebSocket.OPEN) return false;
    if (datagram.length > WS_MAX_PAYLOAD) return false;
    if (this.#ws.bufferedAmount + datagram.length > WS_MAX_BUFFERED_BYTES) {
      this.stats.bufferDrops++;
      return false;
    }
    this.#ws.send(datagram as Uint8Array<ArrayBuffer>);
    this.stats.datagramsSent++;
    return true;
  }

  close(): void {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#ws.close(WS_CLIENT_CLOSING, 'client closing');
    } catch {
      // Already closing.
    }
  }

  #fail(code: number, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    try {
      this.#ws.close(code, reason);
    } catch {
      // Already closing.
    }
    this.#ev.onClose(this.id, `ws-closed: ${code} ${reason}`);
  }
}
