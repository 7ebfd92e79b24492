/**
 * Picks the fastest available backend for each AEAD suite by measuring, not by guessing: which of
 * libsodium, OpenSSL and noble wins depends on the CPU (AES-NI, SIMD), the Node build and the
 * packet size. A short micro-benchmark at startup (about 30 ms by default, warm-up included) seals
 * and opens ESP-sized packets with every (provider, suite) pair available in this process.
 *
 * The result is a composite provider that routes each suite to its fastest backend, plus the
 * suites ordered fastest first: that order is what a peer offers in its handshake, so both ends
 * prefer the suite this machine runs best. For bulk packets, where OpenSSL runs AES-GCM, the
 * CPU's AES instructions (present or not, `cpuAesGcm`) decide that order instead of the timing.
 * All backends produce identical bytes (the shared provider test suite proves it), so the choice
 * never affects interoperability.
 */

import { readFileSync } from 'node:fs';
import {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  type Aead,
  type CryptoProvider,
  ErrorCode,
  equalBytes,
  fromHex,
  nobleProvider,
  nobleX25519,
  RoamlinkError,
  requireSuite,
  SMALL_PACKET_BYTES,
  STREAM_PATH_PAYLOAD,
  SUITE_NAMES,
  Suite,
  type X25519,
} from '@roamlink/core';
import { nodeCryptoProvider } from './node-crypto.ts';
import { sodiumProvider } from './sodium.ts';

/** Every provider this package knows, in no particular order. */
export const ALL_PROVIDERS: readonly CryptoProvider[] = [
  sodiumProvider,
  nodeCryptoProvider,
  nobleProvider,
];

export interface MeasureOptions {
  /** Plaintext bytes per packet; default 1400 (a typical tunnelled MTU-sized packet). */
  readonly packetBytes?: number;
  /** Total time to spend measuring, split evenly across all pairs; default 30 ms. */
  readonly budgetMs?: number;
  /** Providers to measure; default `ALL_PROVIDERS`. */
  readonly providers?: readonly CryptoProvider[];
  /** Monotonic clock in milliseconds; default `performance.now`. */
  readonly now?: () => number;
  /**
   * `selectProvider` only: also measure at this small size (within `smallBudgetMs`), route
   * payloads under SMALL_PACKET_BYTES of each suite to the backend fastest there, and order
   * `smallSuites` by it, for the small-packet SA (docs/PROTOCOL.md §3.7). Default: not measured.
   */
  readonly smallPacketBytes?: number;
  /** Budget of the small-packet measurement; default 10 ms. */
  readonly smallBudgetMs?: number;
  /**
   * `selectProvider` only: whether OpenSSL runs AES-GCM on this CPU's AES instructions, which
   * decides the bulk order when AES-GCM's backend is one that uses them (`cpuAes`, node:crypto;
   * null: unknown, the measurement decides). Default: `cpuAesGcm()`.
   */
  readonly aesHardware?: boolean | null;
}

export interface ProviderMeasurement {
  /** The measured provider's `name`. */
  readonly provider: string;
  readonly suite: Suite;
  /** Plaintext bytes per packet of this measurement. */
  readonly packetBytes: number;
  /** Seal + open round trips timed, over all slices (warm-up not included). */
  readonly ops: number;
  /** Time spent in the timed slices. */
  readonly elapsedMs: number;
  /**
   * Plaintext throughput of seal + open round trips in megabytes (10^6 bytes) per second, from
   * the pair's fastest slice; for a pair screened out, from the quicker of its two screening
   * round trips (the one `ops` and `elapsedMs` then count).
   */
  readonly mbPerSec: number;
  /**
   * Left out after its round trips at the screening size (at most SCREEN_BYTES): so far behind
   * another backend of its suite that it was never timed at the measured size.
   */
  readonly screenedOut?: true;
}

