/**
 * The relay's status page: one snapshot and then live updates over Server-Sent Events
 * (`events` beside the page; EventSource reconnects by itself and gets a fresh snapshot), drawn
 * into fixed sections that redraw only what an update touched, at most once a frame.
 *
 * `sid=<routing id>` (in the query or the fragment) names one session: the page asks for that
 * session's data only (`api?sid=`, `events?sid=`). A relay with no view of all its sessions at once
 * (Workers: `relay.sessionScoped`) needs one; the in-browser demo, once connected there, switches
 * the page to its own session.
 */
import './style.css';
import { Demo } from './demo.ts';
import { fill, h } from './dom.ts';
import { applyUpdate, defaultSession, type StatusSnapshot, type StatusUpdate } from './state.ts';
import {
  Charts,
  renderHeader,
  renderOverview,
  renderRace,
  renderTabs,
  renderTimeline,
  renderVerdict,
  type ViewContext,
} from './view.ts';

const base = location.pathname.endsWith('/') ? location.pathname : `${location.pathname}/`;

const isSid = (v: string | null): v is string => v !== null && /^[A-Za-z0-9_-]{16,128}$/.test(v);
/** The one session this page shows (by its routing id), if one is named. */
let sid: string | undefined = [
  new URLSearchParams(location.search).get('sid'),
  new URLSearchParams(location.hash.slice(1)).get('sid'),
].find(isSid);
/** `api` or `events` beside the page, for the named session if there is one. */
const dataUrl = (what: 'api' | 'events'): string => {
  const u = new URL(what, new URL(base, location.href));
  if (sid) u.searchParams.set('sid', sid);
  return u.pathname + u.search;
};
let events: EventSource | undefined;

let snap: StatusSnapshot | null = null;
let live: 'live' | 'connecting' | 'down' = 'connecting';
let picked: string | undefined;
let ownKey: string | null = null;
/** The relay's clock minus ours, from its latest timestamp. */
let skew = 0;
const fresh = new Set<number>();
let lastSeq = 0;

const dirty = new Set<'header' | 'sessions' | 'samples' | 'timeline'>();
let frame = 0;

const ctx: ViewContext = {
  serverNow: () => Date.now() + skew,
  select: (id) => {
    picked = id;
    renderAll();
  },
  ownKey: () => ownKey,
  timelineScope: 'session',
  setTimelineScope: (sc) => {
    ctx.timelineScope = sc;
    dirty.add('timeline');
    schedule();
  },
};

// --- Layout -------------------------------------------------------------------------------------

const header = h('header', { class: 'topbar' });
const tabs = h('nav', { class: 'tabs', 'aria-label': 'Sessions' });
const empty = h('section', { class: 'card empty-state', hidden: true });
const overview = h('section', { class: 'card overview', 'aria-label': 'Session' });
const race = h('section', { class: 'card race-card' });
const verdict = h('section', { class: 'card verdict-card' });
const charts = new Charts();
const rttCard = h(
  'section',
  { class: 'card chart-card' },
  h('div', { class: 'card-head' }, h('h2', null, 'Round-trip time'), charts.rttLegend),
  charts.rtt.el,
);
const tputCard = h(
  'section',
  { class: 'card chart-card' },
  h('div', { class: 'card-head' }, h('h2', null, 'Throughput'), charts.tputLegend),
  charts.tput.el,
);
const timeline = h('section', { class: 'card timeline-card' });
const demo = new Demo({
  onKey: (k) => {
    ownKey = k;
    dirty.add('sessions');
    schedule();
  },
  onSession: (id) => {
    // A relay that shows one session per page: show this browser's own.
    if (snap?.relay.sessionScoped && id !== sid && isSid(id)) watch(id);
  },
});
const sessionArea = h(
  'div',
  { class: 'grid' },
  overview,
  race,
  verdict,
  rttCard,
  tputCard,
  timeline,
  h('div', { class: 'side' }, demo.el),
);
const app = document.getElementById('app')!;
const footer = h('footer', { class: 'foot' });
function renderFooter(): void {
  fill(
    footer,
    'roamlink · data: ',
    h('a', { href: dataUrl('api') }, 'status/api'),
    ' · live: ',
    h('a', { href: dataUrl('events') }, 'status/events'),
    sid ? h('span', { 'data-testid': 'sid' }, ` · session ${sid}`) : '',
  );
}
renderFooter();
fill(app, header, h('main', { class: 'wrap' }, tabs, empty, sessionArea), footer);

// --- Rendering ----------------------------------------------------------------------------------

function schedule(): void {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    flush();
  });
}

function renderAll(): void {
  dirty.add('header').add('sessions').add('samples').add('timeline');
  schedule();
}

