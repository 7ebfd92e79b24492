import type { Readable, Writable } from 'node:stream';

/**
 * `src.pipe(dst)` for a socket fed by many small chunks in one turn of the event loop (one per
 * packet, when the tunnel runs over UDP). The first chunk of a turn is written at once (a lone
 * response should not wait for the rest of the turn's work); the destination is then corked
 * and uncorked once the loop's I/O is done (setImmediate), so the turn's other chunks leave in
 * one writev rather than one syscall each. Backpressure and end as `pipe`; errors are the
 * caller's.
 */
export function corkedPipe(src: Readable, dst: Writable): void {
  let turn = 0;
  const endTurn = (): void => {
    if (turn > 1) dst.uncork();
    turn = 0;
  };
  const onData = (chunk: Uint8Array): void => {
    if (turn === 0) setImmediate(endTurn);
    else if (turn === 1) dst.cork();
    turn++;
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
