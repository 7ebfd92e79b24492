/**
 * Proxy authentication beyond a preemptive Basic: what a CONNECT does when the proxy answers 407
 * (RFC 9110 §11.7.1) with its challenges. Schemes, strongest first:
 *
 * - NTLM (ntlm.ts, MS-NLMP): connection-based, two more round trips on the same connection
 *   (NEGOTIATE, then AUTHENTICATE answering the proxy's CHALLENGE); what Windows-domain proxies
 *   offer beside Negotiate. A proxy that offers Negotiate alone gets the same NTLM messages in
 *   that scheme, as Windows clients send them when Kerberos is out of reach (RFC 4559 carries
 *   SPNEGO tokens there; Windows servers and squid's negotiate_wrapper take raw NTLM too).
 * - Digest (RFC 7616): SHA-256 or MD5, and their "-sess" forms, qop "auth" (or none, RFC 2069),
 *   `userhash`, `username*` for names that are not plain ASCII; a `stale` answer is retried with
 *   the new nonce.
 * - Basic (RFC 7617).
 *
 * Kerberos needs the platform's GSSAPI and is not offered: a Negotiate answer that is not NTLM
 * ends the attempt. The password crosses a
 * plain connection to the proxy only where the proxy asked for Basic: unless the proxy is known
 * to take Basic (`ProxyAuthMemory`), the first CONNECT to a plain-http proxy goes without
 * credentials and the answer says which scheme to use. To an https:// proxy Basic goes at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { authenticateMessage, negotiateMessage, parseChallengeMessage } from './ntlm.ts';

const NTLMSSP = Buffer.from('NTLMSSP\0', 'latin1');

/** One challenge of a Proxy-Authenticate field (RFC 9110 §11.3). */
export interface AuthChallenge {
  /** Lower-case. */
  scheme: string;
  /** Parameter names lower-case; quoted strings unquoted. */
  params: Map<string, string>;
  token68: string | undefined;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68 = /[A-Za-z0-9\-._~+/]/;

/**
 * Parses Proxy-Authenticate field values (RFC 9110 §11.3: `scheme [ token68 / #auth-param ]`,
 * several challenges per field, comma-separated). What cannot be parsed ends that field's list.
 */
export function parseChallenges(values: readonly string[]): AuthChallenge[] {
  const out: AuthChallenge[] = [];
  for (const s of values) {
    let i = 0;
    const spaces = (): void => {
      while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
    };
    const token = (re: RegExp): string => {
      const start = i;
      while (i < s.length && re.test(s[i]!)) i++;
      return s.slice(start, i);
    };
    for (;;) {
      while (i < s.length && (s[i] === ',' || s[i] === ' ' || s[i] === '\t')) i++;
      if (i >= s.length) break;
      const scheme = token(TCHAR);
      if (scheme === '') break;
      const c: AuthChallenge = {
        scheme: scheme.toLowerCase(),
        params: new Map(),
        token68: undefined,
      };
      out.push(c);
      spaces();
      // token68: its characters, any '=' padding, then the end or a comma.
      const save = i;
      const t = token(TOKEN68);
      let j = i;
      while (j < s.length && s[j] === '=') j++;
      const after = j;
      i = j;
      spaces();
      if (t !== '' && (i >= s.length || s[i] === ',')) {
        c.token68 = s.slice(save, after);
        continue;
      }
      i = save;
      // auth-params: name BWS "=" BWS (token / quoted-string), comma-separated; a token not
      // followed by "=" starts the next challenge.
      for (;;) {
        spaces();
        const at = i;
        const name = token(TCHAR);
        spaces();
        if (name === '' || s[i] !== '=') {
          i = at;
          break;
        }
        i++;
        spaces();
        let value = '';
        if (s[i] === '"') {
          i++;
          while (i < s.length && s[i] !== '"') {
            if (s[i] === '\\' && i + 1 < s.length) i++;
            value += s[i++];
          }
          i++;
        } else {
          value = token(TCHAR);
        }
        c.params.set(name.toLowerCase(), value);
        spaces();
        if (s[i] !== ',') break;
        i++;
      }
    }
  }
  return out;
}

/** The Basic credentials (RFC 7617 §2): base64 of "user-id:password" in UTF-8. */
export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

// ---- Digest (RFC 7616) ----

const DIGEST_HASHES: Record<string, string> = {
  md5: 'md5',
  'md5-sess': 'md5',
  'sha-256': 'sha256',
  'sha-256-sess': 'sha256',
  'sha-512-256': 'sha512-256',
  'sha-512-256-sess': 'sha512-256',
};

/** Preference among Digest challenges (RFC 7616 §3.7: the strongest the client supports). */
function digestRank(c: AuthChallenge): number {
  const alg = (c.params.get('algorithm') ?? 'md5').toLowerCase();
  if (!(alg in DIGEST_HASHES) || !c.params.has('nonce')) return -1;
  const qop = c.params.get('qop');
  // Only qop "auth" (or none): "auth-int" would hash a body CONNECT does not have.
  if (qop !== undefined && !qop.split(',').some((q) => q.trim().toLowerCase() === 'auth')) {
    return -1;
  }
  return alg.startsWith('sha-512-256') ? 3 : alg.startsWith('sha-256') ? 2 : 1;
}

const quoted = (s: string): string => `"${s.replace(/(["\\])/g, '\\$1')}"`;

/**
 * The `Proxy-Authorization` value answering a Digest challenge (RFC 7616 §3.4) for `method` on
 * `uri` (for CONNECT, the authority-form target), with client nonce `cnonce` and count `nc`.
 */
export function digestAuthorization(o: {
  challenge: AuthChallenge;
  username: string;
  password: string;
  method: string;
  uri: string;
  cnonce: string;
  nc: number;
}): string {
  const p = o.challenge.params;
  const algorithm = p.get('algorithm') ?? 'MD5';
  const hashName = DIGEST_HASHES[algorithm.toLowerCase()];
  if (hashName === undefined) throw new Error(`Digest algorithm ${algorithm} not supported`);
  const H = (s: string): string => createHash(hashName).update(s, 'utf8').digest('hex');
  const realm = p.get('realm') ?? '';
  const nonce = p.get('nonce') ?? '';
  const qop = p.get('qop') === undefined ? undefined : 'auth';
  const nc = o.nc.toString(16).padStart(8, '0');
  let ha1 = H(`${o.username}:${realm}:${o.password}`);
  if (algorithm.toLowerCase().endsWith('-sess')) ha1 = H(`${ha1}:${nonce}:${o.cnonce}`);
  const ha2 = H(`${o.method}:${o.uri}`);
  const response =
    qop === undefined
      ? H(`${ha1}:${nonce}:${ha2}`)
      : H(`${ha1}:${nonce}:${nc}:${o.cnonce}:${qop}:${ha2}`);
  const userhash = p.get('userhash')?.toLowerCase() === 'true';
  // §3.4.4: a name that a quoted-string cannot carry as is goes as username* (RFC 8187).
  const plain = /^[\x20-\x7e]*$/.test(o.username);
  const user = userhash
    ? `username=${quoted(H(`${o.username}:${realm}`))}`
    : plain
      ? `username=${quoted(o.username)}`
      : `username*=UTF-8''${encodeURIComponent(o.username)}`;
  const fields = [
    user,
    `realm=${quoted(realm)}`,
    `uri=${quoted(o.uri)}`,
    `algorithm=${algorithm}`,
    `nonce=${quoted(nonce)}`,
    ...(qop === undefined ? [] : [`nc=${nc}`, `cnonce=${quoted(o.cnonce)}`, `qop=${qop}`]),
    `response=${quoted(response)}`,
    ...(p.has('opaque') ? [`opaque=${quoted(p.get('opaque')!)}`] : []),
    ...(userhash ? ['userhash=true'] : []),
  ];
  return `Digest ${fields.join(', ')}`;
}

// ---- the handshake ----

/** `negotiate`: NTLM's messages in the Negotiate scheme. */
export type AuthScheme = 'basic' | 'digest' | 'ntlm' | 'negotiate';

/**
 * What a proxy was found to want, kept with its configuration so that later connections start
 * with it: Basic preemptively, Digest preemptively with the last nonce (the count goes on), NTLM
 * with its first message.
 */
export interface ProxyAuthMemory {
  scheme?: AuthScheme;
  digest?: { challenge: AuthChallenge; nc: number };
}

/**
 * A forward request was answered 407: what the proxy asks for is remembered with its
 * configuration. Basic: the next forward requests carry it. NTLM or Digest, which only a
 * CONNECT answers here: the HTTP paths go by CONNECT from then on. Returns the scheme.
 */
export function noteForwardRefusal(
  memory: ProxyAuthMemory,
  values: readonly string[],
): AuthScheme | undefined {
  const schemes = parseChallenges(values).map((c) => c.scheme);
  const want: AuthScheme | undefined = schemes.includes('ntlm')
    ? 'ntlm'
    : schemes.includes('digest')
      ? 'digest'
      : schemes.includes('basic')
        ? 'basic'
        : schemes.includes('negotiate')
          ? 'negotiate'
          : undefined;
  if (want !== undefined && memory.scheme !== want) {
    memory.scheme = want;
    delete memory.digest;
  }
  return want;
}

/**
 * Whether forward requests carry Basic before the proxy asks: to a proxy known to take it, or
 * over TLS to the proxy. A plain proxy not known yet gets no password until its 407 says which
 * scheme it wants.
 */
export function forwardSendsBasic(memory: ProxyAuthMemory, secure: boolean): boolean {
  return memory.scheme === 'basic' || (memory.scheme === undefined && secure);
}

/** Whether a proxy is known to want a scheme forward requests cannot carry. */
export function needsConnect(memory: ProxyAuthMemory): boolean {
  return memory.scheme !== undefined && memory.scheme !== 'basic';
}

/** A 407 that no credentials of ours can answer: the reason, for AUTH_REQUIRED. */
export class AuthRefusal {
  readonly reason: string;
  constructor(reason: string) {
    this.reason = reason;
  }
}

/**
 * One CONNECT's authentication, attempt by attempt: `first()` is the Proxy-Authorization of the
 * first request (or none), `on407` the next one after a 407, or an AuthRefusal. `sameConnection`
 * after `on407`: the next attempt must use the connection the 407 came on (NTLM).
 */
export class ProxyAuthSession {
  readonly #user: string | undefined;
  readonly #password: string;
  readonly #memory: ProxyAuthMemory;
  readonly #method: string;
  readonly #uri: string;
  readonly #secure: boolean;
  readonly #tried = new Set<string>();
  #sent: AuthScheme | 'ntlm-start' | undefined;
  /** The scheme NTLM's messages go in: "NTLM", or "Negotiate" to a proxy that offers only that. */
  #ntlmIn: 'NTLM' | 'Negotiate' = 'NTLM';
  #staleRetried = false;
  sameConnection = false;

