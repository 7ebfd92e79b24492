import { constants } from 'node:os';

/** The signals that ask a relay or a client to stop. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/**
 * A repeat of the first stop signal within this window is the same request arriving twice, not a
 * second one: a terminal's Ctrl-C reaches every process of the foreground group, and a parent that
 * also forwards it (`./dev run` does, so that `kill -INT` on it alone works) delivers it again a
 * moment later.
 */
export const REPEAT_WINDOW_MS = 1000;

export interface StopSignalOptions {
  /** Clock in milliseconds; default `performance.now`. */
  readonly now?: () => number;
  /** Called instead of `process.exit` to force the exit; gets the exit code (128 + signal). */
  readonly exit?: (code: number) => void;
  /** Told when a later repeat forces the exit (default: a line on stderr). */
  readonly onForce?: (signal: StopSignal) => void;
}

/**
 * Calls `stop` once, on the first SIGINT or SIGTERM, and keeps the handlers installed. With
 * `process.once` a process has no handler left for the next signal, so a duplicate Ctrl-C (see
 * REPEAT_WINDOW_MS) killed it by the default action in the middle of its graceful stop, before
 * it printed its summary. Here a duplicate within the window is ignored, a different signal is
 * ignored (a supervisor's SIGTERM after the user's Ctrl-C), and the same signal again after the
 * window is a person asking twice: the process exits at once with 128 + the signal's number, as
 * the default action would have reported it. Returns a function that removes the handlers.
 */
export function onStopSignal(
  stop: (signal: StopSignal) => void,
  o: StopSignalOptions = {},
): () => void {
  const now = o.now ?? (() => performance.now());
  let first: { signal: StopSignal; at: number } | undefined;
  const handlers = STOP_SIGNALS.map((signal) => {
    const handler = (): void => {
      if (!first) {
        first = { signal, at: now() };
        stop(signal);
        return;
      }
      if (signal !== first.signal || now() - first.at < REPEAT_WINDOW_MS) return;
      (o.onForce ?? ((s) => process.stderr.write(`roamlink: ${s} again, exiting now\n`)))(signal);
      (o.exit ?? process.exit)(128 + constants.signals[signal]);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}
