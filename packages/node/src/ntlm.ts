/**
 * NTLM (MS-NLMP) as an HTTP proxy asks for it: the client side of NTLMv2 authentication, the
 * three messages of one connection's handshake (NEGOTIATE, the proxy's CHALLENGE, AUTHENTICATE),
 * without signing or sealing (HTTP uses none). Corporate proxies that authenticate against a
 * Windows domain offer NTLM beside Negotiate (Kerberos, which needs the platform's GSSAPI).
 *
 * Only NTLMv2 responses are ever sent (§3.3.2); NTLMv1 and LM hashes are broken and refused.
 * The NT hash needs MD4 (RFC 1320), which OpenSSL 3 no longer offers by default, so it is here.
 */
import { createHmac, randomBytes } from 'node:crypto';

// ---- MD4 (RFC 1320) ----

const rotl = (x: number, n: number): number => (x << n) | (x >>> (32 - n));

/** MD4 of `data` (RFC 1320 §3): used only for the NT hash of a password (MS-NLMP §3.3.1). */
export function md4(data: Uint8Array): Uint8Array {
  const n = data.length;
  // Padded to 56 mod 64 bytes, then the bit length as a 64-bit little-endian number (§3.1–3.2).
  const total = (((n + 8) >>> 6) + 1) << 6;
  const m = new Uint8Array(total);
  m.set(data);
  m[n] = 0x80;
  const v = new DataView(m.buffer);
  v.setUint32(total - 8, (n * 8) >>> 0, true);
  v.setUint32(total - 4, Math.floor(n / 0x20000000), true);
  let a = 0x67452301;
  let b = 0xefcdab89;
  let c = 0x98badcfe;
  let d = 0x10325476;
  const x = new Uint32Array(16);
  for (let off = 0; off < total; off += 64) {
    for (let i = 0; i < 16; i++) x[i] = v.getUint32(off + 4 * i, true);
    const [aa, bb, cc, dd] = [a, b, c, d];
    // Round 1: F(x,y,z) = xy | ~x z, shifts 3 7 11 19, words in order.
    for (const i of [0, 4, 8, 12]) {
      a = rotl((a + ((b & c) | (~b & d)) + x[i]!) | 0, 3);
      d = rotl((d + ((a & b) | (~a & c)) + x[i + 1]!) | 0, 7);
      c = rotl((c + ((d & a) | (~d & b)) + x[i + 2]!) | 0, 11);
      b = rotl((b + ((c & d) | (~c & a)) + x[i + 3]!) | 0, 19);
    }
    // Round 2: G(x,y,z) = xy | xz | yz, + 0x5a827999, shifts 3 5 9 13, words by column.
    for (const i of [0, 1, 2, 3]) {
      a = rotl((a + ((b & c) | (b & d) | (c & d)) + x[i]! + 0x5a827999) | 0, 3);
      d = rotl((d + ((a & b) | (a & c) | (b & c)) + x[i + 4]! + 0x5a827999) | 0, 5);
      c = rotl((c + ((d & a) | (d & b) | (a & b)) + x[i + 8]! + 0x5a827999) | 0, 9);
      b = rotl((b + ((c & d) | (c & a) | (d & a)) + x[i + 12]! + 0x5a827999) | 0, 13);
    }
    // Round 3: H(x,y,z) = x ^ y ^ z, + 0x6ed9eba1, shifts 3 9 11 15, words in bit-reversed order.
    for (const i of [0, 2, 1, 3]) {
      a = rotl((a + (b ^ c ^ d) + x[i]! + 0x6ed9eba1) | 0, 3);
      d = rotl((d + (a ^ b ^ c) + x[i + 8]! + 0x6ed9eba1) | 0, 9);
      c = rotl((c + (d ^ a ^ b) + x[i + 4]! + 0x6ed9eba1) | 0, 11);
      b = rotl((b + (c ^ d ^ a) + x[i + 12]! + 0x6ed9eba1) | 0, 15);
    }
    a = (a + aa) | 0;
    b = (b + bb) | 0;
    c = (c + cc) | 0;
    d = (d + dd) | 0;
  }
  const out = new Uint8Array(16);
  const o = new DataView(out.buffer);
  o.setUint32(0, a, true);
  o.setUint32(4, b, true);
  o.setUint32(8, c, true);
  o.setUint32(12, d, true);
  return out;
}