  constructor(o: {
    username: string | undefined;
    password: string | undefined;
    memory: ProxyAuthMemory;
    method: string;
    uri: string;
    /** The connection to the proxy is TLS: Basic may go before the proxy asks. */
    secure: boolean;
  }) {
    this.#user = o.username;
    this.#password = o.password ?? '';
    this.#memory = o.memory;
    this.#method = o.method;
    this.#uri = o.uri;
    this.#secure = o.secure;
  }

  first(): string | undefined {
    if (this.#user === undefined) return undefined;
    const m = this.#memory;
    if (m.scheme === 'ntlm' || m.scheme === 'negotiate') {
      return this.#ntlmStart(m.scheme === 'ntlm' ? 'NTLM' : 'Negotiate');
    }
    if (m.scheme === 'digest' && m.digest) return this.#digest(m.digest.challenge);
    if (m.scheme === 'basic' || (m.scheme === undefined && this.#secure)) return this.#basic();
    return undefined;
  }

  on407(values: readonly string[]): string | AuthRefusal {
    this.sameConnection = false;
    const challenges = parseChallenges(values);
    const offers = challenges.map((c) => c.scheme);
    if (this.#user === undefined) return new AuthRefusal('no credentials sent');
    if (this.#sent === 'ntlm-start') {
      const scheme = this.#ntlmIn.toLowerCase();
      const c = challenges.find((x) => x.scheme === scheme && x.token68 !== undefined);
      if (!c) return new AuthRefusal('NTLM handshake broken off: no CHALLENGE in the answer');
      const token = Buffer.from(c.token68!, 'base64');
      if (this.#ntlmIn === 'Negotiate' && !token.subarray(0, 8).equals(NTLMSSP)) {
        return new AuthRefusal(
          'the proxy wants Kerberos in Negotiate, which roamlink does not speak',
        );
      }
      let type3: Buffer;
      try {
        type3 = authenticateMessage(parseChallengeMessage(token), this.#user, this.#password);
      } catch (e) {
        return new AuthRefusal(`NTLM: ${(e as Error).message}`);
      }
      this.#sent = this.#ntlmIn === 'NTLM' ? 'ntlm' : 'negotiate';
      this.sameConnection = true;
      return `${this.#ntlmIn} ${type3.toString('base64')}`;
    }
    if (this.#sent === 'digest' && !this.#staleRetried) {
      // A nonce the proxy no longer takes (stale=true): the password was right (§3.3).
      const stale = challenges.find(
        (x) => x.scheme === 'digest' && x.params.get('stale')?.toLowerCase() === 'true',
      );
      if (stale && digestRank(stale) >= 0) {
        this.#staleRetried = true;
        return this.#digest(stale);
      }
    }
    // Credentials of a scheme already tried were refused: another scheme may still take them.
    if (offers.includes('ntlm') && !this.#tried.has('ntlm')) return this.#ntlmStart('NTLM');
    const digests = challenges
      .filter((x) => x.scheme === 'digest' && digestRank(x) >= 0)
      .sort((a, b) => digestRank(b) - digestRank(a));
    if (digests.length > 0 && !this.#tried.has('digest')) return this.#digest(digests[0]!);
    if (offers.includes('basic') && !this.#tried.has('basic')) return this.#basic();
    // Negotiate alone: NTLM inside it, which a proxy without Kerberos for us takes.
    if (offers.includes('negotiate') && !this.#tried.has('ntlm'))
      return this.#ntlmStart('Negotiate');
    if (this.#tried.size > 0) return new AuthRefusal('credentials rejected');
    return new AuthRefusal('no scheme offered that roamlink speaks (Basic, Digest, NTLM)');
  }

  #basic(): string {
    this.#sent = 'basic';
    this.#tried.add('basic');
    this.#memory.scheme = 'basic';
    return basicAuthorization(this.#user!, this.#password);
  }

  #digest(challenge: AuthChallenge): string {
    this.#sent = 'digest';
    this.#tried.add('digest');
    const m = this.#memory;
    const nc = m.digest?.challenge === challenge ? m.digest.nc + 1 : 1;
    m.scheme = 'digest';
    m.digest = { challenge, nc };
    return digestAuthorization({
      challenge,
      username: this.#user!,
      password: this.#password,
      method: this.#method,
      uri: this.#uri,
      cnonce: randomBytes(12).toString('hex'),
      nc,
    });
  }

  #ntlmStart(scheme: 'NTLM' | 'Negotiate'): string {
    this.#sent = 'ntlm-start';
    this.#ntlmIn = scheme;
    this.#tried.add('ntlm');
    this.#memory.scheme = scheme === 'NTLM' ? 'ntlm' : 'negotiate';
    // The CHALLENGE answers on this connection; the AUTHENTICATE must follow on it.
    return `${scheme} ${negotiateMessage().toString('base64')}`;
  }
}
