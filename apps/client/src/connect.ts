/**
 * `roamlink connect <relay>`: one tunnel to the relay, a SOCKS5 port (RFC 1928: CONNECT and UDP
 * ASSOCIATE) and `-L` forwards on top of it, a live status line on stderr and a JSON summary on
 * stdout at exit.
 *
 * Moves need no user action: a transport that dies is dropped and dialled again, a silent path is
 * noticed by the session's dead-path detection, and the local interfaces are watched (an address
 * that appears or goes is a move). With `--control`, lines on stdin steer it (for tests and
 * demos): `drop udp|tcp|ws|http`, `disable <kind>`, `enable <kind>`, `only <kind>`, `all`.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { createInterface } from 'node:readline';
import type { MuxEvent, SessionEvent, Suite } from '@roamlink/core';
import { ENCAPSULATION_NAMES, SUITE_NAMES, toHex, VERDICT_NAMES } from '@roamlink/core';
import {
  BULK_PACKET_BYTES,
  keyLogWriter,
  SMALL_MEASURE_BYTES,
  selectProvider,
} from '@roamlink/crypto-node';
import {
  type ForwardSpec,
  formatEndpoint,
  loadOrCreateKey,
  loadPac,
  notTlsErrorIn,
  onStopSignal,
  type PacScript,
  ProxyErrorCode,
  pacProxyFor,
  parseEndpoint,
  parseForward,
  parseProxyUrl,
  parsePublicKey,
  proxyEnvVar,
  type RelayTls,
  startForward,
  startSocksServer,
  tlsTrustErrorIn,
  tuneHeapForTunnel,
  type UdpEndpoint,
  unbracket,
  wsMasking,
} from '@roamlink/node';
import { TRANSPORT_KINDS, type TransportKind, TunnelClient } from './tunnel.ts';

export interface ConnectOptions {
  /** host[:port], or the relay's HTTP face as a URL (http, https, ws, wss). */
  relay: string;
  relayKey: string;
  relayUdp?: string | undefined;
  relayTcp?: string | undefined;
  /** host:port, or a URL. */
  relayHttp?: string | undefined;
  /** PEM files of CAs to trust for an https relay. */
  tlsCa?: readonly string[] | undefined;
  /** Do not check an https relay's certificate. */
  tlsInsecure?: boolean | undefined;
  socks?: string | undefined;
  forwards: string[];
  dataDir: string;
  disabled: TransportKind[];
  suite?: string | undefined;
  rekeyAfterMs?: number | undefined;
  outageMs?: number | undefined;
  keepaliveMs?: number | undefined;
  /** An HTTP proxy URL; false: never use one (not even from the environment). */
  proxy?: string | false | undefined;
  /** PEM files of CAs to trust for an https:// proxy. */
  proxyCa?: readonly string[] | undefined;
  /** Do not check an https:// proxy's certificate. */
  proxyInsecure?: boolean | undefined;
  /** A PAC file or URL that chooses the proxy (not with `proxy`). */
  proxyPac?: string | undefined;
  /** "user:password" for a proxy whose URL has none. */
  proxyUser?: string | undefined;
  /** false: HTTP streaming paths never try the up-stream (a POST per batch). */
  httpUpstream?: boolean | undefined;
  control: boolean;
  jsonLog: boolean;
  quiet: boolean;
  durationS: number;
}

/** After this long without a session, the client says what each transport saw. */
export const UNANSWERED_NOTICE_MS = 10_000;

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, UNREACHABLE: 3 } as const;

