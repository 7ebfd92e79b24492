/**
 * `roamlink relay` (and `node apps/relay/src/main.ts`): the relay's configuration from flags,
 * environment and a config file (config.ts; `--help` lists every setting), its identity from the
 * data directory (created on first run; the public key is printed for clients), then startRelay.
 *
 * Logs are JSON lines (or human lines on a terminal) on stdout; the first is `listening`, with the
 * addresses, the public key and the crypto chosen. SIGINT/SIGTERM shut down gracefully: clients
 * hear GOAWAY and streams get `--shutdown-grace-ms` to finish.
 *
 * `--control` (for tests and demos) reads lines on stdin: `udp off` closes the UDP listener (UDP
 * blocked, as a firewall would), `udp on` opens it again on the same port.
 */
import { X509Certificate } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { StreamTarget } from '@roamlink/core';
import { ENCAPSULATION_NAMES, StreamError, SUITE_NAMES, toHex } from '@roamlink/core';
import {
  BULK_PACKET_BYTES,
  keyLogWriter,
  SMALL_MEASURE_BYTES,
  selectProvider,
} from '@roamlink/crypto-node';
import { onStopSignal, tuneHeapForTunnel, wsMasking } from '@roamlink/node';
import { clientCommand } from './client-command.ts';
import {
  ConfigError,
  egressPolicyOf,
  encapsulationCodes,
  formatEndpoint,
  loadConfig,
  loadOrCreateIdentity,
  type RelayConfig,
  readPskFile,
  readTlsFiles,
} from './config.ts';
import { createLogger, type Logger } from './log.ts';
import { Registry, relayMetrics, VERDICT_LABELS } from './metrics.ts';
import { type EgressAnswer, startRelay } from './relay.ts';
import { StatusRecorder } from './status.ts';
import { loadStatusAssets, sampleTunnels } from './status-node.ts';

/** A refused client key is logged at most this often. */
const REFUSED_LOG_INTERVAL_MS = 60_000;
/** Refused keys remembered for that; beyond this many the memory starts over. */
const REFUSED_KEYS_MAX = 1024;

/**
 * The relay's crypto measurement at startup, against a client's 30 ms: the relay's order picks
 * the suite of every session it serves (chooseSuite), so it times each contender over some
 * hundred 60 000-byte packets, not a few dozen.
 */
const RELAY_MEASURE_MS = 100;