// ---- NTLMv2 (MS-NLMP §3.3.2) ----

const utf16le = (s: string): Buffer => Buffer.from(s, 'utf16le');
const hmacMd5 = (key: Uint8Array, ...parts: Uint8Array[]): Buffer => {
  const h = createHmac('md5', key);
  for (const p of parts) h.update(p);
  return h.digest();
};

/** NTOWFv2 (§3.3.2): HMAC-MD5 of the upper-cased user and the domain, keyed by the NT hash. */
export function ntowfv2(password: string, user: string, domain: string): Buffer {
  return hmacMd5(md4(utf16le(password)), utf16le(user.toUpperCase() + domain));
}

export interface Ntlmv2Responses {
  /** NtChallengeResponse: NTProofStr ‖ temp. */
  nt: Buffer;
  /** LmChallengeResponse: the LMv2 response, or 24 zero bytes when the proxy sent a timestamp. */
  lm: Buffer;
  /** SessionBaseKey (§3.3.2); unused over HTTP, returned for the published test vectors. */
  sessionBaseKey: Buffer;
}

/**
 * The NTLMv2 responses (§3.3.2) to `serverChallenge`, for a `targetInfo` (the challenge's AV
 * pairs, sent back as they came), a client challenge of 8 bytes and a FILETIME `timestamp`.
 */
export function ntlmv2Responses(o: {
  responseKey: Uint8Array;
  serverChallenge: Uint8Array;
  clientChallenge: Uint8Array;
  timestamp: Uint8Array;
  targetInfo: Uint8Array;
  /** Send Z(24) as the LM response (§3.1.5.1.2: when the challenge carries MsvAvTimestamp). */
  zeroLm: boolean;
}): Ntlmv2Responses {
  // temp = Responserversion ‖ HiResponserversion ‖ Z(6) ‖ Time ‖ ClientChallenge ‖ Z(4) ‖
  // ServerName (the AV pairs) ‖ Z(4).
  const temp = Buffer.concat([
    Buffer.from([1, 1, 0, 0, 0, 0, 0, 0]),
    o.timestamp,
    o.clientChallenge,
    Buffer.alloc(4),
    o.targetInfo,
    Buffer.alloc(4),
  ]);
  const proof = hmacMd5(o.responseKey, o.serverChallenge, temp);
  return {
    nt: Buffer.concat([proof, temp]),
    lm: o.zeroLm
      ? Buffer.alloc(24)
      : Buffer.concat([
          hmacMd5(o.responseKey, o.serverChallenge, o.clientChallenge),
          o.clientChallenge,
        ]),
    sessionBaseKey: hmacMd5(o.responseKey, proof),
  };
}

// ---- messages (§2.2.1) ----

const SIGNATURE = Buffer.from('NTLMSSP\0', 'latin1');
/** NEGOTIATE flags (§2.2.2.5). */
const FLAG = {
  UNICODE: 0x00000001,
  OEM: 0x00000002,
  REQUEST_TARGET: 0x00000004,
  NTLM: 0x00000200,
  ALWAYS_SIGN: 0x00008000,
  EXTENDED_SESSIONSECURITY: 0x00080000,
  TARGET_INFO: 0x00800000,
  N128: 0x20000000,
  N56: 0x80000000,
} as const;
const OFFERED =
  FLAG.UNICODE |
  FLAG.OEM |
  FLAG.REQUEST_TARGET |
  FLAG.NTLM |
  FLAG.ALWAYS_SIGN |
  FLAG.EXTENDED_SESSIONSECURITY |
  FLAG.N128 |
  FLAG.N56;
/** MsvAvTimestamp (§2.2.2.1): the server's FILETIME. */
const AV_TIMESTAMP = 7;
const AV_EOL = 0;

/** The NEGOTIATE_MESSAGE (§2.2.1.1): flags only, no domain or workstation (32 bytes). */
export function negotiateMessage(): Buffer {
  const m = Buffer.alloc(32);
  SIGNATURE.copy(m, 0);
  m.writeUInt32LE(1, 8);
  m.writeUInt32LE(OFFERED >>> 0, 12);
  // DomainNameFields and WorkstationFields: length 0, offset just past the header.
  m.writeUInt32LE(32, 20);
  m.writeUInt32LE(32, 28);
  return m;
}

