/**
 * The stream layer (docs/PROTOCOL.md §8): a sans-I/O multiplexer of reliable, ordered,
 * flow-controlled streams (the relay carries each to a TCP destination) and unreliable datagrams
 * (to UDP destinations) over one SA's inner frames.
 *
 * Reliability follows QUIC: the mux numbers its own packets (the numbers survive rekeys, which
 * restart ESP sequence numbers, and path changes), the receiver acknowledges ranges of them
 * (RFC 9000 §13.2), the sender detects loss by packet and time thresholds and probes on a timeout
 * (RFC 9002 §6), and NewReno limits what is in flight (RFC 9002 §7), paced (§7.7). Lost data is
 * sent again in new packets; nothing is "retransmitted" as a packet.
 *
 * Flow control follows RFC 9000 §4: per stream and per session, credit is a cumulative offset the
 * receiver raises as the application consumes data (`consumed()`), once half the window is used.
 * A reader that does not consume stops its peer; memory on both sides stays bounded by the windows,
 * the send-buffer limit and the stream limit.
 *
 * Only the client opens streams (the OPEN flag of a STREAM frame carries the target, so data
 * rides with the open and costs no round trip) and datagram flows. The relay answers a stream
 * with ACCEPT or REFUSE. Either side may RESET a stream (both directions end), send GOAWAY, and
 * send datagrams.
 *
 * The caller drives it like the sessions: `receive()` what arrives, send what `pollPacket()`
 * returns until it returns undefined, drain `pollEvent()`, and call `handleTimeout()` at
 * `nextTimeout()`.
 */
import { RangeSet } from './ack-ranges.ts';
import { initialWindow, Pacer } from './congestion.ts';
import { DEFAULT_MAX_DATAGRAM, MIN_MAX_DATAGRAM } from './constants.ts';
import { ErrorCode, RoamlinkError } from './errors.ts';
import type { RecoveryHooks, SentPacket } from './recovery.ts';
import { Recovery } from './recovery.ts';
import type { SendRange } from './stream.ts';
import { RecvBuffer, SendBuffer } from './stream.ts';
import type { MuxFrame, StreamFrame, StreamTarget } from './stream-frames.ts';
import {
  ackFrameLength,
  datagramFrameLength,
  decodeMuxPacket,
  encodeTarget,
  isMuxPayload,
  MuxFrameType,
  StreamError,
  simpleFrameLength,
  streamHeaderLength,
  varintLength,
  writeAckFrame,
  writeDatagramFrame,
  writeSimpleFrame,
  writeStreamHeader,
  writeVarint,
} from './stream-frames.ts';

// --- Protocol constants (both sides assume them; PROTOCOL.md §8.6) ------------------------------

/** Credit a new stream has in each direction before the receiver's first MAX_STREAM_DATA. */
export const MUX_INITIAL_STREAM_CREDIT = 64 * 1024;
/** Session credit in each direction before the receiver's first MAX_DATA. */
export const MUX_INITIAL_SESSION_CREDIT = 1024 * 1024;
/** Streams the client may open before the relay's first MAX_STREAMS. */
export const MUX_INITIAL_MAX_STREAMS = 100;
/**
 * Ack-eliciting packets after which an ACK goes at once (else at max_ack_delay). On UDP every
 * second one, as RFC 9000 §13.2.2 recommends, while the flow starts or after a gap, so that slow
 * start and loss recovery hear at once; after 100 in a row in order, every tenth ("ACK
 * decimation", as large QUIC deployments do): at 1400-byte packets an ACK per two packets was a
 * third of both ends' packets. A gap still brings an ACK at once. On a path over TCP nothing is
 * lost between the ends and ACKs only release buffers and credit: one per eight packets (up to
 * ~480 KB). Thresholds as in draft-ietf-quic-ack-frequency.
 */
const ACK_THRESHOLD_DATAGRAM = 2;
const ACK_THRESHOLD_DECIMATED = 10;
const ACK_DECIMATE_AFTER = 100;
const ACK_THRESHOLD_STREAM = 8;
/** The longest a receiver holds an ACK for an ack-eliciting packet (max_ack_delay). */
export const MUX_MAX_ACK_DELAY_MS = 25;
/**
 * Smallest and largest `maxPayload`. The largest is for stream paths whose two ends take datagrams
 * beyond 64 KiB (`streamPathPayload`): per-packet work (a cipher call, a socket write, a delivery
 * to the application, the bookkeeping) is paid per megabyte instead of per 60 KB.
 */
export const MUX_MIN_PAYLOAD = 1200;
/** The default per-session receive window (`sessionWindow`): 16 MiB. */
export const MUX_SESSION_WINDOW = 16 * 1024 * 1024;
export const MUX_MAX_PAYLOAD = 1 << 20;
/**
 * A packet above STREAM_PATH_PAYLOAD carries at most this long of the path's delivery rate: about
 * what a 60 000-byte packet is at 100 Mbit/s. Measured on loopback WebSocket (1 GiB, A/B): 2 ms
 * kept packets well under 1 MiB (~465 MB/s), 4 ms ~530, no limit ~545.
 */
const JUMBO_MS = 4;
/** The RTT the delivery rate estimate divides by at least (loopback RTTs are well under 1 ms). */
const MIN_RATE_RTT_MS = 0.25;
/**
 * Room left for ESP around a payload: at most 37 bytes (RFC 4303 §2: 8 header, 8 IV, 3 padding,
 * 2 trailer, 16 ICV; ESP_PAYLOAD_OFFSET + ESP_TAIL_RESERVE), rounded up.
 */
const ESP_MAX_OVERHEAD = 64;

// --- Implementation constants -------------------------------------------------------------------

/** A probe packet (on PTO) is at most this big: it must get through, not carry a lot. */
const PROBE_BYTES = 1200;
/** Bytes of a lost packet's data queued again for a probe. */
const PROBE_REQUEUE_BYTES = 1000;
/** Received packet-number ranges remembered (older ones are forgotten; their packets drop as old). */
const MAX_RECEIVED_RANGES = 256;
/** ACK ranges written per ACK frame. */
const ACK_RANGES_PER_FRAME = 32;
/** Datagrams queued for sending at most. */
const MAX_QUEUED_DATAGRAMS = 64;
/** Received datagrams waiting in the event queue at most (datagrams have no flow control). */
const MAX_UNREAD_DATAGRAMS = 1024;
/** Worst-case PACKET header: type + 8-byte packet number. */
const MAX_PACKET_HEADER = 9;
/** Do not start a frame with less room than this. */
const MIN_FRAME_ROOM = 24;

export interface MuxOptions {
  /** Only the client opens streams and datagram flows. */
  role: 'client' | 'relay';
  /** Per-stream receive window (bytes), default 1 MiB. Auto-grown up to `maxStreamWindow`. */
  streamWindow?: number;
  /** Largest per-stream receive window auto-tuning may reach, default max(streamWindow, 8 MiB) capped at the session window. */
  maxStreamWindow?: number;
  /** Per-session receive window, default 16 MiB. */
  sessionWindow?: number;
  /**
   * What all streams together may hold received and not yet consumed, default `sessionWindow`.
   * Above `sessionWindow`, the peer may send a session window beyond what has arrived (not only
   * beyond what was consumed), so that streams whose readers stopped, each held by its own
   * stream credit, do not hold back the others until they hold this much (PROTOCOL §8.6).
   */
  sessionMemory?: number;
  /**
   * Per-stream bytes (unacknowledged + unsent) that `write()` always accepts, default
   * `streamWindow`; more as the peer's credit grows, up to `maxStreamWindow` per stream and
   * `sessionWindow` for all streams together.
   */
  sendBufferLimit?: number;
  /** Inner payload bytes per packet, default 1200. */
  maxPayload?: number;
  /** How long without any acknowledgement before the event 'dead', default 120 000 ms. */
  outageMs?: number;
  /**
   * While streams are open, a PING goes when nothing ack-eliciting was sent for this long, so a
   * peer that forgets silent clients (the relay) keeps idle streams; 0 (default) never.
   */
  keepaliveMs?: number;
  /** Relay: streams the client may have open at once, default 256 (at least 100). */
  maxStreams?: number;
  /** Cap on the backed-off probe timeout, default 1000 ms. */
  maxPtoMs?: number;
  /** Pace packets (RFC 9002 §7.7), default true: a datagram path (see `setPacing`). */
  pacing?: boolean;
  /**
   * Scratch bytes to leave before and after each payload `pollPacket` returns (the payload is a
   * view into a larger buffer): room for the ESP header and trailer, so that the SA can seal the
   * packet where it was built (ESP_PAYLOAD_OFFSET and ESP_TAIL_RESERVE). Default none.
   */
  reserve?: { head: number; tail: number };
  /**
   * `write` may keep large buffers by reference instead of copying them: the caller promises
   * never to modify bytes it has written (true of Node's socket reads). Default false.
   */
  adoptWrites?: boolean;
  /**
   * Allocates the buffer of each data packet `pollPacket` builds. It may leave the bytes as they
   * were (Node's Buffer.allocUnsafeSlow, ~7 µs less per 60 000-byte packet than a zeroed one):
   * the mux writes every byte of the payload, and the SA every byte around it that is sent.
   * Default `new Uint8Array` (zeroed).
   */
  alloc?: (bytes: number) => Uint8Array;
  now: number;
}

