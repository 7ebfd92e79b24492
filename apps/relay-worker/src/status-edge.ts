/**
 * The status page on Workers. There is no view of all sessions at once (each lives in its own
 * Durable Object), so the page shows one session, named by its routing id:
 *
 *   GET /status, /status/assets/*  the entry answers (the page's files are bundled in the Worker)
 *   GET /status/api?sid=<id>       forwarded to that session's object: its recorder's snapshot
 *   GET /status/events?sid=<id>    forwarded too: Server-Sent Events, as on Node (a Durable Object
 *                                  streams the response; a comment every 15 s keeps it open)
 *   GET /status/api, /events       without an id: the relay's own facts and no session
 *                                  (`relay.sessionScoped`: the page asks for an id)
 *
 * Each object keeps a StatusRecorder (apps/relay/src/status.ts) fed by its EdgeRelay's events, and
 * samples the stream layer's stats once a second while a page is subscribed (never otherwise:
 * a timer would keep an idle object in memory). The recorder lives in memory only: an object
 * rebuilt from storage (after an eviction or a restart) starts a fresh history, with the session
 * showing up again at its next registration round.
 *
 * Runtime-neutral (no Workers imports), so it is tested without a runtime.
 */
import { type Keypair, toHex } from '@roamlink/core';
import type { Hono } from 'hono';
import { createRelayApp, type StatusAssets } from '../../relay/src/app.ts';
import { type MuxSample, StatusRecorder } from '../../relay/src/status.ts';
import { EDGE_ENCAPSULATIONS } from './edge-relay.ts';
import { isSessionId, SID_PARAM } from './routing.ts';

export const STATUS_SAMPLE_MS = 1000;

/** A recorder for one relay or one session of it, with the relay's facts set. */
export function edgeRecorder(
  keypair: Keypair | undefined,
  now: () => number = Date.now,
): StatusRecorder {
  const r = new StatusRecorder({ now, encapsulations: EDGE_ENCAPSULATIONS });
  r.setRelay({ publicKey: keypair ? toHex(keypair.publicKey) : null, sessionScoped: true });
  return r;
}

/** The status routes over `recorder` (and `assets`: none inside a session's object). */
export function statusApp(
  recorder: StatusRecorder,
  assets: StatusAssets = { files: new Map() },
  sessions: () => number = () => 0,
): Hono {
  return createRelayApp({
    now: Date.now,
    startedAt: Date.now(),
    sessions,
    status: { recorder, assets },
  });
}

/**
 * Which session's object a status request goes to: its `sid` for /status/api and /status/events
 * with one (null: malformed, answered 400), undefined for every other request (the entry's).
 */
export function statusSessionOf(url: URL): string | null | undefined {
  if (url.pathname !== '/status/api' && url.pathname !== '/status/events') return undefined;
  const q = url.searchParams.getAll(SID_PARAM);
  if (q.length === 0) return undefined;
  return q.length === 1 && isSessionId(q[0]!) ? q[0]! : null;
}

/**
 * Samples `tunnels()` into `recorder` every STATUS_SAMPLE_MS while it has subscribers; call
 * `check()` after a request that may have subscribed (and it re-checks on every tick).
 */
export function sampleWhileWatched(
  recorder: StatusRecorder,
  tunnels: () => Iterable<{ peer: string; stats: MuxSample }>,
): { check(): void } {
  let timer: ReturnType<typeof setInterval> | undefined;
  const check = (): void => {
    if (recorder.subscribers > 0 && timer === undefined) {
      const t = setInterval(() => {
        if (recorder.subscribers === 0) {
          clearInterval(t);
          timer = undefined;
          return;
        }
        recorder.sample(tunnels());
      }, STATUS_SAMPLE_MS);
      timer = t;
    }
  };
  return { check };
}