export interface ProviderSelection {
  /** Routes each suite in `suites` to the provider that measured fastest for it. */
  readonly provider: CryptoProvider;
  /**
   * Suites available here, fastest first (AES-GCM with AES_GCM_BULK_ALLOWANCE): the handshake
   * offer order.
   */
  readonly suites: Suite[];
  /** With `smallPacketBytes`: the suites fastest first at that size. */
  readonly smallSuites?: Suite[];
  /**
   * What ordered `suites`: the CPU's AES instructions, present or not (`cpu`), or the measurement
   * with AES_GCM_BULK_ALLOWANCE (`measurement`: an unknown CPU, or AES-GCM on a backend that
   * does not use them).
   */
  readonly bulkOrderBy: 'cpu' | 'measurement';
  /** Every measurement taken, in measurement order. */
  readonly measurements: ProviderMeasurement[];
}

const DEFAULT_PACKET_BYTES = 1400;
/**
 * The size the tunnel apps measure at: the stream layer's packets on TCP, WebSocket, HTTP and
 * MTU-probed UDP paths (STREAM_PATH_PAYLOAD), where bulk traffic spends its crypto time. At
 * 16 KiB node:crypto's per-call cost made AES-GCM and libsodium's ChaCha20 a coin toss here
 * (measured 50/50 over relay starts); at 60 000 bytes AES-GCM with AES-NI leads by 2x.
 */
export const BULK_PACKET_BYTES = STREAM_PATH_PAYLOAD;
/**
 * The size the apps measure small packets at: an ACK or a small request with headers. The
 * small-packet ranking is per-call cost, which this size shows and 1400 bytes already blurs.
 */
export const SMALL_MEASURE_BYTES = 256;
const DEFAULT_BUDGET_MS = 30;
/**
 * Each pair is timed in this many short slices, interleaved with the other pairs; a pair's score
 * is its best slice. Noise on a shared machine (GC pauses, other processes, timer jitter) only
 * ever slows a slice down, so the best slice is the most faithful estimate of what the backend
 * can do, and a single unlucky pause cannot flip the ranking.
 */
const SLICES = 4;
/**
 * Round trips run before timing starts, so that lazy initialisation and the JIT are not timed;
 * capped at this share of the budget, since a cold pure-JS backend can take a millisecond each.
 */
const WARMUP_OPS = 8;
/** A pair this many times slower than the best of its suite after a slice is measured no more. */
const OUT_OF_RUNNING = 4;
/**
 * Every pair first seals and opens two packets of this size (or of the measured size, if
 * smaller), and a pair SCREEN_OUT times slower than the best of its suite there (the quicker of
 * its two against the quickest) is not measured further.
 * Pure JS beside native code is 50-100x slower per byte: one 60 000-byte round trip costs noble
 * about 11 ms. Without the screen, noble's two pairs spent the whole 30 ms budget on their warm-up
 * and first passes, and the native contenders were timed over five packets each.
 */
const SCREEN_BYTES = 8192;
/**
 * Wide, because the screening round trips are every backend's first at that size, cold: a native
 * backend's first calls can be several times slower than its next, pure JS's many times.
 */
const SCREEN_OUT = 16;
const WARMUP_SHARE = 0.25;

interface Bench {
  readonly provider: CryptoProvider;
  readonly suite: Suite;
  readonly aead: Aead;
  readonly buf: Uint8Array;
  readonly nonce: Uint8Array;
  readonly aad: Uint8Array;
  ops: number;
  elapsedMs: number;
  bestMbPerSec: number;
  failed: boolean;
  /** Measured enough: far behind another backend of its suite. */
  settled: boolean;
  /** The quicker screening round trip's time, and whether the screen put the pair out. */
  screenMs: number;
  screenedOut: boolean;
}

/**
 * One seal + open round trip; the nonce changes per packet as it would on the wire. The open is
 * the receive path's (esp.ts): `openOut` where the backend has it, which leaves the plaintext
 * where the backend made it instead of copying it back.
 */
function roundTrip(b: Bench, packetBytes: number, counter: number): boolean {
  b.nonce[11] = counter;
  b.nonce[10] = counter >>> 8;
  try {
    const aead = b.aead;
    aead.seal(b.nonce, b.aad, b.buf, 0, packetBytes);
    return aead.openOut
      ? aead.openOut(b.nonce, b.aad, b.buf, 0, packetBytes) !== undefined
      : aead.open(b.nonce, b.aad, b.buf, 0, packetBytes);
  } catch {
    return false;
  }
}

