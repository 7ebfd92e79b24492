/**
 * The page's sections, each a function of the state that fills its own element: header, session
 * tabs, overview, registration race, verdict, charts and timeline.
 */

import { type ChartMarker, LineChart } from './chart.ts';
import { fill, h } from './dom.ts';
import {
  encLabel,
  fieldLabel,
  fmtClock,
  fmtDuration,
  fmtMs,
  fmtRate,
  fmtRateShort,
  shortKey,
  VERDICT_TEXT,
} from './format.ts';
import type { SessionStatus, StatusSnapshot, TimelineEntry } from './state.ts';

/** Headers that proxies and CDNs add: shown first and marked when only the relay saw them. */
const PROXY_HEADERS = new Set([
  'via',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-real-ip',
  'cf-connecting-ip',
  'true-client-ip',
  'cdn-loop',
]);

const STATE_LABELS: Record<string, string> = {
  connecting: 'Connecting',
  connected: 'Connected',
  left: 'Left',
  dead: 'Timed out',
};

const KIND_LABELS: Record<string, string> = {
  connect: 'Connected',
  move: 'Move',
  fallback: 'Fallback',
  probe: 'Probe',
  rekey: 'Rekey',
  goaway: 'GOAWAY',
  dead: 'Timed out',
  registration: 'Registration',
};

export interface ViewContext {
  /** The relay's clock now (its samples' time base). */
  serverNow: () => number;
  /** Picks a session. */
  select: (id: string) => void;
  /** The public key of this browser's own demo session, if any. */
  ownKey: () => string | null;
  timelineScope: 'session' | 'all';
  setTimelineScope: (s: 'session' | 'all') => void;
}

export function encBadge(enc: string | null | undefined, extra = ''): HTMLElement {
  return h('span', { class: `enc enc-${enc ?? 'none'} ${extra}`.trim() }, encLabel(enc));
}

// --- Header -------------------------------------------------------------------------------------

export function renderHeader(
  el: HTMLElement,
  s: StatusSnapshot | null,
  live: 'live' | 'connecting' | 'down',
  serverNow: number,
): void {
  const liveText = { live: 'Live', connecting: 'Connecting…', down: 'Reconnecting…' }[live];
  fill(
    el,
    h(
      'div',
      { class: 'brand' },
      h('span', { class: 'logo', 'aria-hidden': 'true' }),
      h('span', { class: 'brand-name' }, 'roamlink'),
      h('span', { class: 'brand-sub' }, 'relay status'),
    ),
    h(
      'div',
      { class: 'relay-meta' },
      s &&
        h(
          'span',
          { class: 'meta', title: s.relay.publicKey ?? '' },
          h('span', { class: 'meta-k' }, 'Relay key'),
          h('code', null, shortKey(s.relay.publicKey)),
        ),
      s &&
        h(
          'span',
          { class: 'meta' },
          h('span', { class: 'meta-k' }, 'Up'),
          fmtDuration(serverNow - s.relay.startedAt),
        ),
      s &&
        h(
          'span',
          { class: 'meta' },
          h('span', { class: 'meta-k' }, 'Sessions'),
          String(s.sessions.filter((x) => x.state === 'connected').length),
        ),
      h(
        'span',
        { class: `live live-${live}`, 'data-testid': 'live', role: 'status' },
        h('span', { class: 'live-dot' }),
        liveText,
      ),
    ),
  );
}

// --- Session tabs -------------------------------------------------------------------------------

export function renderTabs(
  el: HTMLElement,
  s: StatusSnapshot,
  selected: string | undefined,
  ctx: ViewContext,
): void {
  const sorted = [...s.sessions].sort((a, b) => b.since - a.since);
  fill(
    el,
    sorted.map((x) =>
      h(
        'button',
        {
          class: `tab${x.id === selected ? ' tab-on' : ''}`,
          type: 'button',
          'data-session': x.id,
          'aria-pressed': x.id === selected ? 'true' : 'false',
          on: { click: () => ctx.select(x.id) },
        },
        h('span', { class: `dot st-${x.state}`, title: STATE_LABELS[x.state] ?? x.state }),
        h('code', null, shortKey(x.id)),
        x.id === ctx.ownKey() && h('span', { class: 'you' }, 'this browser'),
        encBadge(x.encapsulation, 'enc-sm'),
      ),
    ),
  );
}