/** Runs the relay until a signal; resolves with the exit code. */
export async function runRelay(argv: readonly string[]): Promise<number> {
  tuneHeapForTunnel();
  const control = argv.includes('--control');
  let loaded: ReturnType<typeof loadConfig>;
  try {
    loaded = loadConfig({ argv: argv.filter((a) => a !== '--control') });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`roamlink relay: ${e.message}\n`);
      return e.exitCode;
    }
    throw e;
  }
  if (loaded.help) {
    process.stdout.write(
      `${loaded.text}\n  --control  read "udp off" / "udp on" lines on stdin (tests)\n`,
    );
    return 0;
  }
  const c = loaded.config;
  const log = createLogger({ level: c.logLevel, format: c.logFormat, out: process.stdout });
  let psk: Uint8Array | undefined;
  let tls: ReturnType<typeof readTlsFiles>;
  try {
    psk = c.pskFile ? readPskFile(c.pskFile) : undefined;
    tls = readTlsFiles(c);
  } catch (e) {
    process.stderr.write(`roamlink relay: ${(e as Error).message}\n`);
    return 2;
  }
  const { keypair, created } = loadOrCreateIdentity(c.dataDir);
  const allowed = c.allowClients === 'any' ? undefined : new Set(c.allowClients);
  // The client gets silence (no oracle for who is allowed); the operator gets the key, which
  // Noise IK's message 1 authenticates, once a minute per key at most.
  const refusedAt = new Map<string, number>();
  const refused = (key: string, reason: string): void => {
    const now = Date.now();
    if (now - (refusedAt.get(key) ?? Number.NEGATIVE_INFINITY) < REFUSED_LOG_INTERVAL_MS) return;
    if (refusedAt.size >= REFUSED_KEYS_MAX) refusedAt.clear();
    refusedAt.set(key, now);
    log.warn('client-refused', { publicKey: key, reason });
  };
  // Measured at the stream layer's packet size (tens of KB on every path but a small-MTU UDP
  // one): there AES-GCM with AES-NI outruns ChaCha20 where at 1400 bytes it does not.
  const crypto = selectProvider({
    packetBytes: BULK_PACKET_BYTES,
    smallPacketBytes: SMALL_MEASURE_BYTES,
    budgetMs: RELAY_MEASURE_MS,
  });
  const writeKey = keyLogWriter();
  const policy = egressPolicyOf(c);
  const registry = new Registry();
  let sessionsNow = (): number => 0;
  const status = c.statusPage
    ? new StatusRecorder({ now: Date.now, encapsulations: encapsulationCodes(c) })
    : undefined;
  let forgottenNow = (): number => 0;
  let heldNow = (): { fromClients: number; toClients: number } => ({
    fromClients: 0,
    toClients: 0,
  });
  const metrics = relayMetrics(registry, {
    sessions: () => sessionsNow(),
    forgotten: () => forgottenNow(),
    held: () => heldNow(),
  });

  // Bound series for the per-datagram byte counters: no label lookup on the hot path.
  const bytesIn = Object.fromEntries(
    Object.entries(ENCAPSULATION_NAMES).map(([code, name]) => [
      code,
      metrics.receivedBytes.labels({ encapsulation: name }),
    ]),
  );
  const bytesOut = Object.fromEntries(
    Object.entries(ENCAPSULATION_NAMES).map(([code, name]) => [
      code,
      metrics.sentBytes.labels({ encapsulation: name }),
    ]),
  );
  const egress = async (t: StreamTarget): Promise<EgressAnswer> => {
    const r = await policy.resolveAndCheck(t.host, t.port, lookup);
    if (r.ok) return { address: r.address };
    return { refused: r.code === 'dns' ? StreamError.DNS : StreamError.POLICY, reason: r.reason };
  };

  const udpOn = c.encapsulations.includes('udp');
  const tcpOn = c.encapsulations.includes('tcp');
  const httpOn = c.encapsulations.some((e) => e !== 'udp' && e !== 'tcp');
  const relay = await startRelay({
    keypair,
    provider: crypto.provider,
    suites: crypto.suites,
    udp: udpOn ? c.udpListen : undefined,
    tcp: tcpOn ? c.tcpListen : undefined,
    http: httpOn ? c.httpListen : undefined,
    tls,
    encapsulations: encapsulationCodes(c),
    authorize: (k) => {
      const key = toHex(k);
      if (allowed && !allowed.has(key)) {
        refused(key, 'not on the allow-list');
        return { allowed: false };
      }
      if (sessionsNow() >= c.maxSessions) {
        refused(key, `--max-sessions (${c.maxSessions}) reached`);
        return { allowed: false };
      }
      return psk ? { allowed: true, psk } : { allowed: true };
    },
    egress,
    ...(c.rekeyAfterMs ? { rekeyAfterMs: c.rekeyAfterMs } : {}),
    ...(writeKey ? { keyLog: writeKey } : {}),
    outageMs: c.outageMs,
    peerIdleMs: c.peerIdleMs,
    flowIdleMs: c.flowIdleMs,
    handshakeRate: c.handshakeRate,
    maxStreams: c.maxStreamsPerSession,
    log: (level, msg, fields) => log[level](msg, fields),
    app: {
      ...(c.metrics ? { metrics: () => registry.render() } : {}),
      ...(status ? { status: { recorder: status, assets: loadStatusAssets() } } : {}),
    },
    onBytes: (direction, encapsulation, n) => {
      (direction === 'in' ? bytesIn : bytesOut)[encapsulation]?.inc(n);
    },
    onRtt: (encapsulation, ms) => metrics.observeRttMs(ENCAPSULATION_NAMES[encapsulation], ms),
    observe: (e) => {
      status?.observe(e);
      switch (e.type) {
        // The relay's own event for a path that registered ('registered' is the client's: these
        // counters stayed at 0 while they listened for it).
        case 'registration-answered':
          metrics.registrations.inc({ encapsulation: ENCAPSULATION_NAMES[e.encapsulation] });
          metrics.verdicts.inc({ verdict: VERDICT_LABELS[e.verdict] });
          break;
        case 'path-changed':
          metrics.handovers.inc({ cause: e.reason });
          break;
        case 'stream-open':
          metrics.streamsOpened.inc({ protocol: 'tcp' });
          break;
        case 'stream-refused':
          metrics.streamsRefused.inc({ protocol: 'tcp', code: String(e.code) });
          break;
      }
    },
  });
  sessionsNow = () => relay.sessions.peers.size;
  forgottenNow = () => relay.sessions.peersForgotten;
  heldNow = () => {
    const h = { fromClients: 0, toClients: 0 };
    for (const t of relay.tunnels()) {
      h.fromClients += t.stats.heldReceived;
      h.toClients += t.stats.heldToSend;
    }
    return h;
  };
  if (status) {
    const at = (e: typeof relay.udp): string | null => (e ? formatEndpoint(e) : null);
    status.setRelay({
      publicKey: relay.publicKey,
      udp: at(relay.udp),
      tcp: at(relay.tcp),
      http: at(relay.http),
    });
    sampleTunnels(status, relay);
  }
  registry.onCollect(() => metrics.syncStats(relay.sessions.stats));

  const scheme = tls ? 'https' : 'http';
  // Always written, whatever the level: tools and tests read the addresses and key from it.
  createLogger({ level: 'info', format: c.logFormat, out: process.stdout }).info('listening', {
    udp: relay.udp ? formatEndpoint(relay.udp) : null,
    tcp: relay.tcp ? formatEndpoint(relay.tcp) : null,
    http: relay.http ? formatEndpoint(relay.http) : null,
    publicKey: relay.publicKey,
    keyCreated: created,
    dataDir: c.dataDir,
    crypto: crypto.provider.name,
    suites: crypto.suites,
    suitesOrderedBy: crypto.bulkOrderBy,
    // What the startup measurement saw (MB/s of seal + open): it picks each suite's backend, and
    // orders the suites where the CPU does not.
    cryptoMeasured: crypto.measurements.map((m) => ({
      provider: m.provider,
      suite: SUITE_NAMES[m.suite],
      bytes: m.packetBytes,
      MBps: Math.round(m.mbPerSec),
      ops: m.ops,
      ...(m.screenedOut ? { screenedOut: true } : {}),
    })),
    wsMasking: wsMasking(),
    allowed: allowed ? allowed.size : 'any',
    metrics: c.metrics,
    tls: tls !== undefined,
    ...(tls ? { tlsNotAfter: certNotAfter(tls.cert) } : {}),
    status: status && relay.http ? `${scheme}://${formatEndpoint(relay.http)}/status` : null,
    // What a client runs (RELAY-HOST where the relay listens on every address).
    connect: clientCommand({
      udp: relay.udp,
      tcp: relay.tcp,
      http: relay.http,
      publicKey: relay.publicKey,
      tls: tls !== undefined,
    }),
  });
  if (allowed && allowed.size === 0) {
    // Secure by default, but silent by design towards clients (no oracle): say it here instead,
    // or an operator sees every client time out and nothing in the log.
    log.warn('no-client-allowed', {
      hint: 'every handshake is dropped unanswered: add --allow-client <key> (the client prints its key on start and in `roamlink keygen`), or --allow-client any',
    });
  }

  if (tls) watchTls(c, (next) => relay.setTls(next), log);

  if (control) {
    createInterface({ input: process.stdin }).on('line', (line) => {
      const cmd = line.trim();
      if (cmd === 'udp off') void relay.setUdp(false);
      else if (cmd === 'udp on') void relay.setUdp(true);
    });
  }

  return await new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (): void => {
      if (stopping) return;
      stopping = true;
      log.info('shutdown', { graceMs: c.shutdownGraceMs, stats: relay.sessions.stats });
      void relay.close(c.shutdownGraceMs).then(() => resolve(0));
    };
    onStopSignal(shutdown);
  });
}