/**
 * Builds the pair's AEAD and times two round trips at `screenBytes`, which are also the check
 * that the pair works.
 */
function prepare(
  provider: CryptoProvider,
  suite: Suite,
  packetBytes: number,
  screenBytes: number,
  now: () => number,
): Bench | undefined {
  try {
    const key = new Uint8Array(AEAD_KEY_BYTES).map((_, i) => i * 7 + 1);
    const b: Bench = {
      provider,
      suite,
      aead: provider.aead(suite, key),
      buf: new Uint8Array(packetBytes + AEAD_TAG_BYTES).map((_, i) => i),
      nonce: new Uint8Array(AEAD_NONCE_BYTES),
      aad: new Uint8Array(8).fill(0x5a),
      ops: 0,
      elapsedMs: 0,
      bestMbPerSec: 0,
      failed: false,
      settled: false,
      screenMs: Number.POSITIVE_INFINITY,
      screenedOut: false,
    };
    // Two, and the quicker counts: a pause (GC, a cold first call) in one must not put the best
    // backend of a suite out.
    for (let i = 0; i < 2; i++) {
      const t0 = now();
      if (!roundTrip(b, screenBytes, i)) return undefined;
      b.screenMs = Math.min(b.screenMs, now() - t0);
    }
    return b;
  } catch {
    // A backend that cannot even build or round-trip (say, a native binding that failed to load
    // its library) is simply not a candidate.
    return undefined;
  }
}

/**
 * Measures seal + open throughput of every (provider, suite) pair available here. Pairs that fail
 * to construct or to round-trip are left out.
 */
export function measureProviders(opts: MeasureOptions = {}): ProviderMeasurement[] {
  return measure(opts).map((r) => r.measurement);
}

interface Result {
  readonly provider: CryptoProvider;
  readonly measurement: ProviderMeasurement;
}