// --- Overview -----------------------------------------------------------------------------------

function tile(label: string, value: string, sub?: string, testid?: string): HTMLElement {
  return h(
    'div',
    { class: 'tile' },
    h('div', { class: 'tile-k' }, label),
    h('div', { class: 'tile-v', 'data-testid': testid }, value),
    sub ? h('div', { class: 'tile-sub' }, sub) : null,
  );
}

export function renderOverview(el: HTMLElement, x: SessionStatus, ctx: ViewContext): void {
  const now = ctx.serverNow();
  fill(
    el,
    h(
      'div',
      { class: 'ov-head' },
      h(
        'div',
        { class: 'ov-title' },
        encBadge(x.encapsulation, 'enc-lg'),
        h(
          'span',
          { class: `state st-${x.state}`, 'data-testid': 'session-state' },
          STATE_LABELS[x.state] ?? x.state,
        ),
        x.id === ctx.ownKey() && h('span', { class: 'you' }, 'this browser'),
      ),
      h(
        'dl',
        { class: 'ov-facts' },
        h('dt', null, 'Client'),
        h('dd', { title: x.id }, h('code', { 'data-testid': 'session-id' }, shortKey(x.id))),
        h('dt', null, 'Path'),
        h('dd', null, h('code', null, x.path ?? '—')),
        h('dt', null, 'Cipher'),
        h('dd', null, x.suite ?? '—'),
        h('dt', null, 'Since'),
        h('dd', null, `${fmtClock(x.since)} (${fmtDuration(now - x.since)})`),
      ),
    ),
    h(
      'div',
      { class: 'tiles' },
      tile('RTT', fmtMs(x.rttMs), x.rttMs === null ? 'no sample yet' : 'smoothed', 'rtt-now'),
      tile('To client', fmtRate(x.txBps), 'relay → client'),
      tile('From client', fmtRate(x.rxBps), 'client → relay'),
      tile('Streams', String(x.streamsActive), `${x.streamsOpened} opened`),
      tile(
        'Moves',
        String(x.moves + x.fallbacks),
        `${x.fallbacks} fallback${x.fallbacks === 1 ? '' : 's'}`,
      ),
      tile('Keys', String(x.handshakes), `${x.rekeys} rekey${x.rekeys === 1 ? '' : 's'}`),
    ),
  );
}

// --- Registration race --------------------------------------------------------------------------

export function renderRace(el: HTMLElement, x: SessionStatus): void {
  const r = x.round;
  if (!r || r.raced.length === 0) {
    fill(
      el,
      h('h2', null, 'Registration race'),
      h('p', { class: 'empty' }, 'No registration yet.'),
    );
    return;
  }
  const max = Math.max(20, ...r.raced.map((e) => e.arrivedMs));
  fill(
    el,
    h(
      'h2',
      null,
      'Registration race',
      h(
        'span',
        { class: 'sub' },
        `round ${r.round} · ${fmtClock(r.startedAt)}${r.decision > 1 ? ` · upgraded ${r.decision - 1}×` : ''}`,
      ),
    ),
    h(
      'p',
      { class: 'hint' },
      'The client sends its registration on every transport at once. The first to arrive wins; a preferred one arriving within the grace window takes over.',
    ),
    h(
      'ol',
      { class: 'race', 'data-testid': 'race' },
      r.raced.map((e, i) =>
        h(
          'li',
          {
            class: `race-row${e.chosen ? ' race-chosen' : ''}`,
            'data-encapsulation': e.encapsulation,
            'data-chosen': e.chosen ? 'true' : 'false',
          },
          encBadge(e.encapsulation),
          h(
            'div',
            { class: 'track' },
            h('div', {
              class: 'track-bar',
              style: `width:${Math.max(1.5, (e.arrivedMs / max) * 100)}%`,
            }),
          ),
          h('span', { class: 'race-ms' }, i === 0 ? 'first' : `+${fmtMs(e.arrivedMs)}`),
          h(
            'span',
            { class: `race-tag${e.chosen ? ' on' : ''}` },
            e.chosen ? '✓ chosen' : 'standby',
          ),
          h('span', { class: `vchip v-${e.verdict.replace('+', '-')}` }, e.verdict),
        ),
      ),
    ),
  );
}

