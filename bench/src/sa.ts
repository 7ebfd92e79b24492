/**
 * `pnpm bench sa`: ESP seal and open rates per suite × provider × packet size, beside the rate
 * of the same provider's bare AEAD call on the same sizes in the same run (the ceiling).
 *
 * Method: for each cell, rounds alternate between the bare AEAD and the ESP path so that both
 * see the same machine state; each round runs for a fixed time slice; the median round counts.
 * Open is measured on batches of packets sealed beforehand (outside the timed region), since
 * opening decrypts in place. MB/s counts payload bytes (1 MB = 10^6 bytes).
 *
 * Seal is measured two ways: `sealMBps` is the zero-copy path (`sealInPlace`: the payload already
 * sits in a packet buffer, as the stream layer builds it), `sealCopyMBps` the convenience path
 * (`seal`: copy into a new packet). The bare AEAD baseline seals a buffer in place too.
 */
import type { CryptoProvider, Suite } from '@roamlink/core';
import {
  EspReceiver,
  EspSender,
  espPacketLength,
  NextHeader,
  newEspOpened,
  nobleProvider,
  SUITE_NAMES,
} from '@roamlink/core';
import { nodeCryptoProvider, sodiumProvider } from '@roamlink/crypto-node';
import type { Row } from './table.ts';
import { flag, median, option, printRows } from './table.ts';

const SIZES = [64, 512, 1400, 8192];
const BATCH = 128;

function timeLoop(sliceMs: number, body: () => number): number {
  // Returns operations per second. `body` runs a batch and returns how many operations it did.
  let ops = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < sliceMs) {
    ops += body();
    t = performance.now();
  }
  return (ops * 1000) / (t - t0);
}

function measure(
  provider: CryptoProvider,
  suite: Suite,
  size: number,
  sliceMs: number,
  rounds: number,
): Row {
  const key = new Uint8Array(32).fill(7);
  const salt = new Uint8Array(4).fill(9);
  const aead = provider.aead(suite, key);
  const nonce = new Uint8Array(12).fill(1);
  const aad = new Uint8Array(12).fill(2);
  const payload = new Uint8Array(size).fill(0x5a);
  const bare = Array.from({ length: BATCH }, () => new Uint8Array(size + 16));
  const tx = new EspSender({ spi: 0x1000, aead: provider.aead(suite, key), salt });
  const rx = new EspReceiver({
    spi: 0x1000,
    aead: provider.aead(suite, key),
    salt,
    replayWindow: 8192,
  });
  const opened = newEspOpened();
  const packetBufs = Array.from({ length: BATCH }, () => new Uint8Array(espPacketLength(size)));
  const res = {
    aeadSeal: [] as number[],
    aeadOpen: [] as number[],
    espSeal: [] as number[],
    espSealCopy: [] as number[],
    espOpen: [] as number[],
  };
  let sink = 0;

  for (let r = 0; r < rounds; r++) {
    res.aeadSeal.push(
      timeLoop(sliceMs, () => {
        for (let i = 0; i < BATCH; i++) aead.seal(nonce, aad, bare[i]!, 0, size);
        return BATCH;
      }),
    );
    // The hot path: frames already sit in packet buffers (zero copy, zero allocation).
    res.espSeal.push(
      timeLoop(sliceMs, () => {
        for (let i = 0; i < BATCH; i++)
          sink += tx.sealInPlace(packetBufs[i]!, 0, size, NextHeader.ROAMLINK);
        return BATCH;
      }),
    );
    // The convenience path: copy the payload into a new packet carved from the sender's slab.
    res.espSealCopy.push(
      timeLoop(sliceMs, () => {
        for (let i = 0; i < BATCH; i++) sink += tx.seal(payload, NextHeader.ROAMLINK).length;
        return BATCH;
      }),
    );
    // Open: time only the opening of a batch sealed outside the timed region.
    let openOps = 0;
    let openMs = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < sliceMs * 2 && openMs < sliceMs) {
      for (let i = 0; i < BATCH; i++) {
        bare[i]!.fill(0x5a, 0, size);
        aead.seal(nonce, aad, bare[i]!, 0, size);
      }
      const s = performance.now();
      for (let i = 0; i < BATCH; i++)
        if (!aead.open(nonce, aad, bare[i]!, 0, size)) throw new Error('bare open failed');
      openMs += performance.now() - s;
      openOps += BATCH;
    }
    res.aeadOpen.push((openOps * 1000) / openMs);
    let espOps = 0;
    let espMs = 0;
    const t1 = performance.now();
    while (performance.now() - t1 < sliceMs * 2 && espMs < sliceMs) {
      const pkts = Array.from({ length: BATCH }, () => tx.seal(payload, NextHeader.ROAMLINK));
      const s = performance.now();
      for (let i = 0; i < BATCH; i++)
        if (rx.open(pkts[i]!, opened) !== 0) throw new Error('ESP open failed');
      espMs += performance.now() - s;
      espOps += BATCH;
    }
    res.espOpen.push((espOps * 1000) / espMs);
  }
  if (sink < 0) console.log(sink);
  const mbps = (pps: number): number => (pps * size) / 1e6;
  const aeadSeal = median(res.aeadSeal);
  const aeadOpen = median(res.aeadOpen);
  const espSeal = median(res.espSeal);
  const espSealCopy = median(res.espSealCopy);
  const espOpen = median(res.espOpen);
  return {
    suite: SUITE_NAMES[suite],
    provider: provider.name,
    bytes: size,
    sealMBps: mbps(espSeal),
    aeadMBps: mbps(aeadSeal),
    sealRatio: espSeal / aeadSeal,
    sealCopyMBps: mbps(espSealCopy),
    sealCopyRatio: espSealCopy / aeadSeal,
    openMBps: mbps(espOpen),
    aeadOpenMBps: mbps(aeadOpen),
    openRatio: espOpen / aeadOpen,
    sealKpps: espSeal / 1000,
    openKpps: espOpen / 1000,
  };
}

export function run(args: string[]): void {
  const quick = flag(args, 'quick');
  const sliceMs = option(args, 'slice', quick ? 15 : 150);
  const rounds = option(args, 'rounds', quick ? 3 : 7);
  const only = args.find((a) => a.startsWith('--provider='))?.slice('--provider='.length);
  const providers: CryptoProvider[] = [sodiumProvider, nodeCryptoProvider, nobleProvider].filter(
    (p) => !only || p.name === only,
  );
  const rows: Row[] = [];
  for (const p of providers) {
    for (const suite of p.suites) {
      for (const size of SIZES) {
        if (!flag(args, 'json'))
          process.stderr.write(`  ${p.name} ${SUITE_NAMES[suite]} ${size} B...\r`);
        rows.push(measure(p, suite, size, sliceMs, rounds));
      }
    }
  }
  printRows(
    rows,
    flag(args, 'json'),
    'ESP seal/open vs the bare AEAD call (same run; ratio = ESP / AEAD)',
  );
}