function measure(opts: MeasureOptions): Result[] {
  const packetBytes = opts.packetBytes ?? DEFAULT_PACKET_BYTES;
  const budgetMs = opts.budgetMs ?? DEFAULT_BUDGET_MS;
  const now = opts.now ?? (() => performance.now());
  if (!Number.isSafeInteger(packetBytes) || packetBytes < 0) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'packetBytes must be an integer >= 0');
  }
  if (!(budgetMs > 0)) {
    throw new RoamlinkError(ErrorCode.INVALID_ARGUMENT, 'budgetMs must be > 0');
  }

  // The budget covers everything, warm-up included, so startup cost stays predictable.
  const deadline = now() + budgetMs;
  const candidates: [CryptoProvider, Suite][] = [];
  for (const provider of opts.providers ?? ALL_PROVIDERS) {
    for (const suite of provider.suites) candidates.push([provider, suite]);
  }
  if (candidates.length === 0) return [];
  const screenBytes = Math.min(packetBytes, SCREEN_BYTES);
  const benches: Bench[] = [];
  for (const [provider, suite] of candidates) {
    const b = prepare(provider, suite, packetBytes, screenBytes, now);
    if (b) benches.push(b);
  }
  const quickest = new Map<Suite, number>();
  for (const b of benches)
    quickest.set(b.suite, Math.min(quickest.get(b.suite) ?? b.screenMs, b.screenMs));
  for (const b of benches) {
    if (b.screenMs > quickest.get(b.suite)! * SCREEN_OUT) b.screenedOut = b.settled = true;
  }

  // Warm-up at the measured size, taking turns, so that lazy initialisation and the JIT are not
  // timed; at least one round trip each.
  const contenders = benches.filter((b) => !b.settled);
  const warmUntil = now() + Math.max(deadline - now(), 0) * WARMUP_SHARE;
  for (let i = 1; i <= WARMUP_OPS; i++) {
    for (const b of contenders) {
      if (!b.failed && !roundTrip(b, packetBytes, i)) b.failed = true;
    }
    if (now() >= warmUntil) break;
  }

  // Pass 0 times one round trip per pair, pass 1 a short slice: enough to put the hopeless ones
  // out of the running (two samples: a cold first packet can be slow for anyone) before the
  // other slices share out the budget.
  for (let slice = 0; slice <= SLICES; slice++) {
    // A pair already far behind another backend of its suite (pure JS beside a native one: a
    // 16 KiB packet takes it about a millisecond) is out of the running; its slices would leave
    // the contenders a handful of packets each, and the ranking to chance.
    if (slice > 1) {
      const best = new Map<Suite, number>();
      for (const b of benches) best.set(b.suite, Math.max(best.get(b.suite) ?? 0, b.bestMbPerSec));
      for (const b of benches) {
        if (b.bestMbPerSec * OUT_OF_RUNNING < best.get(b.suite)!) b.settled = true;
      }
    }
    const running = benches.filter((b) => !b.failed && !b.settled).length;
    // Recomputed every pass, so that an overrun (one cold packet can outlast a whole slice) is
    // absorbed by the passes that follow instead of adding up.
    const sliceMs =
      slice === 0
        ? 0
        : Math.max(deadline - now(), 0) / ((SLICES + 1 - slice) * Math.max(running, 1));
    for (const b of benches) {
      if (b.failed || b.settled) continue;
      const t0 = now();
      let t = t0;
      let ops = 0;
      // At least one round trip per slice, so that every pair gets a measurement.
      do {
        if (!roundTrip(b, packetBytes, b.ops + ops)) {
          b.failed = true;
          break;
        }
        ops++;
        t = now();
      } while (t - t0 < sliceMs);
      b.ops += ops;
      b.elapsedMs += t - t0;
      // A clock too coarse to see the slice at all counts as very fast, not as a division by 0.
      const mbPerSec = (ops * packetBytes) / (Math.max(t - t0, 1e-6) * 1000);
      if (mbPerSec > b.bestMbPerSec) b.bestMbPerSec = mbPerSec;
    }
  }

  return benches
    .filter((b) => !b.failed)
    .map((b) => ({
      provider: b.provider,
      measurement: b.screenedOut
        ? {
            provider: b.provider.name,
            suite: b.suite,
            packetBytes,
            ops: 1,
            elapsedMs: b.screenMs,
            mbPerSec: screenBytes / (Math.max(b.screenMs, 1e-6) * 1000),
            screenedOut: true,
          }
        : {
            provider: b.provider.name,
            suite: b.suite,
            packetBytes,
            ops: b.ops,
            elapsedMs: b.elapsedMs,
            mbPerSec: b.bestMbPerSec,
          },
    }));
}

/**
 * In the bulk order (not the small-packet one), where the CPU does not decide it (`cpuAesGcm`
 * unknown, or AES-GCM on a backend without `cpuAes`), AES-GCM's measured throughput counts this
 * many times over: the startup measurement cannot see what makes it the cheaper suite for a
 * download.
 * - At startup, node:crypto's AES-GCM and libsodium's ChaCha20 at 60 000 bytes measure within a
 *   factor of 1.7 of each other, either way round: a process a few hundred ms old runs
 *   node:crypto's per-call JavaScript and fresh output buffers at up to half the speed it reaches
 *   later (the same measurement repeated 200 ms on put AES-GCM 19-32% ahead).
 * - Over whole downloads, AES-GCM cost the client and the relay 11-14% less CPU and ran 6-11%
 *   faster, in eleven alternating pairs of tunnel starts over TCP and WebSocket
 *   (docs/ARCHITECTURE.md, "Performance"). Its AES-NI/PCLMUL code makes one pass over the data;
 *   ChaCha20 and Poly1305 make two.
 * - Without AES-NI, OpenSSL's AES-GCM measures 4.6-7.4x slower than ChaCha20 (measured with
 *   OPENSSL_ia32cap masking AES-NI), so ChaCha20 still leads there. The allowance sits between
 *   the two kinds of CPU (up to about 2 with AES-NI, under load; 4.6 and more without), where the
 *   bare measurement flipped between the suites from one start to the next.
 */