// --- Verdict ------------------------------------------------------------------------------------

const MATCH_MARK: Record<string, { mark: string; title: string }> = {
  same: { mark: '=', title: 'the same on both sides' },
  differs: { mark: '≠', title: 'changed on the way' },
  'client-only': { mark: '−', title: 'the client set it; it did not arrive' },
  'relay-only': { mark: '+', title: 'added on the way (or set by the runtime)' },
  unknown: { mark: '?', title: 'one side cannot know it' },
};

export function renderVerdict(el: HTMLElement, x: SessionStatus): void {
  const v = x.verdict;
  if (!v) {
    fill(el, h('h2', null, 'Verdict'), h('p', { class: 'empty' }, 'No verdict yet.'));
    return;
  }
  const text = VERDICT_TEXT[v.verdict] ?? { title: v.verdict, text: '' };
  const core = v.rows.filter((r) => !r.field.startsWith('header:'));
  const headers = v.rows.filter((r) => r.field.startsWith('header:'));
  const important = headers.filter(
    (r) => r.match !== 'relay-only' || PROXY_HEADERS.has(r.field.slice(7)),
  );
  const rest = headers.filter((r) => !important.includes(r));
  const row = (r: (typeof v.rows)[number]): HTMLElement => {
    const proxy = r.field.startsWith('header:') && PROXY_HEADERS.has(r.field.slice(7));
    const m = MATCH_MARK[r.match] ?? { mark: '', title: '' };
    return h(
      'tr',
      { class: `m-${r.match}${proxy ? ' proxy' : ''}`, 'data-field': r.field },
      h('th', { scope: 'row' }, fieldLabel(r.field)),
      h('td', null, r.client === null ? h('span', { class: 'na' }, 'not known') : r.client),
      h('td', { class: 'mark', title: m.title }, m.mark),
      h('td', null, r.relay === null ? h('span', { class: 'na' }, 'not seen') : r.relay),
    );
  };
  fill(
    el,
    h(
      'h2',
      null,
      'Verdict',
      h('span', { class: 'sub' }, `on ${encLabel(v.encapsulation)} · round ${v.round}`),
    ),
    h(
      'div',
      { class: 'verdict-head' },
      h(
        'span',
        { class: `verdict-name v-${v.verdict.replace('+', '-')}`, 'data-testid': 'verdict' },
        v.verdict,
      ),
      h('div', null, h('strong', null, text.title), h('p', null, text.text)),
    ),
    v.path !== x.path &&
      x.path !== null &&
      h(
        'p',
        { class: 'note' },
        `The session has since moved to ${x.path} without a registration there (a NAT rebinding); this verdict is from ${v.path}.`,
      ),
    h(
      'table',
      { class: 'views', 'data-testid': 'views' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          h('th', null, ''),
          h('th', null, 'Client sent'),
          h('th', { class: 'mark' }, ''),
          h('th', null, 'Relay observed'),
        ),
      ),
      h('tbody', null, core.map(row), important.map(row)),
    ),
    rest.length > 0 &&
      h(
        'details',
        { class: 'more-headers' },
        h(
          'summary',
          null,
          `${rest.length} more header${rest.length === 1 ? '' : 's'} only the relay saw`,
        ),
        h('table', { class: 'views' }, h('tbody', null, rest.map(row))),
      ),
  );
}

// --- Charts -------------------------------------------------------------------------------------