export interface NtlmChallenge {
  flags: number;
  serverChallenge: Buffer;
  /** The AV pairs, as sent (empty if none). */
  targetInfo: Buffer;
  /** MsvAvTimestamp's FILETIME, if the proxy sent one. */
  timestamp: Buffer | undefined;
}

/** Parses a CHALLENGE_MESSAGE (§2.2.1.2); throws on anything malformed. */
export function parseChallengeMessage(m: Uint8Array): NtlmChallenge {
  const b = Buffer.from(m.buffer, m.byteOffset, m.length);
  if (b.length < 32 || !b.subarray(0, 8).equals(SIGNATURE) || b.readUInt32LE(8) !== 2) {
    throw new Error('not an NTLM CHALLENGE_MESSAGE');
  }
  const flags = b.readUInt32LE(20);
  let targetInfo = Buffer.alloc(0);
  if (b.length >= 48 && flags & FLAG.TARGET_INFO) {
    const len = b.readUInt16LE(40);
    const off = b.readUInt32LE(44);
    if (off + len > b.length) throw new Error('NTLM target information out of bounds');
    targetInfo = Buffer.from(b.subarray(off, off + len));
  }
  let timestamp: Buffer | undefined;
  for (let i = 0; i + 4 <= targetInfo.length; ) {
    const id = targetInfo.readUInt16LE(i);
    const len = targetInfo.readUInt16LE(i + 2);
    if (i + 4 + len > targetInfo.length) throw new Error('NTLM AV pair out of bounds');
    if (id === AV_EOL) break;
    if (id === AV_TIMESTAMP && len === 8) timestamp = targetInfo.subarray(i + 4, i + 12);
    i += 4 + len;
  }
  return { flags, serverChallenge: Buffer.from(b.subarray(24, 32)), targetInfo, timestamp };
}

/** Now as a FILETIME: 100 ns ticks since 1601-01-01, little-endian. */
function filetimeNow(): Buffer {
  const t = Buffer.alloc(8);
  t.writeBigUInt64LE((BigInt(Date.now()) + 11_644_473_600_000n) * 10_000n);
  return t;
}

/**
 * The AUTHENTICATE_MESSAGE (§2.2.1.3) answering `challenge` with NTLMv2 responses: user and
 * domain in UTF-16 (a proxy that did not offer Unicode is refused), an empty workstation, no
 * session key, MIC or version. `user` may be "DOMAIN\user"; the domain is then its own field.
 */
export function authenticateMessage(
  challenge: NtlmChallenge,
  user: string,
  password: string,
  clientChallenge: Uint8Array = randomBytes(8),
): Buffer {
  if (!(challenge.flags & FLAG.UNICODE)) throw new Error('the proxy does not offer Unicode NTLM');
  const slash = user.indexOf('\\');
  const domain = slash >= 0 ? user.slice(0, slash) : '';
  const name = slash >= 0 ? user.slice(slash + 1) : user;
  const { nt, lm } = ntlmv2Responses({
    responseKey: ntowfv2(password, name, domain),
    serverChallenge: challenge.serverChallenge,
    clientChallenge,
    timestamp: challenge.timestamp ?? filetimeNow(),
    targetInfo: challenge.targetInfo,
    zeroLm: challenge.timestamp !== undefined,
  });
  const fields = [lm, nt, utf16le(domain), utf16le(name), Buffer.alloc(0), Buffer.alloc(0)];
  const header = Buffer.alloc(64);
  SIGNATURE.copy(header, 0);
  header.writeUInt32LE(3, 8);
  let off = header.length;
  fields.forEach((f, i) => {
    // LmChallengeResponse, NtChallengeResponse, DomainName, UserName, Workstation,
    // EncryptedRandomSessionKey: each Len, MaxLen, Offset.
    header.writeUInt16LE(f.length, 12 + 8 * i);
    header.writeUInt16LE(f.length, 14 + 8 * i);
    header.writeUInt32LE(off, 16 + 8 * i);
    off += f.length;
  });
  // The flags both sides offered, with OEM cleared: the strings are UTF-16, and a reader that
  // sees OEM may take them for 8-bit ones.
  header.writeUInt32LE((challenge.flags & OFFERED & ~FLAG.OEM) >>> 0, 60);
  return Buffer.concat([header, ...fields]);
}