export async function connect(o: ConnectOptions): Promise<number> {
  tuneHeapForTunnel();
  const { keypair } = loadOrCreateKey(`${o.dataDir}/client.key`);
  // Measured at the stream layer's packet size (tens of KB on every path but a small-MTU UDP
  // one): there AES-GCM with AES-NI outruns ChaCha20 where at 1400 bytes it does not.
  const crypto = selectProvider({
    packetBytes: BULK_PACKET_BYTES,
    smallPacketBytes: SMALL_MEASURE_BYTES,
  });
  const suiteByName = new Map(
    Object.entries(SUITE_NAMES).map(([code, name]) => [name, Number(code) as Suite]),
  );
  const only = o.suite === undefined ? undefined : suiteByName.get(o.suite);
  if (o.suite !== undefined && (only === undefined || !crypto.suites.includes(only))) {
    process.stderr.write(`roamlink: unknown or unavailable suite "${o.suite}"\n`);
    return EXIT.USAGE;
  }
  let relayKey: Uint8Array;
  try {
    relayKey = parsePublicKey(o.relayKey);
  } catch (e) {
    // A typo in the key is a usage error, not an unreachable relay.
    process.stderr.write(`roamlink: --relay-key: ${(e as Error).message}\n`);
    return EXIT.USAGE;
  }
  if (o.proxy) {
    try {
      // Checked now, so that a typo is a usage error, not a path that fails later.
      parseProxyUrl(o.proxy);
    } catch (e) {
      process.stderr.write(`roamlink: --proxy: ${(e as Error).message}\n`);
      return EXIT.USAGE;
    }
  }
  if (o.proxyPac !== undefined && o.proxy !== undefined) {
    process.stderr.write('roamlink: --proxy-pac and --proxy/--no-proxy: give one of them\n');
    return EXIT.USAGE;
  }
  let proxyUser: { username: string; password: string } | undefined;
  if (o.proxyUser !== undefined && o.proxyUser !== '') {
    const i = o.proxyUser.indexOf(':');
    proxyUser =
      i < 0
        ? { username: o.proxyUser, password: '' }
        : { username: o.proxyUser.slice(0, i), password: o.proxyUser.slice(i + 1) };
  }
  // Every address is checked before anything starts: a typo is a usage error (exit 2), not a
  // failure after the session is up.
  let relay: UdpEndpoint;
  let relayTcp: UdpEndpoint | undefined;
  let relayHttp: UdpEndpoint | undefined;
  let relayUrl: string | undefined;
  let socksAt: UdpEndpoint | undefined;
  let forwards: ForwardSpec[];
  let tls: RelayTls | undefined;
  let proxyTls: RelayTls | undefined;
  const disabled = new Set(o.disabled);
  try {
    const at = (flag: string, v: string, forBind = false): UdpEndpoint => {
      try {
        return parseEndpoint(v, forBind);
      } catch (e) {
        throw new Error(`${flag}: ${(e as Error).message}`);
      }
    };
    if (isRelayUrl(o.relay)) {
      // The relay's HTTP face only (an edge relay has no UDP or TCP): those two are raced only
      // where their own flag names them.
      relayUrl = parseRelayUrl('relay', o.relay);
      const u = new URL(relayUrl);
      relay = o.relayUdp
        ? at('--relay-udp', o.relayUdp)
        : { address: unbracket(u.hostname), port: DEFAULT_RELAY_PORT };
      if (!o.relayUdp) disabled.add('udp');
      if (!o.relayTcp) disabled.add('tcp');
    } else {
      // A host without a port takes the default one (IPv6 goes in brackets, with its port).
      relay = at('relay', o.relay.includes(':') ? o.relay : `${o.relay}:${DEFAULT_RELAY_PORT}`);
      if (o.relayUdp) relay = at('--relay-udp', o.relayUdp);
    }
    relayTcp = o.relayTcp ? at('--relay-tcp', o.relayTcp) : undefined;
    if (o.relayHttp && isRelayUrl(o.relayHttp)) {
      relayUrl = parseRelayUrl('--relay-http', o.relayHttp);
    } else if (o.relayHttp) {
      relayHttp = at('--relay-http', o.relayHttp);
    }
    if (disabled.size === TRANSPORT_KINDS.length) {
      throw new Error(
        'every encapsulation is turned off (a URL relay races WebSocket and HTTP only; name UDP and TCP with --relay-udp, --relay-tcp)',
      );
    }
    tls = tlsFrom('--tls-ca', o.tlsCa, o.tlsInsecure);
    proxyTls = tlsFrom('--proxy-ca', o.proxyCa, o.proxyInsecure);
    if (proxyTls !== undefined && o.proxyPac === undefined && !httpsProxyConfigured(o.proxy)) {
      process.stderr.write(
        'roamlink: --proxy-ca/--proxy-insecure have no effect: no https:// proxy is configured\n',
      );
    }
    if (tls !== undefined && !isSecureUrl(relayUrl)) {
      // Not an error (a script may pass them always), but worth knowing: nothing uses them.
      process.stderr.write(
        'roamlink: --tls-ca/--tls-insecure have no effect: the relay is not an https:// URL\n',
      );
    }
    socksAt = o.socks ? at('--socks', o.socks, true) : undefined;
    forwards = o.forwards.map((spec) => parseForward(spec));
  } catch (e) {
    process.stderr.write(`roamlink: ${(e as Error).message}\n`);
    return EXIT.USAGE;
  }
  // The PAC script is loaded and asked once now: one that does not load, throws or names only
  // proxies roamlink does not speak is a usage error, not paths that fail later.
  let proxyPac: PacScript | undefined;
  if (o.proxyPac !== undefined) {
    const httpAt =
      relayUrl !== undefined
        ? new URL(relayUrl)
        : new URL(
            `http://${formatEndpoint(
              (relayHttp ?? relay).address,
              relayHttp?.port ?? Math.min(relay.port + 1, 65_535),
            )}`,
          );
    try {
      proxyPac = await loadPac(o.proxyPac, [unbracket(httpAt.hostname)]);
      pacProxyFor(proxyPac, httpAt.href);
    } catch (e) {
      process.stderr.write(`roamlink: --proxy-pac: ${(e as Error).message}\n`);
      return EXIT.USAGE;
    }
  }
  const writeKey = keyLogWriter();
  const started = performance.now();
  const log = (level: string, msg: string, fields: Record<string, unknown> = {}): void => {
    if (o.jsonLog) {
      process.stdout.write(
        `${JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields })}\n`,
      );
    }
  };
  let lastEvent = '';
  // The suites of the current SA pair (bulk, and small-packet if any), for the summary.
  let suites: { suite: string; smallSuite?: string } | undefined;
  const tty = process.stderr.isTTY && !o.quiet;
  // Set when the client said the relay does not answer (below): its answer is then worth a line.
  let unanswered = false;
  const onSessionEvent = (e: SessionEvent): void => {
    if (e.type === 'established' && unanswered) {
      unanswered = false;
      const after = ((performance.now() - started) / 1000).toFixed(1);
      log('info', 'relay-answered', { afterS: Number(after) });
      if (!o.jsonLog && !o.quiet) {
        process.stderr.write(
          `${tty ? '\r\x1b[2K' : ''}roamlink: session established after ${after} s\n`,
        );
      }
    }
    if (e.type === 'registered') {
      lastEvent = `registered (round ${e.round})`;
      log('info', 'registered', {
        round: e.round,
        encapsulation: ENCAPSULATION_NAMES[e.encapsulation],
        verdict: VERDICT_NAMES[e.verdict],
        rttMs: e.rttMs,
      });
    } else if (e.type === 'established') {
      lastEvent = e.rekey ? 'rekeyed' : 'established';
      suites = {
        suite: SUITE_NAMES[e.suite],
        ...(e.smallSuite === undefined ? {} : { smallSuite: SUITE_NAMES[e.smallSuite] }),
      };
      log('info', e.rekey ? 'rekeyed' : 'established', suites);
    } else if (e.type === 'path-dead' || e.type === 'path-data-blocked') {
      lastEvent = e.type;
      log('warn', e.type, {});
    } else if (e.type === 'handshake-failed') {
      lastEvent = `handshake failed: ${e.reason}`;
      log('error', 'handshake-failed', { reason: e.reason });
    }
  };
  const onMuxEvent = (e: MuxEvent): void => {
    if (e.type === 'goaway') {
      lastEvent = 'relay going away';
      log('warn', 'goaway', { code: e.code });
    } else if (e.type === 'dead') {
      lastEvent = 'tunnel dead';
      log('error', 'tunnel-dead', { silentMs: e.silentMs });
    }
  };

  // The last failure of each transport kind, for the notice when no session comes up.
  const failures = new Map<string, string>();
  // Failures that retrying cannot fix: each said once, at once, with what will fix it.
  const warned = new Set<string>();
  const warnOnce = (event: string, fields: Record<string, unknown>, text: string): void => {
    if (warned.has(event)) return;
    warned.add(event);
    log('warn', event, fields);
    if (!o.jsonLog && !o.quiet)
      process.stderr.write(`${tty ? '\r\x1b[2K' : ''}roamlink: ${text}\n`);
  };
  const secureUrl = isSecureUrl(relayUrl);
  let tunnel: TunnelClient;
  try {
    tunnel = await TunnelClient.start({
      relay,
      ...(relayTcp ? { relayTcp } : {}),
      ...(relayHttp ? { relayHttp } : {}),
      ...(relayUrl ? { relayUrl } : {}),
      ...(tls ? { tls } : {}),
      relayKey,
      keypair,
      provider: crypto.provider,
      suites: only === undefined ? crypto.suites : [only],
      enabled: Object.fromEntries([...disabled].map((k) => [k, false])),
      ...(o.rekeyAfterMs ? { rekeyAfterMs: o.rekeyAfterMs } : {}),
      ...(o.outageMs ? { outageMs: o.outageMs } : {}),
      ...(o.keepaliveMs ? { keepaliveMs: o.keepaliveMs } : {}),
      ...(o.proxy !== undefined ? { proxy: o.proxy } : {}),
      ...(proxyTls ? { proxyTls } : {}),
      ...(proxyPac ? { proxyPac } : {}),
      ...(proxyUser ? { proxyUser } : {}),
      ...(o.httpUpstream === false ? { httpUpstream: false } : {}),
      ...(writeKey ? { keyLog: writeKey } : {}),
      onSessionEvent,
      onMuxEvent,
      onLog: (msg, fields) => {
        lastEvent = msg;
        const kind = fields?.kind;
        if ((msg === 'dial-failed' || msg === 'transport-lost') && typeof kind === 'string') {
          const why = String(fields?.error ?? fields?.reason ?? msg);
          failures.set(kind, why);
          const code = tlsTrustErrorIn(why);
          const notTls = notTlsErrorIn(why);
          if (why.includes(ProxyErrorCode.TLS)) {
            // The proxy's TLS, not the relay's: its own flags fix it.
            const fix =
              code !== undefined
                ? `its certificate is not trusted (${code}). Trust its CA with --proxy-ca FILE, ` +
                  'or skip the check with --proxy-insecure.'
                : notTls !== undefined
                  ? 'it does not answer in TLS: if it is a plain HTTP proxy, give it as http://.'
                  : `the handshake failed (${why}).`;
            warnOnce('proxy-tls-failed', { kind, code }, `${kind}: the https:// proxy: ${fix}`);
          } else if (why.includes(ProxyErrorCode.AUTH_REQUIRED) || / 407 /.test(why)) {
            // Retrying cannot fix credentials: said once, at once, with what the proxy wants.
            const m = /\(([^;()]*); proxy offers: ([^)]*)\)/.exec(why);
            const offers = m ? ` (it offers ${m[2]})` : '';
            const text =
              m?.[1] === 'no credentials sent'
                ? `the proxy asks for credentials${offers}: give them in its URL, ` +
                  'http://user:password@host:port in --proxy or $HTTPS_PROXY (a domain user as ' +
                  'DOMAIN%5Cuser).'
                : m?.[1] === 'credentials rejected'
                  ? `the proxy rejected the credentials${offers}.`
                  : `the proxy refused authentication (${m?.[1] ?? why})${offers}.`;
            warnOnce('proxy-auth-failed', { kind, reason: m?.[1] ?? null }, `${kind}: ${text}`);
          } else if (code !== undefined) {
            warnOnce(
              'tls-untrusted',
              { kind, code },
              `${kind}: the relay's TLS certificate is not trusted (${code}). Trust its CA with ` +
                '--tls-ca FILE, or skip the check with --tls-insecure (the session still ' +
                'authenticates the relay by --relay-key).',
            );
          } else if (secureUrl && (kind === 'ws' || kind === 'http') && notTls !== undefined) {
            // A TLS handshake answered by something else: OpenSSL's "wrong version number" (EPROTO
            // here, over WebSocket and HTTP alike); the codes are the list the proxy's hint uses.
            warnOnce(
              'tls-not-spoken',
              { kind },
              `${kind}: the relay's HTTP port does not answer in TLS (${notTls}): if ` +
                `it serves plain HTTP, give it as ${relayUrl!.replace(/^https:/, 'http:')}.`,
            );
          }
        }
        log('info', msg, fields);
      },
    });
  } catch (e) {
    process.stderr.write(`roamlink: cannot reach the relay at ${o.relay}: ${e}\n`);
    return EXIT.UNREACHABLE;
  }

  const closers: (() => Promise<void>)[] = [];
  if (socksAt) {
    const s = await startSocksServer({
      host: socksAt.address,
      port: socksAt.port,
      dialer: tunnel.dialer,
    });
    closers.push(() => s.close());
    // [v6]:port, as curl and browsers take it.
    const address = formatEndpoint(s.address.host, s.address.port);
    log('info', 'socks-listening', { address });
    if (!o.jsonLog && !o.quiet) process.stderr.write(`SOCKS5 on ${address}\n`);
  }
  for (const [i, spec] of forwards.entries()) {
    const f = await startForward({ spec, dialer: tunnel.dialer });
    closers.push(() => f.close());
    log('info', 'forward-listening', {
      spec: o.forwards[i],
      address: formatEndpoint(f.address.host, f.address.port),
    });
  }

  // Interfaces that change under us are a move (Wi-Fi to cellular shows as an address change).
  const addrs = (): string =>
    Object.values(networkInterfaces())
      .flat()
      .map((i) => i?.address)
      .sort()
      .join(',');
  let knownAddrs = addrs();
  const watch = setInterval(() => {
    const now = addrs();
    if (now !== knownAddrs) {
      knownAddrs = now;
      log('info', 'interfaces-changed', {});
      tunnel.networkChanged();
    }
  }, 1000);
  watch.unref();

  if (o.control) {
    createInterface({ input: process.stdin }).on('line', (line) => {
      const [cmd, arg] = line.trim().split(/\s+/);
      const kind = arg as TransportKind;
      if (cmd === 'drop' && TRANSPORT_KINDS.includes(kind)) tunnel.drop(kind);
      else if (cmd === 'disable' && TRANSPORT_KINDS.includes(kind)) tunnel.setEnabled(kind, false);
      else if (cmd === 'enable' && TRANSPORT_KINDS.includes(kind)) tunnel.setEnabled(kind, true);
      else if (cmd === 'only' && TRANSPORT_KINDS.includes(kind)) {
        for (const k of TRANSPORT_KINDS) if (k !== kind) tunnel.setEnabled(k, false);
        tunnel.setEnabled(kind, true);
      } else if (cmd === 'network-changed') {
        // As when the interfaces change (below): every transport again, now.
        tunnel.networkChanged('network-changed');
      } else if (cmd === 'all') {
        for (const k of TRANSPORT_KINDS) if (!o.disabled.includes(k)) tunnel.setEnabled(k, true);
      } else if (cmd === 'status') {
        process.stdout.write(`${JSON.stringify({ status: summary() })}\n`);
        return;
      }
      log('info', 'control', { line });
    });
  }

  let prevBytes = 0;
  let prevAt = performance.now();
  let rate = 0;
  const masking = wsMasking();
  const summary = (): Record<string, unknown> => {
    const st = tunnel.status();
    const m = tunnel.host.mux.stats;
    return {
      ...st,
      suite: suites?.suite ?? null,
      smallSuite: suites?.smallSuite ?? null,
      handshakes: tunnel.session.stats.handshakes,
      rekeys: tunnel.session.stats.rekeys,
      registrations: tunnel.session.stats.registrations,
      moves: tunnel.moves,
      relayRestarts: tunnel.relayRestarts,
      retransmittedBytes: m.streamBytesRetransmitted,
      packetsLost: m.packetsLost,
      espDrops: tunnel.session.stats.espDrops,
      wsMasking: masking,
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
    };
  };
  // A relay that never answers looks, from here, like a session still handshaking: say so once,
  // with what each transport saw, instead of a status line that waits in silence (or nothing at
  // all without a terminal). Retries go on (with backoff); a late success is reported too.
  const notice = setTimeout(() => {
    if (tunnel.session.stats.handshakes > 0) return;
    unanswered = true;
    const seen = TRANSPORT_KINDS.filter((k) => tunnel.enabled[k]).map((k) => {
      const f = failures.get(k);
      // A proxy's failure is told in full: its code alone would not say it was the proxy's.
      const code =
        f === undefined || f.includes('ROAMLINK_ERR_PROXY_')
          ? undefined
          : (tlsTrustErrorIn(f) ?? /\bE[A-Z]{3,}\b/.exec(f)?.[0]);
      return `${k}: ${f === undefined ? 'no answer' : (code ?? f)}`;
    });
    // Plain requests to a port that serves TLS: the relay resets them. Only a guess (a firewall
    // resets too), so it is a hint in the notice, not a warning of its own.
    const reset = ['ws', 'http'].some((k) => /\bECONNRESET\b/.test(failures.get(k) ?? ''));
    const hint =
      relayUrl !== undefined && !secureUrl && reset
        ? ` If the relay serves TLS on that port (--tls-cert), give it as ${relayUrl.replace(/^http:/, 'https:')}.`
        : '';
    log('warn', 'relay-unanswered', { afterMs: UNANSWERED_NOTICE_MS, transports: seen });
    if (!o.jsonLog && !o.quiet) {
      process.stderr.write(
        `${tty ? '\r\x1b[2K' : ''}roamlink: no session with the relay at ${o.relay} after ` +
          `${UNANSWERED_NOTICE_MS / 1000} s (${seen.join(', ')}); still trying. Check the ` +
          `address, --relay-key, and that the relay allows this client's key ` +
          `${toHex(keypair.publicKey)}.${hint}\n`,
      );
    }
  }, UNANSWERED_NOTICE_MS);
  notice.unref();

  const fmtRate = (bps: number): string =>
    bps > 1e6 ? `${(bps / 1e6).toFixed(1)} MB/s` : `${(bps / 1e3).toFixed(1)} kB/s`;
  // Streams beyond the relay's stream limit wait, silently as far as the application can tell:
  // said when they start to wait (on stderr at most every 30 s) and when none waits any more.
  let waiting = 0;
  let waitSaidAt = Number.NEGATIVE_INFINITY;
  const status = setInterval(() => {
    const st = tunnel.status();
    const now = performance.now();
    const bytes = st.bytesSent + st.bytesReceived;
    rate = ((bytes - prevBytes) * 1000) / Math.max(1, now - prevAt);
    prevBytes = bytes;
    prevAt = now;
    if (st.streamsWaiting > 0 !== waiting > 0) {
      const fields = { waiting: st.streamsWaiting, limit: st.streamLimit };
      if (st.streamsWaiting > 0) {
        log('warn', 'streams-waiting', fields);
        if (!o.jsonLog && !o.quiet && now - waitSaidAt > 30_000) {
          waitSaidAt = now;
          process.stderr.write(
            `${tty ? '\r\x1b[2K' : ''}roamlink: ${st.streamsWaiting} new connection(s) wait: ` +
              `the relay allows ${st.streamLimit} open streams per session ` +
              '(its --max-streams-per-session); each goes on when another closes.\n',
          );
        }
      } else {
        log('info', 'streams-waiting', fields);
      }
    }
    waiting = st.streamsWaiting;
    if (!tty) return;
    const line =
      `${st.state} | ${st.encapsulation ?? '-'}${st.tls ? '+tls' : ''}${st.httpUpstream === 'live' ? ' (up-stream)' : ''} | verdict ${st.verdict ?? '-'} | rtt ${st.rttMs ?? '-'} ms` +
      `${st.proxy ? ` | via ${st.proxy.href}${st.proxy.auth ? ` (${st.proxy.auth})` : ''}` : ''}` +
      ` | ${fmtRate(rate)} | streams ${st.streams}${st.streamsWaiting > 0 ? ` (${st.streamsWaiting} waiting)` : ''} | handovers ${st.handovers} | ${lastEvent}`;
    process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
  }, 500);

  return await new Promise<number>((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearInterval(status);
      clearInterval(watch);
      clearTimeout(notice);
      if (tty) process.stderr.write('\n');
      const s = summary();
      process.stdout.write(`${JSON.stringify({ summary: s })}\n`);
      // Judged now, as the summary is: a relay stopped by the same Ctrl-C (./dev run) says goodbye
      // while the client closes, and that is no failure of this session.
      const code =
        tunnel.session.state === 'established'
          ? EXIT.OK
          : // Never established at all: nothing answered (a dead port, a wrong key).
            tunnel.session.stats.handshakes === 0
            ? EXIT.UNREACHABLE
            : EXIT.FAILED;
      void Promise.all(closers.map((c) => c()))
        .then(() => tunnel.close())
        .then(() => resolve(code));
    };
    if (o.durationS > 0) setTimeout(finish, o.durationS * 1000);
    onStopSignal(finish);
  });
}

