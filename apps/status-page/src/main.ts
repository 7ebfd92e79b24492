/**
 * The relay's status page: one snapshot and then live updates over Server-Sent Events
 * (`events` beside the page; EventSource reconnects by itself and gets a fresh snapshot), drawn
 * into fixed sections that redraw only what an update touched, at most once a frame.
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
fill(
  app,
  header,
  h('main', { class: 'wrap' }, tabs, empty, sessionArea),
  h(
    'footer',
    { class: 'foot' },
    'roamlink · data: ',
    h('a', { href: `${base}api` }, 'status/api'),
    ' · live: ',
    h('a', { href: `${base}events` }, 'status/events'),
  ),
);

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
  const sel = (picked && s.sessions.find((x) => x.id === picked)) || defaultSession(s) || undefined;
  const noSessions = s.sessions.length === 0;
  empty.hidden = !noSessions;
  sessionArea.classList.toggle('no-session', noSessions);
  tabs.hidden = s.sessions.length === 0;
  if (noSessions) {
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

function connectEvents(): void {
  const es = new EventSource(new URL('events', new URL(base, location.href)));
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
