import type { Readable, Writable } from 'node:stream';

/**
 * `src.pipe(dst)` for a socket fed by many small chunks in one turn of the event loop (one per
 * packet, when the tunnel runs over UDP): the destination is corked at the first chunk and
 * uncorked once the loop's I/O is done (setImmediate), so the chunks leave in one writev
 * rather than one syscall each. Backpressure and end as `pipe`; errors are the caller's.
 */
export function corkedPipe(src: Readable, dst: Writable): void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    dst.uncork();
  };
  const onData = (chunk: Uint8Array): void => {
    if (!corked) {
      corked = true;
      dst.cork();
      setImmediate(uncork);
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
