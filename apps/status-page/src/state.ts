/**
 * The page's copy of the relay's status: the snapshot it got first, kept current by applying each
 * live update (the relay's StatusRecorder emits them in order).
 */
import type {
  SessionStatus,
  StatusSnapshot,
  StatusUpdate,
  TimelineEntry,
} from '../../relay/src/status.ts';

export type { SessionStatus, StatusSnapshot, StatusUpdate, TimelineEntry };

/** As the relay keeps them: 10 min at 1 s, 500 timeline entries. */
const MAX_POINTS = 600;
const MAX_TIMELINE = 500;

function emptySeries(): SessionStatus['series'] {
  return { t: [], rttMs: [], txBps: [], rxBps: [] };
}

/** Applies one update in place; returns what it touched, so the page redraws only that. */
export function applyUpdate(
  s: StatusSnapshot,
  u: StatusUpdate,
): 'sessions' | 'samples' | 'timeline' | 'relay' {
  switch (u.type) {
    case 'session': {
      const found = s.sessions.find((x) => x.id === u.session.id);
      if (found) Object.assign(found, u.session);
      else s.sessions.push({ ...u.session, series: emptySeries() });
      return 'sessions';
    }
    case 'forget':
      s.sessions = s.sessions.filter((x) => x.id !== u.id);
      return 'sessions';
    case 'sample': {
      s.now = u.t;
      for (const p of u.points) {
        const x = s.sessions.find((y) => y.id === p.id);
        if (!x) continue;
        x.series.t.push(u.t);
        x.series.rttMs.push(p.rttMs);
        x.series.txBps.push(p.txBps);
        x.series.rxBps.push(p.rxBps);
        const over = x.series.t.length - MAX_POINTS;
        if (over > 0) {
          x.series.t.splice(0, over);
          x.series.rttMs.splice(0, over);
          x.series.txBps.splice(0, over);
          x.series.rxBps.splice(0, over);
        }
        x.rttMs = p.rttMs;
        x.txBps = p.txBps;
        x.rxBps = p.rxBps;
      }
      return 'samples';
    }
    case 'timeline':
      s.timeline.push(u.entry);
      if (s.timeline.length > MAX_TIMELINE) s.timeline.splice(0, s.timeline.length - MAX_TIMELINE);
      return 'timeline';
    case 'relay':
      s.relay = u.relay;
      return 'relay';
  }
}

/** The session to show when none is picked: the newest connected one, else the newest. */
export function defaultSession(s: StatusSnapshot): SessionStatus | undefined {
  const by = (a: SessionStatus, b: SessionStatus): number => b.lastEventAt - a.lastEventAt;
  const connected = s.sessions.filter((x) => x.state === 'connected').sort(by);
  return connected[0] ?? [...s.sessions].sort(by)[0];
}