export type MuxEvent =
  | { type: 'stream-open'; id: number; target: StreamTarget }
  | { type: 'stream-accepted'; id: number }
  | { type: 'stream-refused'; id: number; code: number }
  | { type: 'stream-data'; id: number; data: Uint8Array }
  | { type: 'stream-end'; id: number }
  | { type: 'stream-reset'; id: number; code: number }
  | { type: 'stream-writable'; id: number }
  | { type: 'stream-closed'; id: number }
  | { type: 'datagram'; flow: number; target: StreamTarget; data: Uint8Array }
  | { type: 'goaway'; code: number }
  | { type: 'dead'; silentMs: number }
  /** A path-MTU probe of this payload size was acknowledged: `maxPayload` is now that. */
  | { type: 'max-payload'; bytes: number };

/** Why a received payload was dropped (it changed nothing). */
export type MuxDropReason =
  | 'not_mux'
  | 'malformed'
  | 'duplicate'
  | 'ack_unsent'
  | 'stream_state'
  | 'stream_limit'
  | 'flow_control'
  | 'final_size'
  | 'reassembly_limit'
  | 'internal';

export type MuxDrops = Record<MuxDropReason, number>;

export interface MuxStats {
  packetsSent: number;
  packetsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Stream bytes sent for the first time. */
  streamBytesSent: number;
  /** Stream bytes sent again (after a loss or in a probe). */
  streamBytesRetransmitted: number;
  /** Stream bytes handed to the application. */
  streamBytesDelivered: number;
  packetsAcked: number;
  packetsLost: number;
  spuriousLosses: number;
  persistentCongestion: number;
  ptos: number;
  congestionReductions: number;
  pathChanges: number;
  datagramsSent: number;
  datagramsReceived: number;
  /** Datagrams dropped before they were sent (too big for a new path). */
  datagramsDropped: number;
  /** Received datagrams dropped because 1024 were waiting unread in the event queue. */
  datagramsUnreadDropped: number;
  streamsOpened: number;
  streamsClosed: number;
  streamsActive: number;
  rttMs: number;
  /** Whether `rttMs` comes from an acknowledgement yet (RFC 9002's initial 333 ms until then). */
  rttSampled: boolean;
  minRttMs: number;
  cwnd: number;
  bytesInFlight: number;
  /** Stream bytes written and not yet acknowledged by the peer (sent or not), all streams. */
  heldToSend: number;
  /**
   * Stream bytes received (up to each stream's highest offset, as flow control counts them) and
   * not yet consumed by the application, all streams.
   */
  heldReceived: number;
  drops: MuxDrops;
}

function newDrops(): MuxDrops {
  return {
    not_mux: 0,
    malformed: 0,
    duplicate: 0,
    ack_unsent: 0,
    stream_state: 0,
    stream_limit: 0,
    flow_control: 0,
    final_size: 0,
    reassembly_limit: 0,
    internal: 0,
  };
}

/** Kinds of things a packet carries. */
const K_STREAM = 0;
const K_ACCEPT = 1;
const K_REFUSE = 2;
const K_RESET = 3;
const K_MAX_STREAM_DATA = 4;
const K_MAX_DATA = 5;
const K_MAX_STREAMS = 6;
const K_GOAWAY = 7;
const K_PING = 8;
const K_DATAGRAM = 9;
/** Payload a datagram (UDP) path starts with: fits a 1400-byte packet under common MTUs. */
export const DATAGRAM_PATH_PAYLOAD = 1360;
/** Payload on a path over TCP: one record of RFC 8229 framing holds up to 65 533 bytes. */
export const STREAM_PATH_PAYLOAD = 60_000;

/**
 * The payload on a stream path (TCP, WebSocket, HTTP) whose ends take at most `ownMax` and
 * `peerMax` bytes per datagram (absent: DEFAULT_MAX_DATAGRAM, what every peer takes; see the
 * path parameter MAX_DATAGRAM, docs/PROTOCOL.md §6.4). Up to 64 KiB it is STREAM_PATH_PAYLOAD;
 * beyond, the datagram limit less ESP's overhead, up to MUX_MAX_PAYLOAD.
 */
export function streamPathPayload(ownMax?: number, peerMax?: number): number {
  const d = Math.min(ownMax ?? DEFAULT_MAX_DATAGRAM, peerMax ?? DEFAULT_MAX_DATAGRAM);
  if (!Number.isSafeInteger(d) || d < MIN_MAX_DATAGRAM) {
    throw new RoamlinkError(
      ErrorCode.INVALID_ARGUMENT,
      `max datagram: at least ${MIN_MAX_DATAGRAM}`,
    );
  }
  if (d <= DEFAULT_MAX_DATAGRAM) return Math.min(STREAM_PATH_PAYLOAD, d - ESP_MAX_OVERHEAD);
  return Math.min(MUX_MAX_PAYLOAD, d - ESP_MAX_OVERHEAD);
}
/** The largest payload a datagram path is probed for: an IPv4 UDP datagram's limit, less ESP. */
export const DATAGRAM_PATH_CEILING = 65_000;
/** A path-MTU probe: PING and PADDING to the size under test (`a`). */
const K_PMTU = 10;
/** Sizes a PMTU search tries, largest first (below the path's ceiling): RFC 8899 §5.3's search. */
const PMTU_STEPS = [65_000, 32_000, 16_000, 8952, 4000, 1452];

interface QueuedDatagram {
  flow: number;
  target: Uint8Array;
  data: Uint8Array;
}

/** One frame planned for (and then remembered with) a packet. */
class Item {
  k: number;
  s: MuxStreamState | undefined;
  /** STREAM: offset; RESET: final size; MAX_*: the value. */
  a = 0;
  /** STREAM: data length; REFUSE/RESET/GOAWAY: the code. */
  b = 0;
  fin = false;
  open = false;
  /** Encoded length of the frame. */
  size = 0;
  dg: QueuedDatagram | undefined;
  constructor(k: number, s: MuxStreamState | undefined) {
    this.k = k;
    this.s = s;
  }
}

/** Per-stream protocol state around the two buffers. */
class MuxStreamState {
  readonly id: number;
  target: StreamTarget | undefined;
  /** Client: the encoded target, for OPEN. */
  targetBytes: Uint8Array | undefined;
  /** The application knows the stream (client: always; relay: after 'stream-open'). */
  announced: boolean;
  accepted = false;
  readonly send = new SendBuffer();
  readonly recv = new RecvBuffer();
  /** Peer's credit for this stream (we may send below this offset). */
  sendMax = MUX_INITIAL_STREAM_CREDIT;
  /** Our advertised limit. */
  recvMax = MUX_INITIAL_STREAM_CREDIT;
  recvWindow: number;
  lastWindowUpdate: number | undefined;
  /** Client: OPEN must be sent (again). */
  openPending = false;
  openAcked = false;
  acceptPending = false;
  msdPending = false;
  /** RESET or REFUSE must be sent (again). */
  resetPending = false;
  /** We ended the stream abnormally (RESET or REFUSE). */
  local: { code: number; finalSize: number; refuse: boolean; acked: boolean } | undefined;
  peerResetSeen = false;
  /** The receive side is abandoned: data is counted and dropped. */
  discard = false;
  endEmitted = false;
  writeBlocked = false;
  queued = false;
  freed = false;
  readonly deliver: (v: Uint8Array) => void;

  constructor(id: number, window: number, deliver: (s: MuxStreamState, v: Uint8Array) => void) {
    this.id = id;
    this.recvWindow = window;
    this.announced = false;
    this.deliver = (v) => deliver(this, v);
  }
}

function checkCode(code: number): void {
  if (!Number.isSafeInteger(code) || code < 0) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'error code: an integer ≥ 0');
  }
}

export class Mux {
  readonly #role: 'client' | 'relay';
  readonly #streamWindow: number;
  readonly #maxStreamWindow: number;
  readonly #sessionWindow: number;
  readonly #sessionMemory: number;
  readonly #sendBufferLimit: number;
  readonly #outageMs: number;
  readonly #maxStreams: number;
  #pacing: boolean;
  readonly #adopt: boolean;
  /** The PMTU search in progress: sizes still to try (largest first), and whether one is due. */
  #pmtuSizes: number[] = [];
  #pmtuDue = false;
  readonly #head: number;
  readonly #alloc: (bytes: number) => Uint8Array;
  readonly #tail: number;
  #maxPayload: number;
  #now: number;

  readonly #rec: Recovery<Item[]>;
  readonly #pacer: Pacer;
  #pacerWake: number | undefined;
  readonly #hooks: RecoveryHooks<Item[]>;

  // Streams
  readonly #streams = new Map<number, MuxStreamState>();
  /** Client: the next id to open. Relay: the lowest id not yet seen. */
  #nextId = 0;
  /** Client: ids below this may be used (MAX_STREAMS). Relay: what we granted. */
  #streamLimit = MUX_INITIAL_MAX_STREAMS;
  #freedStreams = 0;
  #sendList: MuxStreamState[] = [];
  #rr = 0;
  readonly #ctrlStreams = new Set<MuxStreamState>();

  // Session flow control
  #peerMaxData = MUX_INITIAL_SESSION_CREDIT;
  #sessionSent = 0;
  #recvMaxData = MUX_INITIAL_SESSION_CREDIT;
  #sessionReceived = 0;
  #sessionConsumed = 0;
  #maxDataPending = false;
  #maxStreamsPending = false;
  #started = false;

