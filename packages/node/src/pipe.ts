import type { Readable, Writable } from 'node:stream';

/**
 * Chunks from this size on are written at once, never corked: a writev saves nothing on them,
 * and corked bytes count against the destination's high-water mark, so a corked socket reports
 * backpressure after a chunk or two per turn of the event loop. A 1 GiB download in 60 000-byte
 * chunks then left ~120 KB per turn, and the relay waited for credit while the client drained.
 */
export const CORK_BELOW_BYTES = 16 * 1024;

/**
 * `src.pipe(dst)` for a socket fed by many small chunks in one turn of the event loop (one per
 * packet, when the tunnel runs over UDP). The first chunk of a turn is written at once (a lone
 * response should not wait for the rest of the turn's work); the destination is then corked
 * and uncorked once the loop's I/O is done (setImmediate), so the turn's other small chunks
 * leave in one writev rather than one syscall each. A large chunk flushes what is corked and goes
 * at once (CORK_BELOW_BYTES). Backpressure and end as `pipe`; errors are the caller's.
 */
export function corkedPipe(src: Readable, dst: Writable): void {
  let turn = 0;
  let corked = false;
  const endTurn = (): void => {
    if (corked) dst.uncork();
    corked = false;
    turn = 0;
  };
  const onData = (chunk: Uint8Array): void => {
    if (chunk.length >= CORK_BELOW_BYTES) {
      if (corked) dst.uncork();
      corked = false;
    } else {
      if (turn === 0) setImmediate(endTurn);
      else if (!corked) {
        dst.cork();
        corked = true;
      }
      turn++;
    }
    if (!dst.write(chunk)) src.pause();
  };
  const onDrain = (): void => {
    src.resume();
  };
  src.on('data', onData);
  dst.on('drain', onDrain);
  src.once('end', () => dst.end());
  src.once('close', () => {
    src.off('data', onData);
    dst.off('drain', onDrain);
  });
}
