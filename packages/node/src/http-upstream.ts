/**
 * The HTTP client's up-stream: one chunked `POST <base>/up?s=<token>&m=stream` (RFC 9112 §7.1)
 * with `Roamlink-Stream: up`, whose body stays open and carries the path's datagrams as records
 * (one chunk per batch) for as long as the path lives.
 *
 * Why: a POST per batch costs a request head, the relay's request parsing, a 204 written and read,
 * and one batch per round trip. Where nothing on the way buffers request bodies, one open body
 * moves datagrams as a TCP encapsulation does. Whether it does is found, not configured: the body
 * begins with an empty record (the marker), and the relay answers 200 only once that record has
 * arrived; the owner waits for the 200 a bounded time, and keeps to POSTs if it does not come
 * (a proxy that buffers bodies, a relay that does not know the field, an error status).
 *
 * Sans framing state of its own beyond that: the owner batches; this writes each batch as one
 * chunk in one writev, and reads the answer's head with Http1ResponseReader.
 */
import type { Socket } from 'node:net';
import { EMPTY_RECORD } from '@roamlink/core';
import { dialUplink, type HttpUplinkOptions, requestHead } from './http-uplink.ts';
import { Http1ResponseReader } from './http1-response.ts';
import { writeRecordChunk } from './record-chunk.ts';

/** The request field that asks for an up-stream, and its value. */
export const UPSTREAM_FIELD: readonly [string, string] = ['Roamlink-Stream', 'up'];

export interface HttpUpstreamOptions extends HttpUplinkOptions {
  /** Origin-form path and query (`<base>/up?s=<token>&m=stream`). */
  path: string;
  /** The caller's fields (Content-Type, extra headers); framing and UPSTREAM_FIELD are added. */
  fields: readonly [string, string][];
  /** The relay answered 200: the body's bytes pass, unbuffered. Called once. */
  onOpen: () => void;
  /** Ended (not opened, or broken after): why. Called once, never after close(). */
  onClose: (reason: string) => void;
  /** The socket's buffer drained after `write` returned false. */
  onDrain?: () => void;
}

export class HttpUpstream {
  readonly #o: HttpUpstreamOptions;
  #socket: Socket | undefined;
  #open = false;
  #done = false;

  constructor(o: HttpUpstreamOptions) {
    this.#o = o;
    const head = requestHead(
      o,
      o.path,
      [...o.fields, [UPSTREAM_FIELD[0], UPSTREAM_FIELD[1]]],
      'Transfer-Encoding: chunked',
    );
    if (head instanceof Error) {
      queueMicrotask(() => this.#end(head.message));
      return;
    }
    const dialed = dialUplink(o);
    if (dialed instanceof Promise) {
      dialed.then(
        (s) => (this.#done ? s.destroy() : this.#attach(s, head)),
        (e: Error) => this.#end(`proxy: ${(e as NodeJS.ErrnoException).code ?? e.message}`),
      );
    } else {
      this.#attach(dialed, head);
    }
  }

  /** Whether the relay answered 200 and the body is open. */
  get open(): boolean {
    return this.#open && !this.#done;
  }

  /** The up-stream's connection (for the path's view), once there is one. */
  get socket(): Socket | undefined {
    return this.#socket;
  }

  /** Bytes written and not yet taken by the kernel. */
  get writableLength(): number {
    return this.#socket?.writableLength ?? 0;
  }

  /**
   * Writes `datagrams` as one chunk of records, in one writev. false: the socket's buffer is
   * over its high-water mark (`onDrain` follows) or the up-stream is not open.
   */
  write(datagrams: readonly Uint8Array[]): boolean {
    const s = this.#socket;
    if (!this.open || s === undefined || datagrams.length === 0) return false;
    return writeRecordChunk(s, datagrams);
  }

  /** Ends the up-stream quietly (nothing reported). */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    const s = this.#socket;
    if (s === undefined) return;
    s.removeAllListeners('data');
    s.on('error', () => {});
    s.destroy();
  }

  #attach(s: Socket, head: string): void {
    this.#socket = s;
    s.setNoDelay(true);
    const reader = new Http1ResponseReader({
      onHead: (h) => {
        if (this.#done || this.#open) return;
        if (h.status !== 200) {
          this.#end(`status ${h.status}`);
          return;
        }
        this.#open = true;
        this.#o.onOpen();
      },
    });
    s.on('data', (b: Buffer) => {
      try {
        // The answer's body stays empty until the request's ends; anything complete means the
        // relay (or something on the way) answered and is done with this request.
        if (reader.push(b).length > 0) this.#end('answered');
      } catch (e) {
        this.#end((e as Error).message);
      }
    });
    s.on('drain', () => {
      if (!this.#done) this.#o.onDrain?.();
    });
    s.on('end', () => this.#end('closed'));
    s.on('close', () => this.#end('closed'));
    s.on('error', (e: NodeJS.ErrnoException) => this.#end(e.code ?? e.message));
    // The head and the marker (an empty record) leave together: the relay answers once the
    // marker is in.
    s.cork();
    s.write(head, 'latin1');
    s.write(`${EMPTY_RECORD.length.toString(16)}\r\n`, 'latin1');
    s.write(EMPTY_RECORD);
    s.write('\r\n', 'latin1');
    s.uncork();
  }

  #end(reason: string): void {
    if (this.#done) return;
    this.close();
    this.#o.onClose(reason);
  }
}