function flush(): void {
  const s = snap;
  renderHeader(header, s, live, ctx.serverNow());
  if (!s) {
    dirty.clear();
    return;
  }
  if (s.relay.publicKey) document.documentElement.dataset.relayKey = s.relay.publicKey;
  document.documentElement.dataset.sessionScoped = String(s.relay.sessionScoped === true);
  const sel = (picked && s.sessions.find((x) => x.id === picked)) || defaultSession(s) || undefined;
  const noSessions = s.sessions.length === 0;
  empty.hidden = !noSessions;
  sessionArea.classList.toggle('no-session', noSessions);
  tabs.hidden = s.sessions.length === 0;
  if (noSessions && s.relay.sessionScoped) {
    // Workers: each session lives apart; the page shows one, named by its routing id.
    fill(
      empty,
      h('h2', null, sid ? 'No session with this id yet' : 'One session per page on this relay'),
      h(
        'p',
        null,
        'This relay keeps each session apart, so this page shows one, by its routing id: ',
        h('code', null, `${base.replace(/\/$/, '')}?sid=<id>`),
        ' (a client’s id: the browser client’s session.status().sid).',
      ),
      h('p', { class: 'hint' }, 'Or connect this browser with the card below: it shows its own.'),
    );
  } else if (noSessions) {
    fill(
      empty,
      h('h2', null, 'No sessions yet'),
      h('p', null, 'Connect a client and it shows up here, live:'),
      h('pre', null, connectCommand(s)),
      h('p', { class: 'hint' }, 'Or connect this browser with the card below.'),
    );
  }
  if (dirty.has('sessions')) renderTabs(tabs, s, sel?.id, ctx);
  if (sel) {
    if (dirty.has('sessions') || dirty.has('samples')) renderOverview(overview, sel, ctx);
    if (dirty.has('sessions')) {
      renderRace(race, sel);
      renderVerdict(verdict, sel);
    }
    if (dirty.has('samples') || dirty.has('sessions') || dirty.has('timeline'))
      charts.update(sel, s.timeline, Math.max(ctx.serverNow(), sel.series.t.at(-1) ?? 0));
  }
  if (dirty.has('timeline') || dirty.has('sessions'))
    renderTimeline(timeline, s, sel?.id, ctx, fresh);
  dirty.clear();
}

/** The `roamlink connect` line for this relay: its listeners, with this page's host name. */
function connectCommand(s: StatusSnapshot): string {
  const here = (a: string | null): string | null =>
    a === null ? null : a.replace(/^(0\.0\.0\.0|\[::\])(?=:\d+$)/, location.hostname);
  const r = s.relay;
  const udp = here(r.udp);
  const tcp = here(r.tcp);
  const http = here(r.http) ?? location.host;
  const parts = ['roamlink connect', udp ?? tcp ?? http, `--relay-key ${r.publicKey ?? '<key>'}`];
  if (tcp) parts.push(`--relay-tcp ${tcp}`);
  parts.push(`--relay-http ${http}`);
  return parts.join(' ');
}

// --- Live data ----------------------------------------------------------------------------------

/** Shows the session `id` from now on: its id in the address, its data fresh. */
function watch(id: string): void {
  sid = id;
  const u = new URL(location.href);
  u.searchParams.set('sid', id);
  history.replaceState(null, '', u);
  snap = null;
  lastSeq = 0;
  live = 'connecting';
  renderFooter();
  connectEvents();
  renderAll();
}

function connectEvents(): void {
  events?.close();
  const es = new EventSource(dataUrl('events'));
  events = es;
  es.addEventListener('open', () => {
    live = 'live';
    dirty.add('header');
    schedule();
  });
  es.addEventListener('error', () => {
    live = 'down';
    dirty.add('header');
    schedule();
  });
  es.addEventListener('snapshot', (e) => {
    const s = JSON.parse((e as MessageEvent<string>).data) as StatusSnapshot;
    skew = s.now - Date.now();
    snap = s;
    live = 'live';
    if (lastSeq === 0) lastSeq = s.timeline.at(-1)?.seq ?? 0;
    renderAll();
  });
  es.addEventListener('update', (e) => {
    if (!snap) return;
    const u = JSON.parse((e as MessageEvent<string>).data) as StatusUpdate;
    const what = applyUpdate(snap, u);
    if (u.type === 'sample') skew = u.t - Date.now();
    if (u.type === 'timeline' && u.entry.seq > lastSeq) {
      lastSeq = u.entry.seq;
      fresh.add(u.entry.seq);
      setTimeout(() => fresh.delete(u.entry.seq), 4000);
    }
    dirty.add(what === 'relay' ? 'header' : what);
    if (what === 'sessions') dirty.add('header');
    schedule();
  });
}

connectEvents();
renderAll();
// Durations ("up 3m", "since …") advance even when nothing happens.
setInterval(() => {
  dirty.add('header');
  if (snap?.sessions.length) dirty.add('samples');
  schedule();
}, 1000);
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  charts.rtt.draw();
  charts.tput.draw();
});
