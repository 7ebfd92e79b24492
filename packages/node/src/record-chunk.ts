/**
 * Records (RFC 8229 §3 framing: tcp.ts) as one chunk of a chunked HTTP/1.1 body (RFC 9112 §7.1),
 * written to a socket in one system call: the relay's stream to a client and the client's
 * up-stream to the relay (RLHTTP/1). A lone small record (a request's reply, an ACK) is framed in
 * one buffer; anything else as pieces (`recordPieces`: a large datagram is written as it is, not
 * copied) gathered into one writev.
 */
import type { Socket } from 'node:net';
import { RECORD_COPY_BELOW_BYTES, RECORD_HEADER_BYTES, recordPieces } from '@roamlink/core';

const CRLF = Buffer.from('\r\n');

/** Writes `datagrams` (at least one) as one chunk; returns what `socket.write` returned. */
export function writeRecordChunk(socket: Socket, datagrams: readonly Uint8Array[]): boolean {
  const one = datagrams.length === 1 ? datagrams[0]! : undefined;
  if (one !== undefined && one.length < RECORD_COPY_BELOW_BYTES) {
    const len = one.length + RECORD_HEADER_BYTES;
    const line = `${len.toString(16)}\r\n`;
    const b = Buffer.allocUnsafe(line.length + len + 2);
    let o = b.write(line, 'latin1');
    b[o++] = len >>> 8;
    b[o++] = len & 255;
    b.set(one, o);
    o += one.length;
    b[o++] = 0x0d;
    b[o] = 0x0a;
    return socket.write(b);
  }
  let size = 0;
  for (const d of datagrams) size += d.length + RECORD_HEADER_BYTES;
  socket.cork();
  socket.write(`${size.toString(16)}\r\n`, 'latin1');
  for (const p of recordPieces(datagrams)) socket.write(p);
  const ok = socket.write(CRLF);
  socket.uncork();
  return ok;
}