export const AES_GCM_BULK_ALLOWANCE = 3;

const bulkScore = (suite: Suite, mbPerSec: number): number =>
  suite === Suite.AES_256_GCM ? mbPerSec * AES_GCM_BULK_ALLOWANCE : mbPerSec;

/**
 * Whether OpenSSL (node:crypto) runs AES-GCM on this CPU's instructions for it, where that can be
 * known: on Linux, from /proc/cpuinfo (x86: `aes` and `pclmulqdq`; arm64: `aes` and `pmull`).
 * null where it cannot: another OS, a file that does not read, an architecture not listed, or
 * OPENSSL_ia32cap / OPENSSL_armcap set (they can hide those features from OpenSSL).
 */
export function cpuAesGcm(
  cpuinfo: string | null = readCpuinfo(),
  env: Readonly<Record<string, string | undefined>> = process.env,
): boolean | null {
  if (cpuinfo === null || env.OPENSSL_ia32cap !== undefined || env.OPENSSL_armcap !== undefined) {
    return null;
  }
  const x86 = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1];
  if (x86 !== undefined) return /\baes\b/.test(x86) && /\bpclmulqdq\b/.test(x86);
  const arm = /^Features\s*:(.*)$/m.exec(cpuinfo)?.[1];
  if (arm !== undefined) return /\baes\b/.test(arm) && /\bpmull\b/.test(arm);
  return null;
}

function readCpuinfo(): string | null {
  if (process.platform !== 'linux') return null;
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
}

/**
 * Measures every available (provider, suite) pair and returns a provider that uses the fastest
 * backend for each suite, with the suites ordered fastest first (AES-GCM with its
 * AES_GCM_BULK_ALLOWANCE).
 */
export function selectProvider(opts: MeasureOptions = {}): ProviderSelection {
  const results = measure(opts);
  const best = fastest(results);
  // Where OpenSSL runs AES-GCM and the CPU says whether it has the instructions for it, the CPU
  // orders the bulk suites, as TLS stacks order theirs: the startup measurement cannot tell the
  // two kinds of CPU apart reliably. In a young process each node:crypto call writes fresh
  // buffers (page faults the machine's other work can slow several-fold), and a relay started
  // among other busy processes measured AES-GCM at 111 MB/s against libsodium's 489, 4.4x, where
  // a CPU without AES-NI shows 4.6x and more; the next start measured 480 against 767.
  const aesHardware = opts.aesHardware !== undefined ? opts.aesHardware : cpuAesGcm();
  const byCpu = aesHardware !== null && best.get(Suite.AES_256_GCM)?.provider.cpuAes === true;
  const cpuRank = (s: Suite): number => ((s === Suite.AES_256_GCM) === aesHardware ? 0 : 1);
  const suites = [...best.entries()]
    .sort((a, b) =>
      byCpu
        ? cpuRank(a[0]) - cpuRank(b[0])
        : bulkScore(b[0], b[1].mbPerSec) - bulkScore(a[0], a[1].mbPerSec),
    )
    .map(([s]) => s);
  let small: Map<Suite, Fastest> | undefined;
  let smallSuites: Suite[] | undefined;
  const smallResults: Result[] = [];
  if (opts.smallPacketBytes !== undefined) {
    const { smallPacketBytes, smallBudgetMs, ...rest } = opts;
    smallResults.push(
      ...measure({ ...rest, packetBytes: smallPacketBytes, budgetMs: smallBudgetMs ?? 10 }),
    );
    small = fastest(smallResults.filter((r) => best.has(r.measurement.suite)));
    smallSuites = [...small.entries()]
      .sort((a, b) => b[1].mbPerSec - a[1].mbPerSec)
      .map(([s]) => s);
  }
  const dh = selectX25519(opts.providers ?? ALL_PROVIDERS, opts.now ?? (() => performance.now()));
  const backend = (s: Suite): string => {
    const bulk = best.get(s)!.provider.name;
    const under = small?.get(s)?.provider.name;
    return under === undefined || under === bulk ? bulk : `${bulk}/small:${under}`;
  };
  const name = `auto(${suites.map((s) => `${SUITE_NAMES[s]}=${backend(s)}`).join(',')},x25519=${dh.name})`;
  const provider: CryptoProvider = {
    name,
    suites,
    ...(smallSuites ? { smallSuites } : {}),
    aead(suite: Suite, key: Uint8Array): Aead {
      requireSuite(provider, suite);
      const bulk = best.get(suite)!.provider;
      const under = small?.get(suite)?.provider;
      if (!under || under === bulk) return bulk.aead(suite, key);
      return bySize(bulk.aead(suite, key), under.aead(suite, key));
    },
    x25519: dh.impl,
  };
  return {
    provider,
    suites: [...suites],
    ...(smallSuites ? { smallSuites: [...smallSuites] } : {}),
    bulkOrderBy: byCpu ? 'cpu' : 'measurement',
    measurements: [...results, ...smallResults].map((r) => r.measurement),
  };
}

