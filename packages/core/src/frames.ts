/**
 * Inner frames: what an ESP packet with Next Header 253 carries (docs/PROTOCOL.md §6). Version 1
 * defines the diagnostic ECHO frames; registration, probes, streams and datagrams add types in
 * later revisions. Each frame starts with a one-byte type.
 *
 *   ECHO_REQUEST (1): u8 type | u64 id | u64 sent-at (sender's clock, ms, opaque to the peer) | data
 *   ECHO_REPLY   (2): the same fields, echoed unchanged
 */
import { readU64, writeU64 } from './bytes.ts';
import { ErrorCode, RoamlinkError } from './errors.ts';

export const FrameType = {
  ECHO_REQUEST: 1,
  ECHO_REPLY: 2,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const ECHO_HEADER = 17;

export interface EchoFrame {
  type: typeof FrameType.ECHO_REQUEST | typeof FrameType.ECHO_REPLY;
  id: number;
  sentAt: number;
  data: Uint8Array;
}

export function encodeEcho(f: EchoFrame): Uint8Array {
  const out = new Uint8Array(ECHO_HEADER + f.data.length);
  out[0] = f.type;
  writeU64(out, 1, f.id);
  writeU64(out, 9, Math.max(0, Math.floor(f.sentAt)));
  out.set(f.data, ECHO_HEADER);
  return out;
}

export function decodeEcho(b: Uint8Array): EchoFrame {
  const type = b[0];
  if (
    b.length < ECHO_HEADER ||
    (type !== FrameType.ECHO_REQUEST && type !== FrameType.ECHO_REPLY)
  ) {
    throw new RoamlinkError(ErrorCode.MALFORMED, 'not an echo frame');
  }
  return { type, id: readU64(b, 1), sentAt: readU64(b, 9), data: b.subarray(ECHO_HEADER) };
}

/** The reply to a request: the same bytes with the type changed (no copy of the data). */
export function echoReplyInPlace(request: Uint8Array): Uint8Array {
  request[0] = FrameType.ECHO_REPLY;
  return request;
}