  // GOAWAY
  #goAwaySent: number | undefined;
  #goAwayPending = false;
  #goAwayReceived = false;

  // Datagrams
  #dgrams: QueuedDatagram[] = [];

  // Packets
  #nextPn = 0;
  #probes = 0;
  readonly #received = new RangeSet();
  #receivedFloor = 0;
  #largestReceived = -1;
  #largestReceivedAt = 0;
  #ackPending = false;
  #ackImmediate = false;
  /** Ack-eliciting packets received before an ACK is owed at once (setPacing sets it). */
  #ackThreshold = ACK_THRESHOLD_DATAGRAM;
  readonly #keepaliveMs: number;
  /** When the last ack-eliciting packet went (keepalive). */
  #lastElicitingAt = 0;
  #keepaliveDue = false;
  /** Ack-eliciting packets received in order since the last gap or path change. */
  #inOrderRun = 0;
  #ackElicitingSince = 0;
  #ackDeadline: number | undefined;

  // Liveness
  #silenceStart: number | undefined;
  #deadEmitted = false;

  // Events
  #events: MuxEvent[] = [];
  #eventHead = 0;
  #unreadDatagrams = 0;

  readonly #counters = {
    packetsSent: 0,
    packetsReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    streamBytesSent: 0,
    streamBytesRetransmitted: 0,
    streamBytesDelivered: 0,
    pathChanges: 0,
    datagramsSent: 0,
    datagramsReceived: 0,
    datagramsDropped: 0,
    datagramsUnreadDropped: 0,
    streamsOpened: 0,
    streamsClosed: 0,
  };
  readonly #drops = newDrops();

  // Scratch
  readonly #plan: Item[] = [];
  #left = 0;
  readonly #range: SendRange = { offset: 0, length: 0, fin: false, retransmit: false };
  readonly #scratchHighest = new Map<number, number>();
  readonly #writableCheck = new Set<MuxStreamState>();

  constructor(o: MuxOptions) {
    this.#role = o.role;
    const num = (v: number | undefined, d: number, min: number, name: string): number => {
      const x = v ?? d;
      if (!Number.isSafeInteger(x) || x < min) {
        throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, `${name}: an integer ≥ ${min}`);
      }
      return x;
    };
    this.#sessionWindow = num(
      o.sessionWindow,
      MUX_SESSION_WINDOW,
      MUX_INITIAL_SESSION_CREDIT,
      'sessionWindow',
    );
    this.#sessionMemory = num(
      o.sessionMemory,
      this.#sessionWindow,
      this.#sessionWindow,
      'sessionMemory',
    );
    this.#streamWindow = num(
      o.streamWindow,
      1024 * 1024,
      MUX_INITIAL_STREAM_CREDIT,
      'streamWindow',
    );
    this.#maxStreamWindow = Math.min(
      num(
        o.maxStreamWindow,
        Math.max(this.#streamWindow, 8 * 1024 * 1024),
        this.#streamWindow,
        'maxStreamWindow',
      ),
      Math.max(this.#streamWindow, this.#sessionWindow),
    );
    this.#sendBufferLimit = num(o.sendBufferLimit, this.#streamWindow, 1, 'sendBufferLimit');
    this.#outageMs = num(o.outageMs, 120_000, 1, 'outageMs');
    this.#keepaliveMs = num(o.keepaliveMs, 0, 0, 'keepaliveMs');
    this.#lastElicitingAt = o.now;
    this.#maxStreams = Math.max(MUX_INITIAL_MAX_STREAMS, num(o.maxStreams, 256, 1, 'maxStreams'));
    this.#maxPayload = this.#checkPayload(o.maxPayload ?? MUX_MIN_PAYLOAD);
    this.#pacing = o.pacing ?? true;
    this.#ackThreshold = this.#pacing ? ACK_THRESHOLD_DATAGRAM : ACK_THRESHOLD_STREAM;
    this.#adopt = o.adoptWrites ?? false;
    this.#head = o.reserve?.head ?? 0;
    this.#tail = o.reserve?.tail ?? 0;
    this.#alloc = o.alloc ?? zeroed;
    this.#now = o.now;
    this.#rec = new Recovery<Item[]>({
      maxDatagramSize: this.#maxPayload,
      maxAckDelay: MUX_MAX_ACK_DELAY_MS,
      ...(o.maxPtoMs === undefined ? {} : { maxPtoMs: num(o.maxPtoMs, 1000, 1, 'maxPtoMs') }),
    });
    this.#pacer = new Pacer(initialWindow(this.#maxPayload));
    this.#hooks = {
      acked: (p, late) => this.#onPacketAcked(p, late),
      lost: (p) => this.#onPacketLost(p),
    };
  }

  #checkPayload(n: number): number {
    if (!Number.isSafeInteger(n) || n < MUX_MIN_PAYLOAD || n > MUX_MAX_PAYLOAD) {
      throw new RoamlinkError(
        ErrorCode.INVALID_ARGUMENT,
        `maxPayload: ${MUX_MIN_PAYLOAD}..${MUX_MAX_PAYLOAD}`,
      );
    }
    return n;
  }

  // === Transport side ==========================================================================

  /** Whether an inner payload belongs to the stream layer (first byte 0x20..0x2F). */
  isMuxFrame(payload: Uint8Array): boolean {
    return isMuxPayload(payload);
  }

  /** Takes one received payload. Never throws: anything wrong is counted and changes nothing. */
  receive(payload: Uint8Array, now: number): void {
    if (now > this.#now) this.#now = now;
    if (payload.length === 0 || payload[0] !== MuxFrameType.PACKET) {
      this.#drops.not_mux++;
      return;
    }
    let pn: number;
    let frames: MuxFrame[];
    try {
      ({ pn, frames } = decodeMuxPacket(payload));
    } catch {
      this.#drops.malformed++;
      return;
    }
    if (pn < this.#receivedFloor || this.#received.has(pn)) {
      this.#drops.duplicate++;
      // The peer may not have our ACK: make sure one goes.
      if (this.#received.count > 0) {
        this.#ackPending = true;
        this.#ackDeadline ??= this.#now + MUX_MAX_ACK_DELAY_MS;
      }
      return;
    }
    const reason = this.#validate(frames);
    if (reason !== undefined) {
      this.#drops[reason]++;
      return;
    }
    this.#counters.packetsReceived++;
    this.#counters.bytesReceived += payload.length;
    try {
      this.#onPacket(pn, frames);
    } catch {
      // A bug, not the peer's fault: count it rather than crash the receive path.
      this.#drops.internal++;
    }
  }

  /** Next payload to send now, or undefined when nothing may go (window, pacing, nothing due). */
  pollPacket(now: number): Uint8Array | undefined {
    if (now > this.#now) this.#now = now;
    now = this.#now;
    const rec = this.#rec;
    const pn = this.#nextPn;
    const header = 1 + varintLength(pn);
    const probe = this.#probes > 0;
    if (this.#pmtuDue && !probe) {
      const size = this.#pmtuSizes[0];
      if (size !== undefined) return this.#pmtuPacket(now, size);
    }

    // The ACK frame, if one is owed.
    let ackLen = 0;
    let delayUs = 0;
    if (this.#ackPending && this.#received.count > 0) {
      delayUs = Math.max(0, Math.round((now - this.#largestReceivedAt) * 1000));
      ackLen = ackFrameLength(this.#received, delayUs, ACK_RANGES_PER_FRAME);
    }
    const ackDue =
      ackLen > 0 &&
      (this.#ackImmediate ||
        this.#ackElicitingSince >=
          (this.#ackThreshold === ACK_THRESHOLD_DATAGRAM && this.#inOrderRun >= ACK_DECIMATE_AFTER
            ? ACK_THRESHOLD_DECIMATED
            : this.#ackThreshold) ||
        (this.#ackDeadline !== undefined && now >= this.#ackDeadline));

    // How much ack-eliciting content may go.
    let room = 0;
    if (probe) {
      room = Math.min(this.#maxPayload, PROBE_BYTES) - header - ackLen;
    } else if (this.#hasWork()) {
      const avail = rec.cc.available;
      if (avail >= Math.min(this.#maxPayload, MUX_MIN_PAYLOAD)) {
        const wait = this.#pacing
          ? this.#pacer.delay(now, Pacer.rate(rec.cc.cwnd, rec.rtt.smoothed, rec.cc.inSlowStart))
          : 0;
        rec.cc.pacingLimited = wait > 0;
        if (wait > 0) this.#pacerWake = now + wait;
        else room = Math.floor(Math.min(this.#packetCap(rec), avail)) - header - ackLen;
      }
    } else {
      rec.cc.pacingLimited = false; // application-limited
    }

    const plan = this.#plan;
    plan.length = 0;
    this.#left = room;
    if (room > 0) {
      this.#planControl();
      this.#planDatagrams();
      this.#planStreams();
    }
    let eliciting = plan.length > 0;
    // Nothing else to send: a PING for a probe (it must elicit an ACK) or a due keepalive.
    if (!eliciting && (probe || (this.#keepaliveDue && room > 0))) {
      const it = new Item(K_PING, undefined);
      it.size = 1;
      plan.push(it);
      eliciting = true;
    }
    if (!eliciting && !ackDue) return undefined;

    // Write the packet.
    let size = header + ackLen;
    for (const it of plan) size += it.size;
    const buf = this.#alloc(this.#head + size + this.#tail).subarray(this.#head, this.#head + size);
    buf[0] = MuxFrameType.PACKET;
    let o = writeVarint(buf, 1, pn);
    if (ackLen > 0) {
      o = writeAckFrame(buf, o, this.#received, delayUs, ACK_RANGES_PER_FRAME);
      this.#ackPending = false;
      this.#ackImmediate = false;
      this.#ackElicitingSince = 0;
      this.#ackDeadline = undefined;
    }
    let items: Item[] = EMPTY_ITEMS;
    for (const it of plan) {
      o = this.#writeItem(buf, o, it);
      if (it.k !== K_PING && it.k !== K_DATAGRAM) {
        if (items === EMPTY_ITEMS) items = [];
        items.push(it);
      }
    }
    plan.length = 0;
    // Every byte is written (sizes are exact); were one not, it must not carry old memory.
    if (o !== size) buf.fill(0, o);
    this.#nextPn++;
    const sent: SentPacket<Item[]> = {
      pn,
      timeSent: now,
      size,
      ackEliciting: eliciting,
      inFlight: eliciting,
      state: 0,
      lostBy: 0,
      items,
    };
    rec.onPacketSent(sent);
    if (eliciting) {
      this.#lastElicitingAt = now;
      this.#keepaliveDue = false;
      if (probe) this.#probes--;
      else if (this.#pacing) this.#pacer.onSent(size);
      this.#silenceStart ??= now;
    }
    this.#counters.packetsSent++;
    this.#counters.bytesSent += size;
    return buf;
  }

  /**
   * Whether `pollPacket` has anything to send, were the window, the pacer and the host to let it:
   * content waiting (stream data, control frames, datagrams, a due keepalive), a probe, a path-MTU
   * probe or an owed ACK. A host that cannot send now (no keys yet, a full transport) needs to
   * look again only then; an idle session with nothing to say needs no timer at all.
   */
  get hasPending(): boolean {
    return (
      this.#pmtuDue ||
      this.#probes > 0 ||
      (this.#ackPending && this.#received.count > 0) ||
      this.#hasWork()
    );
  }

  /** When `handleTimeout` should run next (absolute time), or undefined. */
  nextTimeout(): number | undefined {
    let t = this.#rec.deadline();
    const consider = (x: number | undefined): void => {
      if (x !== undefined && (t === undefined || x < t)) t = x;
    };
    if (this.#ackPending) consider(this.#ackDeadline);
    consider(this.#pacerWake);
    if (this.#silenceStart !== undefined && !this.#deadEmitted) {
      consider(this.#silenceStart + this.#outageMs);
    }
    if (!this.#keepaliveDue) consider(this.#keepaliveAt());
    return t;
  }

  handleTimeout(now: number): void {
    if (now > this.#now) this.#now = now;
    now = this.#now;
    if (this.#ackDeadline !== undefined && now >= this.#ackDeadline) this.#ackImmediate = true;
    if (this.#pacerWake !== undefined && now >= this.#pacerWake) this.#pacerWake = undefined;
    const r = this.#rec.onTimeout(now, this.#hooks);
    if (r === 'pto') {
      // RFC 9002 §6.2.4: one or two probes; two on the first timeout, one per backoff after.
      this.#probes = this.#rec.ptoCount === 1 ? 2 : 1;
      const p = this.#rec.oldestOutstanding();
      if (p) this.#requeue(p.items, PROBE_REQUEUE_BYTES);
    }
    if (r !== undefined) this.#afterAcksOrLosses();
    const keepaliveAt = this.#keepaliveAt();
    if (keepaliveAt !== undefined && now >= keepaliveAt) this.#keepaliveDue = true;
    if (
      this.#silenceStart !== undefined &&
      !this.#deadEmitted &&
      now - this.#silenceStart >= this.#outageMs
    ) {
      this.#deadEmitted = true;
      this.#emit({ type: 'dead', silentMs: now - this.#silenceStart });
    }
  }

  /** The path's payload size changed (~1350 on UDP, 60 000 or up to 1 MiB on stream transports). */
  setMaxPayload(bytes: number): void {
    this.#maxPayload = this.#checkPayload(bytes);
    this.#rec.cc.setMaxDatagramSize(bytes);
    this.#pacer.setCapacity(initialWindow(bytes));
  }

  /**
   * The session is on a new path (or its first): fits the stream layer to its kind. Over UDP
   * (`datagram`) packets start at DATAGRAM_PATH_PAYLOAD, are paced, and the path's MTU is searched
   * up to `datagramCeiling` (RFC 8899); over TCP, WebSocket or HTTP they carry
   * `streamPayload` bytes (default STREAM_PATH_PAYLOAD; see `streamPathPayload`), unpaced (the
   * kernel's TCP paces those). `changed`: not the first path, so what was in flight goes again at
   * once (`pathChanged`, RFC 9000 §9.4).
   */
  usePath(o: {
    datagram: boolean;
    changed: boolean;
    now: number;
    datagramCeiling?: number;
    streamPayload?: number;
  }): void {
    this.setMaxPayload(
      o.datagram ? DATAGRAM_PATH_PAYLOAD : (o.streamPayload ?? STREAM_PATH_PAYLOAD),
    );
    if (o.changed) this.pathChanged(o.now, 'path-changed');
    this.setPacing(o.datagram);
    if (o.datagram) this.probeMaxPayload(o.datagramCeiling ?? DATAGRAM_PATH_CEILING);
  }

  /**
   * Nothing sent is waiting for an acknowledgement: the path is idle, so what is written now is
   * likely a lone request that should leave at once rather than wait to fill a packet.
   */
  get idle(): boolean {
    return this.#rec.cc.bytesInFlight === 0;
  }

  /** The largest packet payload on the current path (`setMaxPayload`, `usePath`, PMTU search). */
  get maxPayload(): number {
    return this.#maxPayload;
  }

  /** Whether packets are paced: on datagram paths, off on paths over TCP (`usePath`). */
  get pacing(): boolean {
    return this.#pacing;
  }

  /**
   * The peer's stream limit (MAX_STREAMS, PROTOCOL §8.7): stream ids below it may be used. A
   * client's streams at or above it wait, open on this side and unknown to the relay.
   */
  get streamLimit(): number {
    return this.#streamLimit;
  }

  /** Client: open streams that wait for the relay's MAX_STREAMS (ids at or above the limit). */
  get streamsWaiting(): number {
    if (this.#role !== 'client') return 0;
    let n = 0;
    for (let id = this.#streamLimit; id < this.#nextId; id++) if (this.#streams.has(id)) n++;
    return n;
  }

  /**
   * Pacing on or off (RFC 9002 §7.7). A path over TCP (TCP, WebSocket, HTTP) is paced by the
   * kernel's own congestion control already; pacing it again only adds timer wake-ups.
   */
  setPacing(on: boolean): void {
    this.#pacing = on;
    this.#ackThreshold = on ? ACK_THRESHOLD_DATAGRAM : ACK_THRESHOLD_STREAM;
    this.#inOrderRun = 0;
    this.#pacerWake = undefined;
  }

  /**
   * Datagram paths (RFC 8899, DPLPMTUD): looks for the largest payload up to `ceiling` that
   * reaches the peer, by sending probe packets (PING + PADDING) of decreasing size. A probe is
   * ack-eliciting but not in flight, so its loss is no congestion signal (§4.3); the first probe
   * acknowledged sets `maxPayload` and ends the search ('max-payload' event). Each direction
   * probes for itself. A path change cancels the search; probe the new path after it.
   */
  probeMaxPayload(ceiling: number): void {
    const top = Math.min(ceiling, 65_535);
    this.#pmtuSizes = PMTU_STEPS.filter((n) => n <= top && n > this.#maxPayload);
    if (top > this.#maxPayload && !this.#pmtuSizes.includes(top) && top < PMTU_STEPS[0]!) {
      this.#pmtuSizes.unshift(top);
    }
    this.#pmtuDue = this.#pmtuSizes.length > 0;
  }

  #pmtuPacket(now: number, size: number): Uint8Array {
    const pn = this.#nextPn++;
    const header = 1 + varintLength(pn);
    // PING, then PADDING whose varint length field is part of the size.
    let pad = size - header - 2;
    while (pad > 0 && header + 2 + varintLength(pad) + pad > size) pad--;
    const total = header + 2 + varintLength(pad) + pad;
    const buf =
      this.#head + this.#tail === 0
        ? new Uint8Array(total)
        : new Uint8Array(this.#head + total + this.#tail).subarray(this.#head, this.#head + total);
    buf[0] = MuxFrameType.PACKET;
    let o = writeVarint(buf, 1, pn);
    buf[o++] = MuxFrameType.PING;
    buf[o++] = MuxFrameType.PADDING;
    writeVarint(buf, o, pad);
    const it = new Item(K_PMTU, undefined);
    it.a = size;
    this.#pmtuDue = false;
    this.#rec.onPacketSent({
      pn,
      timeSent: now,
      size: total,
      ackEliciting: true,
      inFlight: false,
      state: 0,
      lostBy: 0,
      items: [it],
    });
    this.#counters.packetsSent++;
    this.#counters.bytesSent += total;
    return buf;
  }

  /**
   * RFC 9000 §9.4: the path changed. The congestion controller, RTT estimate and PTO backoff start
   * over, and everything in flight is declared lost, so its data goes again at once on the new
   * path. An ACK goes with the first packet. Set the new path's `maxPayload` first.
   */
  pathChanged(now: number, _reason: string): void {
    if (now > this.#now) this.#now = now;
    this.#rec.pathChanged(this.#hooks);
    this.#pmtuSizes = [];
    this.#pmtuDue = false;
    this.#pacer.reset();
    this.#pacerWake = undefined;
    this.#probes = 0;
    if (this.#received.count > 0) {
      this.#ackPending = true;
      this.#ackImmediate = true;
    }
    this.#inOrderRun = 0;
    this.#counters.pathChanges++;
    this.#afterAcksOrLosses();
  }

  // === Application side ========================================================================

  /** Client: opens a stream to `target`; data may be written at once. Returns its id. */
  openStream(target: StreamTarget): number {
    if (this.#role !== 'client') {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'only the client opens streams');
    }
    const tb = encodeTarget(target);
    const id = this.#nextId++;
    this.#counters.streamsOpened++;
    if (this.#goAwayReceived) {
      // The relay is going away: refuse here, without a round trip.
      this.#emit({ type: 'stream-refused', id, code: StreamError.SHUTDOWN });
      this.#emit({ type: 'stream-closed', id });
      this.#counters.streamsClosed++;
      return id;
    }
    const s = this.#newStream(id);
    s.announced = true;
    s.target = { host: target.host, port: target.port };
    s.targetBytes = tb;
    s.openPending = true;
    this.#started = true;
    this.#enqueue(s);
    this.#maybeStreamWindow(s);
    this.#maybeMaxData();
    return id;
  }

  /**
   * Queues data on a stream; returns how many bytes were taken (bounded by `sendBufferLimit` and
   * the peer's credit). When fewer than offered, 'stream-writable' follows once more fit.
   * Unknown, reset or ended streams take nothing. On the relay, writing accepts the stream.
   */
  write(id: number, data: Uint8Array): number {
    const s = this.#streams.get(id);
    if (!s || s.local || s.send.finWritten || s.peerResetSeen) return 0;
    if (!s.accepted && this.#role === 'relay') {
      if (!s.announced) return 0;
      this.accept(id);
    }
    const n = s.send.write(data, this.#sendSpace(s), this.#adopt);
    if (n < data.length) s.writeBlocked = true;
    if (n > 0) this.#enqueue(s);
    return n;
  }

  /** Ends the sending direction: a FIN follows what was written. */
  end(id: number): void {
    const s = this.#streams.get(id);
    if (!s || s.local || s.send.finWritten || s.peerResetSeen) return;
    if (!s.accepted && this.#role === 'relay') {
      if (!s.announced) return;
      this.accept(id);
    }
    s.send.end();
    this.#enqueue(s);
  }

  /**
   * Aborts a stream in both directions with `code` (StreamError or another value): unsent data is
   * dropped, received data no longer delivered. On the relay, before accept, this refuses it.
   */
  reset(id: number, code: number): void {
    checkCode(code);
    const s = this.#streams.get(id);
    if (!s || s.local) return;
    if (this.#role === 'relay' && !s.accepted) {
      this.#refuseStream(s, code);
      return;
    }
    this.#resetStream(s, code);
  }

  /** The application took `bytes` of delivered data away: frees window credit. */
  consumed(id: number, bytes: number): void {
    const s = this.#streams.get(id);
    if (!s || s.discard || !(bytes > 0)) return;
    const n = Math.min(Math.floor(bytes), s.recv.delivered - s.recv.consumed);
    if (n <= 0) return;
    s.recv.consumed += n;
    this.#sessionConsumed += n;
    this.#maybeStreamWindow(s);
    this.#maybeMaxData();
    this.#maybeFree(s);
  }

  /** Relay: accepts a stream announced by 'stream-open'. */
  accept(id: number): void {
    if (this.#role !== 'relay') {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'only the relay accepts streams');
    }
    const s = this.#streams.get(id);
    if (!s?.announced || s.accepted || s.local || s.peerResetSeen) return;
    s.accepted = true;
    s.acceptPending = true;
    this.#ctrlStreams.add(s);
  }

  /** Relay: refuses a stream announced by 'stream-open' (after accept: resets it). */
  refuse(id: number, code: number): void {
    if (this.#role !== 'relay') {
      throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'only the relay refuses streams');
    }
    this.reset(id, code);
  }

  /**
   * Sends one unreliable datagram on association `flow` to (client) or from (relay) `target`.
   * False if it cannot go: too big for the current payload size, a bad target, or the queue is
   * full (congestion).
   */
  sendDatagram(flow: number, target: StreamTarget, data: Uint8Array): boolean {
    if (!Number.isSafeInteger(flow) || flow < 0) return false;
    let tb: Uint8Array;
    try {
      tb = encodeTarget(target);
    } catch {
      return false;
    }
    if (datagramFrameLength(tb, flow, data.length) > this.#maxPayload - MAX_PACKET_HEADER) {
      return false;
    }
    if (this.#dgrams.length >= MAX_QUEUED_DATAGRAMS) return false;
    this.#dgrams.push({ flow, target: tb, data: data.slice() });
    this.#started = true;
    return true;
  }

  /** Tells the peer this side is shutting down. The relay then refuses new streams (SHUTDOWN). */
  goAway(code: number): void {
    checkCode(code);
    if (this.#goAwaySent !== undefined) return;
    this.#goAwaySent = code;
    this.#goAwayPending = true;
  }

  pollEvent(): MuxEvent | undefined {
    if (this.#eventHead >= this.#events.length) return undefined;
    const e = this.#events[this.#eventHead++];
    if (e?.type === 'datagram') this.#unreadDatagrams--;
    if (this.#eventHead === this.#events.length) {
      this.#events.length = 0;
      this.#eventHead = 0;
    } else if (this.#eventHead > 1024 && this.#eventHead * 2 > this.#events.length) {
      this.#events = this.#events.slice(this.#eventHead);
      this.#eventHead = 0;
    }
    return e;
  }

  get stats(): MuxStats {
    const rec = this.#rec;
    let heldToSend = 0;
    for (const st of this.#streams.values()) heldToSend += st.send.buffered;
    return {
      ...this.#counters,
      packetsAcked: rec.stats.packetsAcked,
      packetsLost: rec.stats.packetsLost,
      spuriousLosses: rec.stats.spuriousLosses,
      persistentCongestion: rec.stats.persistentCongestion,
      ptos: rec.stats.ptos,
      congestionReductions: rec.cc.reductions,
      streamsActive: this.#streams.size,
      rttMs: rec.rtt.smoothed,
      rttSampled: rec.rtt.hasSample,
      minRttMs: rec.rtt.min,
      cwnd: Math.floor(rec.cc.cwnd),
      bytesInFlight: rec.cc.bytesInFlight,
      heldToSend,
      heldReceived: this.#sessionReceived - this.#sessionConsumed,
      drops: { ...this.#drops },
    };
  }

  /** Diagnostics for one stream (undefined once freed). */
  streamInfo(id: number):
    | {
        buffered: number;
        sent: number;
        acked: number;
        peerCredit: number;
        received: number;
        delivered: number;
        consumed: number;
        heldOutOfOrder: number;
        window: number;
      }
    | undefined {
    const s = this.#streams.get(id);
    if (!s) return undefined;
    return {
      buffered: s.send.buffered,
      sent: s.send.sentHigh,
      acked: s.send.ackedUpTo,
      peerCredit: s.sendMax,
      received: s.recv.highest,
      delivered: s.recv.delivered,
      consumed: s.recv.consumed,
      heldOutOfOrder: s.recv.bufferedBytes,
      window: s.recvWindow,
    };
  }

  // === Receiving ===============================================================================

  #isClosedId(id: number): boolean {
    return id < this.#nextId && !this.#streams.has(id);
  }

  /** Checks every frame against the current state without changing it; returns a drop reason. */
  #validate(frames: MuxFrame[]): MuxDropReason | undefined {
    const client = this.#role === 'client';
    const highest = this.#scratchHighest;
    highest.clear();
    let growth = 0;
    // A stream id the peer may use: undefined if fine, else the reason.
    const idCheck = (id: number): MuxDropReason | undefined => {
      if (client) return id >= this.#nextId ? 'stream_state' : undefined;
      return id >= this.#streamLimit ? 'stream_limit' : undefined;
    };
    for (const f of frames) {
      switch (f.type) {
        case 'ack':
          if (f.largest >= this.#nextPn) return 'ack_unsent';
          break;
        case 'stream': {
          if (client && f.target !== undefined) return 'stream_state';
          const bad = idCheck(f.id);
          if (bad) return bad;
          if (this.#isClosedId(f.id)) break;
          const s = this.#streams.get(f.id);
          const h = highest.get(f.id) ?? s?.recv.highest ?? 0;
          const end = f.offset + f.data.length;
          if (s) {
            const r = s.recv.check(f.offset, f.data.length, f.fin, s.recvMax, h);
            if (r) return r;
          } else if (end > MUX_INITIAL_STREAM_CREDIT) return 'flow_control';
          if (end > h) {
            growth += end - h;
            highest.set(f.id, end);
          }
          break;
        }
        case 'reset': {
          const bad = idCheck(f.id);
          if (bad) return bad;
          if (this.#isClosedId(f.id)) break;
          const s = this.#streams.get(f.id);
          const h = highest.get(f.id) ?? s?.recv.highest ?? 0;
          const known = s?.recv.finalSize;
          if (f.finalSize < h || (known !== undefined && known !== f.finalSize)) {
            return 'final_size';
          }
          if (f.finalSize > (s ? s.recvMax : MUX_INITIAL_STREAM_CREDIT)) return 'flow_control';
          if (f.finalSize > h) {
            growth += f.finalSize - h;
            highest.set(f.id, f.finalSize);
          }
          break;
        }
        case 'refuse': {
          if (!client) return 'stream_state';
          const bad = idCheck(f.id);
          if (bad) return bad;
          const s = this.#streams.get(f.id);
          if (s && (s.accepted || s.recv.highest > 0 || (highest.get(f.id) ?? 0) > 0)) {
            return 'stream_state';
          }
          break;
        }
        case 'accept': {
          if (!client) return 'stream_state';
          const bad = idCheck(f.id);
          if (bad) return bad;
          break;
        }
        case 'max-stream-data': {
          const bad = idCheck(f.id);
          if (bad) return bad;
          break;
        }
        case 'max-streams':
          if (!client) return 'stream_state';
          break;
        default:
          break;
      }
    }
    if (this.#sessionReceived + growth > this.#recvMaxData) return 'flow_control';
    return undefined;
  }

  #onPacket(pn: number, frames: MuxFrame[]): void {
    const now = this.#now;
    this.#started = true;
    // Acknowledgement bookkeeping (RFC 9000 §13.2).
    let eliciting = false;
    for (const f of frames) {
      if (f.type !== 'ack') {
        eliciting = true;
        break;
      }
    }
    const inOrder = pn === this.#largestReceived + 1;
    this.#received.add(pn, pn + 1);
    if (pn > this.#largestReceived) {
      this.#largestReceived = pn;
      this.#largestReceivedAt = now;
    }
    while (this.#received.count > MAX_RECEIVED_RANGES) {
      this.#received.shift();
      this.#receivedFloor = this.#received.min!;
    }
    this.#ackPending = true;
    if (eliciting) {
      this.#ackElicitingSince++;
      // Out of order (a gap appeared or is being filled): acknowledge at once.
      if (!inOrder) {
        this.#ackImmediate = true;
        this.#inOrderRun = 0;
      } else this.#inOrderRun++;
      this.#ackDeadline ??= now + MUX_MAX_ACK_DELAY_MS;
    }

    let acked = false;
    for (const f of frames) {
      switch (f.type) {
        case 'ack': {
          const n = this.#rec.onAck(f.ranges, f.delayUs / 1000, now, this.#hooks);
          if (n > 0) acked = true;
          break;
        }
        case 'stream':
          this.#onStreamFrame(f);
          break;
        case 'reset':
          this.#onReset(f.id, f.code, f.finalSize);
          break;
        case 'refuse':
          this.#onRefuse(f.id, f.code);
          break;
        case 'accept': {
          const s = this.#streams.get(f.id);
          if (s && !s.accepted && !s.local && !s.peerResetSeen) {
            s.accepted = true;
            this.#emit({ type: 'stream-accepted', id: s.id });
          }
          break;
        }
        case 'max-stream-data': {
          const s = this.#streamFor(f.id);
          if (s && f.max > s.sendMax) {
            s.sendMax = f.max;
            this.#enqueue(s);
            this.#writableCheck.add(s);
          }
          break;
        }
        case 'max-data':
          if (f.max > this.#peerMaxData) {
            this.#peerMaxData = f.max;
            for (const s of this.#streams.values()) if (s.send.unsent > 0) this.#enqueue(s);
          }
          break;
        case 'max-streams':
          if (f.count > this.#streamLimit) {
            const old = this.#streamLimit;
            this.#streamLimit = f.count;
            for (const s of this.#streams.values()) {
              if (s.id >= old && s.id < f.count) {
                this.#enqueue(s);
                this.#ctrlStreams.add(s);
              }
            }
          }
          break;
        case 'datagram':
          this.#counters.datagramsReceived++;
          if (this.#unreadDatagrams >= MAX_UNREAD_DATAGRAMS) {
            this.#counters.datagramsUnreadDropped++;
          } else {
            this.#unreadDatagrams++;
            this.#emit({ type: 'datagram', flow: f.flow, target: f.target, data: f.data });
          }
          break;
        case 'goaway':
          if (!this.#goAwayReceived) {
            this.#goAwayReceived = true;
            this.#emit({ type: 'goaway', code: f.code });
          }
          break;
        case 'ping':
        case 'padding':
          break;
      }
    }
    if (acked) {
      this.#deadEmitted = false;
      this.#silenceStart = this.#rec.ackElicitingInFlight > 0 ? now : undefined;
    }
    this.#afterAcksOrLosses();
    this.#maybeMaxData();
    this.#maybeMaxStreams();
  }

  /** The stream `id` names, created implicitly on the relay (RFC 9000 §3.2); undefined if closed. */
  #streamFor(id: number): MuxStreamState | undefined {
    const s = this.#streams.get(id);
    if (s || this.#role === 'client' || id < this.#nextId) return s;
    let created: MuxStreamState | undefined;
    for (let i = this.#nextId; i <= id; i++) {
      created = this.#newStream(i);
      this.#maybeStreamWindow(created);
    }
    this.#nextId = id + 1;
    return created;
  }

  #newStream(id: number): MuxStreamState {
    const s = new MuxStreamState(id, this.#streamWindow, (st, v) => {
      this.#counters.streamBytesDelivered += v.length;
      this.#emit({ type: 'stream-data', id: st.id, data: v });
    });
    this.#streams.set(id, s);
    return s;
  }

  #onStreamFrame(f: StreamFrame): void {
    const s = this.#streamFor(f.id);
    if (!s) return;
    if (this.#role === 'client') {
      // The relay sends on a stream only after accepting it.
      if (!s.accepted && !s.local && !s.peerResetSeen) {
        s.accepted = true;
        this.#emit({ type: 'stream-accepted', id: s.id });
      }
    } else if (f.target !== undefined && s.target === undefined) {
      s.target = f.target;
      if (!s.discard && !s.local) {
        if (this.#goAwaySent !== undefined) {
          this.#refuseStream(s, StreamError.SHUTDOWN);
        } else {
          s.announced = true;
          this.#counters.streamsOpened++;
          this.#emit({ type: 'stream-open', id: s.id, target: s.target });
          // Data that arrived before the open is handed up now, in order.
          s.recv.drain(s.deliver);
        }
      }
    }
    if (s.discard) {
      this.#sessionReceived += s.recv.note(f.offset + f.data.length, f.fin);
      this.#releaseDiscarded(s);
    } else {
      const deliver = s.announced ? s.deliver : undefined;
      this.#sessionReceived += s.recv.insert(f.offset, f.data, f.fin, deliver);
      if (s.announced && s.recv.complete && !s.endEmitted) {
        s.endEmitted = true;
        this.#emit({ type: 'stream-end', id: s.id });
      }
    }
    this.#maybeFree(s);
  }

  #onReset(id: number, code: number, finalSize: number): void {
    const s = this.#streamFor(id);
    if (!s) return;
    this.#sessionReceived += s.recv.note(finalSize, true);
    if (!s.discard) this.#discardRecv(s);
    else this.#releaseDiscarded(s);
    if (!s.peerResetSeen) {
      s.peerResetSeen = true;
      if (!s.local && s.announced) this.#emit({ type: 'stream-reset', id: s.id, code });
    }
    if (!s.local && !s.send.allAcked) this.#setLocal(s, code, false);
    this.#maybeFree(s);
  }

  #onRefuse(id: number, code: number): void {
    const s = this.#streams.get(id);
    if (!s) return;
    this.#sessionReceived += s.recv.note(0, true);
    if (!s.discard) this.#discardRecv(s);
    if (!s.peerResetSeen) {
      s.peerResetSeen = true;
      if (!s.local) this.#emit({ type: 'stream-refused', id: s.id, code });
    }
    if (!s.local) this.#setLocal(s, code, false);
    this.#maybeFree(s);
  }

  // === Stream state ============================================================================

  /** Abandons the receive side: held data dropped, its credit (and future data's) released. */
  #discardRecv(s: MuxStreamState): void {
    s.discard = true;
    s.recv.discard();
    this.#releaseDiscarded(s);
  }

  #releaseDiscarded(s: MuxStreamState): void {
    const n = s.recv.highest - s.recv.consumed;
    if (n > 0) {
      s.recv.consumed = s.recv.highest;
      s.recv.delivered = Math.max(s.recv.delivered, s.recv.highest);
      this.#sessionConsumed += n;
      this.#maybeMaxData();
    }
  }

  /** We end the stream abnormally: RESET (or REFUSE) goes to the peer until acknowledged. */
  #setLocal(s: MuxStreamState, code: number, refuse: boolean): void {
    s.local = { code, finalSize: refuse ? 0 : s.send.sentHigh, refuse, acked: false };
    s.send.discard();
    s.resetPending = true;
    s.acceptPending = false;
    s.openPending = false;
    this.#ctrlStreams.add(s);
  }

  #resetStream(s: MuxStreamState, code: number): void {
    if (!s.discard) this.#discardRecv(s);
    if (s.send.allAcked && s.recv.finalSize !== undefined) {
      // Both directions are over: nothing to tell the peer.
      s.local = { code, finalSize: s.send.writeOffset, refuse: false, acked: true };
    } else {
      this.#setLocal(s, code, false);
    }
    this.#maybeFree(s);
  }

  #refuseStream(s: MuxStreamState, code: number): void {
    if (!s.discard) this.#discardRecv(s);
    this.#setLocal(s, code, true);
    this.#maybeFree(s);
  }

  /** Frees a stream whose both directions are finished (RFC 9000 §3: "closed"). */
  #maybeFree(s: MuxStreamState): void {
    if (s.freed) return;
    const sendDone = s.local ? s.local.acked : s.send.allAcked;
    if (!sendDone) return;
    const recvDone = s.discard
      ? s.recv.finalSize !== undefined
      : s.endEmitted && s.recv.consumed === s.recv.finalSize;
    if (!recvDone) return;
    s.freed = true;
    this.#streams.delete(s.id);
    this.#ctrlStreams.delete(s);
    s.recv.discard();
    s.send.discard();
    if (this.#role === 'relay') {
      this.#freedStreams++;
      this.#maybeMaxStreams();
    }
    if (s.announced) {
      this.#counters.streamsClosed++;
      this.#emit({ type: 'stream-closed', id: s.id });
    }
  }

  /** Window update when half the stream window is used (plus auto-tuning). */
  #maybeStreamWindow(s: MuxStreamState): void {
    if (s.discard || s.freed || s.recv.finalSize !== undefined) return;
    if (s.recvMax - s.recv.consumed > s.recvWindow / 2) return;
    const now = this.#now;
    const rtt = this.#rec.rtt;
    if (
      s.lastWindowUpdate !== undefined &&
      rtt.hasSample &&
      now - s.lastWindowUpdate < 2 * rtt.smoothed &&
      s.recvWindow < this.#maxStreamWindow
    ) {
      s.recvWindow = Math.min(2 * s.recvWindow, this.#maxStreamWindow);
    }
    s.recvMax = s.recv.consumed + s.recvWindow;
    s.lastWindowUpdate = now;
    s.msdPending = true;
    this.#ctrlStreams.add(s);
  }

  /**
   * Session credit (MAX_DATA, PROTOCOL §8.6): a session window beyond what has arrived, as long
   * as what sits unconsumed stays within `sessionMemory`; raised once it would grow by half a
   * window. A stream whose reader stopped is held by its own credit, so the rest of the session
   * goes on. With `sessionMemory` = `sessionWindow` (the default) this is a window beyond what
   * was consumed: two stalled streams whose windows had grown to half the session window each
   * stopped every other stream of the session.
   */
  #maybeMaxData(): void {
    if (!this.#started) return;
    const target = Math.min(
      this.#sessionReceived + this.#sessionWindow,
      this.#sessionConsumed + this.#sessionMemory,
    );
    if (target - this.#recvMaxData < this.#sessionWindow / 2) return;
    this.#recvMaxData = target;
    this.#maxDataPending = true;
  }

  /**
   * MAX_STREAMS grows as streams are freed: in batches of an eighth of the limit while the client
   * is far from it, and by every stream freed once the client's streams come within a batch of
   * it, since its streams beyond the limit wait (their connections hang meanwhile). In batches
   * only, a client at a limit of 256 waited for 32 streams to close.
   */
  #maybeMaxStreams(): void {
    if (this.#role !== 'relay' || !this.#started) return;
    const target = this.#freedStreams + this.#maxStreams;
    const batch = Math.max(1, this.#maxStreams >> 3);
    const near = this.#nextId + batch > this.#streamLimit;
    if (target - this.#streamLimit >= batch || (near && target > this.#streamLimit)) {
      this.#streamLimit = target;
      this.#maxStreamsPending = true;
    }
  }

  /**
   * Bytes `write` may take on `s` now. Never beyond the peer's credit. Up to `sendBufferLimit`
   * held (unacknowledged + unsent) always; beyond that, as the peer's credit grows (its receive
   * window auto-tunes up to `maxStreamWindow`), so the bytes in flight can fill the window the
   * receiver offers, while the session's streams together hold at most `sessionWindow`. Holding
   * only 1 MiB while the receiver offers 8 left a fast path idle for every ACK's round trip.
   */
  #sendSpace(s: MuxStreamState): number {
    const send = s.send;
    const credit = s.sendMax - send.writeOffset;
    let room = this.#sendBufferLimit - send.buffered;
    if (room < credit && send.buffered + room < this.#maxStreamWindow) {
      let held = 0;
      for (const t of this.#streams.values()) held += t.send.buffered;
      room = Math.max(
        room,
        Math.min(this.#maxStreamWindow - send.buffered, this.#sessionWindow - held),
      );
    }
    return Math.max(0, Math.min(room, credit));
  }

  /** After ACKs or losses: writable events for streams whose buffers or credit grew. */
  #afterAcksOrLosses(): void {
    for (const s of this.#writableCheck) {
      if (!s.writeBlocked || s.freed || s.local) continue;
      if (this.#sendSpace(s) > 0) {
        s.writeBlocked = false;
        this.#emit({ type: 'stream-writable', id: s.id });
      }
    }
    this.#writableCheck.clear();
  }

  #emit(e: MuxEvent): void {
    this.#events.push(e);
  }

  // === Acknowledgements and losses of what we sent =============================================

  #onPacketAcked(p: SentPacket<Item[]>, _late: boolean): void {
    for (const it of p.items) {
      const s = it.s;
      switch (it.k) {
        case K_STREAM:
          if (!s || s.freed || s.local) break;
          if (it.open) {
            s.openAcked = true;
            s.openPending = false;
          }
          s.send.onAck(it.a, it.b, it.fin);
          this.#writableCheck.add(s);
          this.#maybeFree(s);
          break;
        case K_RESET:
        case K_REFUSE:
          if (s && !s.freed && s.local) {
            s.local.acked = true;
            s.resetPending = false;
            this.#maybeFree(s);
          }
          break;
        case K_GOAWAY:
          this.#goAwayPending = false;
          break;
        case K_PMTU:
          // Only the size under test counts (a late ack of an abandoned, larger one counts too).
          if (it.a > this.#maxPayload && this.#pmtuSizes.length > 0) {
            this.#pmtuSizes = [];
            this.#pmtuDue = false;
            this.setMaxPayload(it.a);
            this.#emit({ type: 'max-payload', bytes: it.a });
          }
          break;
        default:
          break;
      }
    }
  }

  #onPacketLost(p: SentPacket<Item[]>): void {
    this.#requeue(p.items, Number.POSITIVE_INFINITY);
  }

  /** Puts what a packet carried back in line (for a loss, or up to `budget` bytes for a probe). */
  #requeue(items: Item[], budget: number): void {
    for (const it of items) {
      const s = it.s;
      switch (it.k) {
        case K_PMTU:
          // Lost (not a congestion signal): try the next size down.
          if (budget === Number.POSITIVE_INFINITY && this.#pmtuSizes[0] === it.a) {
            this.#pmtuSizes.shift();
            this.#pmtuDue = this.#pmtuSizes.length > 0;
          }
          break;
        case K_STREAM: {
          if (!s || s.freed || s.local) break;
          if (it.open && !s.openAcked) s.openPending = true;
          const len = Math.min(it.b, Math.max(0, budget));
          budget -= len;
          s.send.onLost(it.a, len, it.fin && len === it.b);
          this.#enqueue(s);
          break;
        }
        case K_ACCEPT:
          if (s && !s.freed && !s.local && s.accepted) {
            s.acceptPending = true;
            this.#ctrlStreams.add(s);
          }
          break;
        case K_RESET:
        case K_REFUSE:
          if (s && !s.freed && s.local && !s.local.acked) {
            s.resetPending = true;
            this.#ctrlStreams.add(s);
          }
          break;
        case K_MAX_STREAM_DATA:
          if (s && !s.freed && !s.discard && s.recv.finalSize === undefined) {
            s.msdPending = true;
            this.#ctrlStreams.add(s);
          }
          break;
        case K_MAX_DATA:
          this.#maxDataPending = true;
          break;
        case K_MAX_STREAMS:
          this.#maxStreamsPending = true;
          break;
        case K_GOAWAY:
          this.#goAwayPending = true;
          break;
        default:
          break;
      }
    }
  }

  // === Building packets ========================================================================

  /** When a keepalive PING is due: streams open, keepalives on (undefined otherwise). */
  #keepaliveAt(): number | undefined {
    if (this.#keepaliveMs === 0 || this.#streams.size === 0) return undefined;
    return this.#lastElicitingAt + this.#keepaliveMs;
  }

  #hasWork(): boolean {
    return (
      this.#keepaliveDue ||
      this.#sendList.length > 0 ||
      this.#ctrlStreams.size > 0 ||
      this.#dgrams.length > 0 ||
      this.#maxDataPending ||
      this.#maxStreamsPending ||
      this.#goAwayPending
    );
  }

  #enqueue(s: MuxStreamState): void {
    if (!s.queued && !s.freed) {
      s.queued = true;
      this.#sendList.push(s);
    }
  }

  #push(it: Item): void {
    this.#plan.push(it);
    this.#left -= it.size;
  }

  #planControl(): void {
    if (this.#maxDataPending) {
      const it = new Item(K_MAX_DATA, undefined);
      it.a = this.#recvMaxData;
      it.size = simpleFrameLength(it.a);
      if (it.size > this.#left) return;
      this.#push(it);
      this.#maxDataPending = false;
    }
    if (this.#maxStreamsPending) {
      const it = new Item(K_MAX_STREAMS, undefined);
      it.a = this.#streamLimit;
      it.size = simpleFrameLength(it.a);
      if (it.size > this.#left) return;
      this.#push(it);
      this.#maxStreamsPending = false;
    }
    if (this.#goAwayPending && this.#goAwaySent !== undefined) {
      const it = new Item(K_GOAWAY, undefined);
      it.b = this.#goAwaySent;
      it.size = simpleFrameLength(it.b);
      if (it.size > this.#left) return;
      this.#push(it);
      this.#goAwayPending = false;
    }
    const client = this.#role === 'client';
    for (const s of this.#ctrlStreams) {
      if (this.#left < MIN_FRAME_ROOM) return;
      if (s.freed) {
        this.#ctrlStreams.delete(s);
        continue;
      }
      // A client stream above the relay's stream limit must wait for MAX_STREAMS.
      if (client && s.id >= this.#streamLimit) continue;
      if (s.acceptPending) {
        const it = new Item(K_ACCEPT, s);
        it.size = simpleFrameLength(s.id);
        if (it.size > this.#left) return;
        this.#push(it);
        s.acceptPending = false;
      }
      if (s.resetPending && s.local) {
        const l = s.local;
        const it = new Item(l.refuse ? K_REFUSE : K_RESET, s);
        it.b = l.code;
        it.a = l.finalSize;
        it.size = l.refuse
          ? simpleFrameLength(s.id, l.code)
          : simpleFrameLength(s.id, l.code, l.finalSize);
        if (it.size > this.#left) return;
        this.#push(it);
        s.resetPending = false;
      }
      if (s.msdPending) {
        if (s.discard || s.recv.finalSize !== undefined) {
          s.msdPending = false;
        } else {
          const it = new Item(K_MAX_STREAM_DATA, s);
          it.a = s.recvMax;
          it.size = simpleFrameLength(s.id, it.a);
          if (it.size > this.#left) return;
          this.#push(it);
          s.msdPending = false;
        }
      }
      this.#ctrlStreams.delete(s);
    }
  }

  /**
   * The payload of the next packet at most. Up to STREAM_PATH_PAYLOAD it is `maxPayload`. A larger
   * `maxPayload` (a stream path whose ends take up to 1 MiB, `streamPathPayload`) is only used as
   * far as the path moves it in JUMBO_MS: the delivery rate is estimated as bytes in flight over
   * the smoothed RTT (Little's law; on a path over TCP the RTT includes its queue). So a fast path
   * gets packets of up to 1 MiB, and a slow one keeps 60 000-byte packets, and with them the
   * granularity at which another stream's data can go between a bulk transfer's packets.
   */
  #packetCap(rec: Recovery<Item[]>): number {
    const max = this.#maxPayload;
    if (max <= STREAM_PATH_PAYLOAD || this.#pacing) return max;
    // A queued datagram bigger than the cap goes in a packet of its own size.
    const d = this.#dgrams[0];
    if (
      d &&
      datagramFrameLength(d.target, d.flow, d.data.length) + MAX_PACKET_HEADER > STREAM_PATH_PAYLOAD
    ) {
      return max;
    }
    const rate = rec.cc.bytesInFlight / Math.max(rec.rtt.smoothed, MIN_RATE_RTT_MS);
    return Math.max(STREAM_PATH_PAYLOAD, Math.min(max, Math.floor(rate * JUMBO_MS)));
  }

  #planDatagrams(): void {
    const q = this.#dgrams;
    let k = 0;
    while (k < q.length) {
      const d = q[k]!;
      const size = datagramFrameLength(d.target, d.flow, d.data.length);
      if (size > this.#maxPayload - MAX_PACKET_HEADER) {
        // Queued for a bigger path than the current one.
        this.#counters.datagramsDropped++;
        k++;
        continue;
      }
      if (size > this.#left) break;
      const it = new Item(K_DATAGRAM, undefined);
      it.dg = d;
      it.size = size;
      this.#push(it);
      this.#counters.datagramsSent++;
      k++;
    }
    if (k > 0) q.splice(0, k);
  }

  /** Whether a stream has anything it may send now. */
  #streamWants(s: MuxStreamState): boolean {
    if (s.freed || s.local) return false;
    if (this.#role === 'client' && s.id >= this.#streamLimit) return false;
    if (this.#role === 'relay' && !s.accepted) return false;
    if (s.openPending || s.send.hasRetransmit || s.send.finDue) return true;
    return (
      s.send.unsent > 0 && s.send.sentHigh < s.sendMax && this.#sessionSent < this.#peerMaxData
    );
  }

  #planStreams(): void {
    const list = this.#sendList;
    const n = list.length;
    if (n === 0) return;
    const start = this.#rr % n;
    for (let v = 0; v < n && this.#left >= MIN_FRAME_ROOM; v++) {
      const i = (start + v) % n;
      const s = list[i]!;
      let planned = false;
      while (this.#left >= MIN_FRAME_ROOM && this.#streamWants(s) && this.#planStreamFrame(s)) {
        planned = true;
      }
      if (planned) this.#rr = i + 1;
    }
    // Drop the streams that have nothing left to send; they come back when they do.
    let w = 0;
    for (let r = 0; r < list.length; r++) {
      const s = list[r]!;
      if (this.#streamWants(s)) list[w++] = s;
      else s.queued = false;
    }
    list.length = w;
  }

  /** Plans one STREAM frame for `s`; false if none fits. */
  #planStreamFrame(s: MuxStreamState): boolean {
    const left = this.#left;
    const send = s.send;
    let open = false;
    if (s.openPending) {
      if (send.sentHigh === 0 && !send.hasRetransmit && (send.unsent > 0 || send.finDue)) {
        open = true; // rides on the first data (or the FIN)
      } else {
        // A lone OPEN: nothing was sent yet (no data) or the OPEN was lost apart from the data.
        const size = streamHeaderLength(s.id, 0, s.targetBytes, 0);
        if (size > left) return false;
        const it = new Item(K_STREAM, s);
        it.open = true;
        it.size = size;
        this.#push(it);
        s.openPending = false;
        return true;
      }
    }
    const target = open ? s.targetBytes : undefined;
    // Header bound: type, id, offset (≤ 8), target, length (≤ varint of the room).
    const headerMax =
      1 + varintLength(s.id) + 8 + (target ? target.length : 0) + varintLength(left);
    const maxLen = Math.max(0, left - headerMax);
    const credit = Math.min(s.sendMax - send.sentHigh, this.#peerMaxData - this.#sessionSent);
    const r = this.#range;
    if (!send.next(maxLen, credit, r)) return false;
    const it = new Item(K_STREAM, s);
    it.a = r.offset;
    it.b = r.length;
    it.fin = r.fin;
    it.open = open;
    it.size = streamHeaderLength(s.id, r.offset, target, r.length) + r.length;
    this.#push(it);
    if (open) s.openPending = false;
    if (r.retransmit) this.#counters.streamBytesRetransmitted += r.length;
    else {
      this.#sessionSent += r.length;
      this.#counters.streamBytesSent += r.length;
    }
    return true;
  }

  #writeItem(buf: Uint8Array, o: number, it: Item): number {
    const s = it.s;
    switch (it.k) {
      case K_STREAM: {
        const st = s!;
        o = writeStreamHeader(
          buf,
          o,
          st.id,
          it.a,
          it.fin,
          it.open ? st.targetBytes : undefined,
          it.b,
        );
        st.send.copyOut(it.a, it.b, buf, o);
        return o + it.b;
      }
      case K_ACCEPT:
        return writeSimpleFrame(buf, o, MuxFrameType.ACCEPT, s!.id);
      case K_REFUSE:
        return writeSimpleFrame(buf, o, MuxFrameType.REFUSE, s!.id, it.b);
      case K_RESET:
        return writeSimpleFrame(buf, o, MuxFrameType.RESET, s!.id, it.b, it.a);
      case K_MAX_STREAM_DATA:
        return writeSimpleFrame(buf, o, MuxFrameType.MAX_STREAM_DATA, s!.id, it.a);
      case K_MAX_DATA:
        return writeSimpleFrame(buf, o, MuxFrameType.MAX_DATA, it.a);
      case K_MAX_STREAMS:
        return writeSimpleFrame(buf, o, MuxFrameType.MAX_STREAMS, it.a);
      case K_GOAWAY:
        return writeSimpleFrame(buf, o, MuxFrameType.GOAWAY, it.b);
      case K_PING:
        buf[o] = MuxFrameType.PING;
        return o + 1;
      case K_DATAGRAM: {
        const d = it.dg!;
        return writeDatagramFrame(buf, o, d.flow, d.target, d.data);
      }
      default:
        return o;
    }
  }
}

const EMPTY_ITEMS: Item[] = [];
const zeroed = (bytes: number): Uint8Array => new Uint8Array(bytes);
