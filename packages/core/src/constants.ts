/**
 * Wire constants. Specification constants (from RFCs) are kept apart from roamlink's own
 * implementation choices, so that a reader can tell which numbers may be tuned.
 */

// --- Specification constants -------------------------------------------------------------------

/** RFC 4303 §2: SPI (4) + Sequence Number (4). */
export const ESP_HEADER_BYTES = 8;
/** RFC 4106 §3.1 / RFC 7634 §2: explicit 8-octet IV carried in every packet. */
export const ESP_IV_BYTES = 8;
/** RFC 4106 §6 / RFC 7634 §2: 16-octet ICV (the AEAD tag). */
export const ESP_ICV_BYTES = 16;
/** RFC 4303 §2.4: Pad Length (1) + Next Header (1). */
export const ESP_TRAILER_BYTES = 2;
/** Offset of the ciphertext: header + IV. */
export const ESP_PAYLOAD_OFFSET = ESP_HEADER_BYTES + ESP_IV_BYTES;
/** RFC 4303 §2.4: the ciphertext (payload + padding + trailer) ends on a 4-byte boundary. */
export const ESP_ALIGN = 4;
/** RFC 4106 §4 / RFC 7634 §2: 4-octet salt taken from the keying material. */
export const ESP_SALT_BYTES = 4;
/** RFC 4303 §2.1: SPI values 1..255 are reserved by IANA; 0 is reserved for local use. */
export const ESP_MIN_SPI = 256;
/** RFC 3948 §2.2: a 4-byte zero "non-ESP marker" precedes anything that is not ESP. */
export const NON_ESP_MARKER_BYTES = 4;

/**
 * What a side that announces no MAX_DATAGRAM (docs/PROTOCOL.md §6.4) takes per datagram on a path
 * over TCP, WebSocket or HTTP: 65 535, the most a 16-bit Length holds (RFC 8229 §3 frames ESP in
 * TCP with one; the HTTP records use the same field).
 */
export const DEFAULT_MAX_DATAGRAM = 65_535;
/** The smallest MAX_DATAGRAM one may announce: IPv6's minimum MTU (RFC 8200 §5). */
export const MIN_MAX_DATAGRAM = 1_280;

/** IANA protocol numbers for the ESP Next Header field. */
export const NextHeader = {
  IPV4: 4,
  IPV6: 41,
  /** RFC 4303 §2.6: "no next header", used for dummy packets and keepalives. */
  NO_NEXT_HEADER: 59,
  /**
   * roamlink's own inner frames (streams, datagrams, registration). RFC 3692 sets 253 aside for
   * experimentation and testing, which is where an unregistered protocol belongs.
   */
  ROAMLINK: 253,
} as const;
export type NextHeader = (typeof NextHeader)[keyof typeof NextHeader];

// --- Implementation constants ------------------------------------------------------------------

/** Largest sequence number an SA may use: SAs rekey long before, and JS numbers stay exact. */
export const MAX_SEQUENCE = 2 ** 53 - 1;

/**
 * Payloads shorter than this go on an SA pair's small-packet SA when it has one (docs/PROTOCOL.md
 * §3.7). Below it a native ChaCha20-Poly1305 call (~1 µs) beats node:crypto's AES-GCM, whose
 * per-packet cipher object costs ~4 µs hot and 15-30 µs with cold caches between requests;
 * above it AES-NI's speed per byte wins.
 */
export const SMALL_PACKET_BYTES = 4096;