export class Charts {
  readonly rtt = new LineChart('Round-trip time over time');
  readonly tput = new LineChart('Throughput over time');
  readonly rttLegend = h('div', { class: 'legend' });
  readonly tputLegend = h('div', { class: 'legend' });

  update(x: SessionStatus, timeline: TimelineEntry[], end: number): void {
    const markers: ChartMarker[] = timeline
      .filter((e) => e.session === x.id && (e.kind === 'move' || e.kind === 'fallback'))
      .map((e) => ({
        t: e.t,
        color: e.kind === 'fallback' ? '--warn' : '--accent',
        label: e.title,
      }));
    this.rtt.set({
      t: x.series.t,
      series: [{ label: 'RTT', color: '--chart-a', values: x.series.rttMs, fill: true }],
      end,
      spanMs: 600_000,
      minMax: 1,
      format: (v) => fmtMs(v).replace(/\.0 /, ' '),
      markers,
    });
    this.tput.set({
      t: x.series.t,
      series: [
        { label: 'To client', color: '--chart-b', values: x.series.txBps, fill: true },
        { label: 'From client', color: '--chart-c', values: x.series.rxBps },
      ],
      end,
      spanMs: 600_000,
      minMax: 1000,
      format: fmtRateShort,
      markers,
    });
    fill(
      this.rttLegend,
      h('span', { class: 'lg lg-a' }, 'RTT ', h('strong', null, fmtMs(x.rttMs))),
      markers.length > 0 && h('span', { class: 'lg lg-m' }, 'moves'),
    );
    fill(
      this.tputLegend,
      h('span', { class: 'lg lg-b' }, 'To client ', h('strong', null, fmtRate(x.txBps))),
      h('span', { class: 'lg lg-c' }, 'From client ', h('strong', null, fmtRate(x.rxBps))),
    );
  }
}

// --- Timeline -----------------------------------------------------------------------------------

export function renderTimeline(
  el: HTMLElement,
  s: StatusSnapshot,
  selected: string | undefined,
  ctx: ViewContext,
  fresh: Set<number>,
): void {
  const scope = ctx.timelineScope;
  const entries = s.timeline
    .filter((e) => scope === 'all' || e.session === selected)
    .slice(-150)
    .reverse();
  const toggle = (value: 'session' | 'all', label: string): HTMLElement =>
    h(
      'button',
      {
        type: 'button',
        class: `seg${scope === value ? ' seg-on' : ''}`,
        'aria-pressed': scope === value ? 'true' : 'false',
        on: { click: () => ctx.setTimelineScope(value) },
      },
      label,
    );
  fill(
    el,
    h(
      'div',
      { class: 'card-head' },
      h('h2', null, 'Timeline'),
      h('div', { class: 'segmented' }, toggle('session', 'This session'), toggle('all', 'All')),
    ),
    entries.length === 0
      ? h('p', { class: 'empty' }, 'Nothing has happened yet.')
      : h(
          'ol',
          { class: 'tl', 'data-testid': 'timeline' },
          entries.map((e) =>
            h(
              'li',
              {
                class: `tl-item k-${e.kind}${fresh.has(e.seq) ? ' fresh' : ''}`,
                'data-kind': e.kind,
                'data-seq': e.seq,
              },
              h('span', { class: 'tl-dot', 'aria-hidden': 'true' }),
              h('time', { datetime: new Date(e.t).toISOString() }, fmtClock(e.t)),
              h(
                'div',
                { class: 'tl-body' },
                h(
                  'div',
                  { class: 'tl-title' },
                  h('span', { class: 'tl-kind' }, KIND_LABELS[e.kind] ?? e.kind),
                  h('span', { class: 'tl-text' }, e.title),
                ),
                h(
                  'div',
                  { class: 'tl-meta' },
                  e.reason && h('span', { class: 'chip' }, e.reason),
                  e.round !== null && h('span', { class: 'chip chip-quiet' }, `round ${e.round}`),
                  scope === 'all' && h('code', { class: 'tl-session' }, shortKey(e.session)),
                ),
              ),
            ),
          ),
        ),
  );
}