if (import.meta.main) {
  runRelay(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`roamlink relay: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}

/** How often the relay looks at its certificate files for a renewal (two stat calls). */
export const TLS_CHECK_MS = 60_000;

/** The expiry of the first certificate in a PEM chain, as an ISO date. */
function certNotAfter(pem: Buffer): string {
  return new Date(new X509Certificate(pem).validTo).toISOString();
}

/**
 * A renewed certificate (certbot and the like replace the files every 60-90 days) is taken up
 * without a restart: on SIGHUP, and when either file's modification time changed since the last
 * look (every `intervalMs`, default once a minute). A pair that does not load (a half-written
 * renewal, a key that is not the certificate's) is logged and the one in use kept; the next
 * change or SIGHUP tries again. Returns a function that stops watching.
 */
export function watchTls(
  c: Pick<RelayConfig, 'tlsCert' | 'tlsKey'>,
  apply: (tls: { cert: Buffer; key: Buffer }) => void,
  log: Logger,
  intervalMs = TLS_CHECK_MS,
): () => void {
  const stamp = (): string => {
    try {
      return [c.tlsCert!, c.tlsKey!].map((f) => statSync(f).mtimeMs).join('/');
    } catch (e) {
      return `missing: ${(e as NodeJS.ErrnoException).code ?? e}`;
    }
  };
  let seen = stamp();
  const reload = (why: string): void => {
    seen = stamp();
    try {
      const next = readTlsFiles(c)!;
      apply(next);
      log.info('tls-reloaded', { why, notAfter: certNotAfter(next.cert) });
    } catch (e) {
      log.error('tls-reload-failed', {
        why,
        error: (e as Error).message,
        kept: 'the current certificate',
      });
    }
  };
  const onHup = (): void => reload('SIGHUP');
  process.on('SIGHUP', onHup);
  const timer = setInterval(() => {
    if (stamp() !== seen) reload('files changed');
  }, intervalMs);
  timer.unref();
  return () => {
    process.off('SIGHUP', onHup);
    clearInterval(timer);
  };
}
