/**
 * V8 heap tuning for a tunnel end. Every packet lives in an ArrayBuffer outside the JS heap
 * (socket reads, cipher output, packet buffers), so a tunnel moving hundreds of MB/s allocates
 * external memory far faster than it allocates JS objects. By default V8 keeps a separate,
 * small budget for external memory and starts a full mark-compact each time it is spent: on a
 * 1 GiB download over TCP that was one full GC every ~60 ms in each process, about a fifth of
 * their CPU time. Counting external memory in the heap's global limit instead lets the young
 * packet buffers die in the normal rhythm of the heap.
 *
 * Measured with `pnpm bench tunnel --only tcp` on a 2-core machine: full GCs per 512 MiB fell
 * from ~50 to ~5-15 per process and throughput rose by about half, for about a third more
 * peak RSS in the relay (docs/ARCHITECTURE.md, "Performance"). ROAMLINK_HEAP_TUNING=0 keeps
 * V8's default (for hosts where memory is tighter than CPU).
 */
import { setFlagsFromString } from 'node:v8';

let tuned = false;

/** Applies the tuning once per process; returns whether it is in effect. */
export function tuneHeapForTunnel(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.ROAMLINK_HEAP_TUNING === '0') return false;
  if (!tuned) {
    setFlagsFromString('--external-memory-accounted-in-global-limit');
    tuned = true;
  }
  return true;
}
