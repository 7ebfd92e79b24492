/**
 * V8 heap tuning for a tunnel end. Every packet lives in an ArrayBuffer outside the JS heap
 * (socket reads, cipher output, packet buffers), so a tunnel moving hundreds of MB/s allocates
 * external memory far faster than it allocates JS objects, and almost all of it dies young.
 *
 * - By default V8 keeps a separate, small budget for external memory and starts a full
 *   mark-compact each time it is spent: on a 512 MiB download over TCP, one full GC every
 *   ~60 ms in each process, about a fifth of their CPU time. Counting external memory in the
 *   heap's global limit instead lets scavenges free the young packet buffers.
 * - The JS heap of a tunnel end is small (~15 MB live), so the default growth factor sets the
 *   next full GC only a few MB away, and the packet traffic reaches it every ~100 ms. Growing
 *   the limit to five times the live heap after each full GC leaves them to scavenges.
 *
 * Measured with `pnpm bench tunnel --only tcp` on a 2-core machine (docs/ARCHITECTURE.md,
 * "Performance"): full GCs per 512 MiB and process ~50 -> ~3, throughput about +75%, peak RSS
 * about the same (the windows and socket buffers dominate it). A relay whose live heap is large
 * may let it grow to five times that before a full GC; ROAMLINK_HEAP_TUNING=0 keeps V8's
 * defaults (for hosts where memory is tighter than CPU).
 */
import { setFlagsFromString } from 'node:v8';

let tuned = false;

/** Applies the tuning once per process; returns whether it is in effect. */
export function tuneHeapForTunnel(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.ROAMLINK_HEAP_TUNING === '0') return false;
  if (!tuned) {
    setFlagsFromString('--external-memory-accounted-in-global-limit');
    setFlagsFromString('--heap-growing-percent=400');
    tuned = true;
  }
  return true;
}