interface Fastest {
  provider: CryptoProvider;
  mbPerSec: number;
}

/** The fastest backend of each suite among `results`. */
function fastest(results: readonly Result[]): Map<Suite, Fastest> {
  const best = new Map<Suite, Fastest>();
  for (const { provider, measurement: m } of results) {
    // Its figure is from another packet size; and it lost there by far.
    if (m.screenedOut) continue;
    const current = best.get(m.suite);
    if (!current || m.mbPerSec > current.mbPerSec) {
      best.set(m.suite, { provider, mbPerSec: m.mbPerSec });
    }
  }
  return best;
}

/**
 * One suite and key over two backends: payloads under SMALL_PACKET_BYTES go to the one with the
 * cheapest call, the rest to the fastest per byte. Same bytes either way (one suite, one key).
 */
function bySize(bulk: Aead, small: Aead): Aead {
  return {
    suite: bulk.suite,
    seal(nonce, aad, buf, start, end) {
      (end - start < SMALL_PACKET_BYTES ? small : bulk).seal(nonce, aad, buf, start, end);
    },
    open(nonce, aad, buf, start, end) {
      return (end - start < SMALL_PACKET_BYTES ? small : bulk).open(nonce, aad, buf, start, end);
    },
    openOut(nonce, aad, buf, start, end) {
      const by = end - start < SMALL_PACKET_BYTES ? small : bulk;
      if (by.openOut) return by.openOut(nonce, aad, buf, start, end);
      return by.open(nonce, aad, buf, start, end) ? buf.subarray(start, end) : undefined;
    },
  };
}

// RFC 7748 §6.1: Alice's private key, Bob's public key, and their shared secret.
const X25519_VECTOR = {
  sk: fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
  pk: fromHex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'),
  shared: fromHex('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'),
};
const X25519_TIMED_OPS = 3;

/**
 * The fastest X25519 among the providers' own and the core's (noble), by a few timed shared
 * secrets of the RFC 7748 vector; one that gets the vector wrong or throws is not a candidate.
 */
export function selectX25519(
  providers: readonly CryptoProvider[],
  now: () => number = () => performance.now(),
): { name: string; impl: X25519 } {
  const candidates: { name: string; impl: X25519 }[] = [{ name: 'noble', impl: nobleX25519 }];
  for (const p of providers) if (p.x25519) candidates.push({ name: p.name, impl: p.x25519 });
  let best = candidates[0]!;
  let bestMs = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    try {
      if (
        !equalBytes(c.impl.sharedSecret(X25519_VECTOR.sk, X25519_VECTOR.pk), X25519_VECTOR.shared)
      )
        continue;
      const t0 = now();
      for (let i = 0; i < X25519_TIMED_OPS; i++)
        c.impl.sharedSecret(X25519_VECTOR.sk, X25519_VECTOR.pk);
      const ms = now() - t0;
      if (ms < bestMs) {
        best = c;
        bestMs = ms;
      }
    } catch {
      // A backend that cannot even do the vector is no candidate.
    }
  }
  return best;
}