const DEFAULT_RELAY_PORT = 51820;
const RELAY_URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/** Whether the relay's HTTP face, as parseRelayUrl gave it, is in TLS. */
const isSecureUrl = (url: string | undefined): boolean => url?.startsWith('https:') === true;

/**
 * Whether a relay argument is meant as a URL (its HTTP face) rather than host[:port]: any
 * scheme, so that an unsupported one gets its own error.
 */
export function isRelayUrl(v: string): boolean {
  return RELAY_URL_SCHEME.test(v);
}

/**
 * A relay URL as the client uses it: ws and wss taken as http and https (one URL names both the
 * WebSocket and the HTTP paths), no credentials, query or fragment (the client builds its own
 * request targets), the path kept as the routes' prefix.
 */
export function parseRelayUrl(flag: string, v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new Error(`${flag}: "${v}" is not a URL`);
  }
  const scheme = { 'http:': 'http:', 'ws:': 'http:', 'https:': 'https:', 'wss:': 'https:' }[
    u.protocol
  ];
  if (scheme === undefined)
    throw new Error(`${flag}: scheme ${u.protocol} is not http(s) or ws(s)`);
  if (u.username !== '' || u.password !== '')
    throw new Error(`${flag}: a relay URL takes no credentials`);
  if (u.search !== '' || u.hash !== '')
    throw new Error(`${flag}: a relay URL takes no query or fragment`);
  const secure = scheme === 'https:';
  const port = u.port === '' || Number(u.port) === (secure ? 443 : 80) ? '' : `:${u.port}`;
  return `${scheme}//${u.hostname}${port}${u.pathname.replace(/\/+$/, '')}`;
}

/**
 * Whether an https:// proxy is configured: `--proxy`'s, else the first proxy variable set (a
 * malformed one counts as none: it fails the paths with its own error).
 */
function httpsProxyConfigured(proxy: string | false | undefined): boolean {
  if (proxy === false) return false;
  const name = proxyEnvVar();
  const text = proxy ?? (name === undefined ? undefined : process.env[name]);
  if (!text) return false;
  try {
    return parseProxyUrl(text).secure;
  } catch {
    return false;
  }
}

/** The TLS settings the flags give: CA files read and checked now (a bad one is a usage error). */
function tlsFrom(
  flag: string,
  files: readonly string[] | undefined,
  insecure: boolean | undefined,
): RelayTls | undefined {
  const ca = (files ?? []).map((file) => {
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`${flag}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
    try {
      new X509Certificate(pem);
    } catch {
      throw new Error(`${flag}: ${file} holds no PEM certificate`);
    }
    return pem;
  });
  if (ca.length === 0 && !insecure) return undefined;
  return { ...(ca.length > 0 ? { ca } : {}), ...(insecure ? { verify: false } : {}) };
}
