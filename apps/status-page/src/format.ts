/** Numbers, times and keys as a person reads them. */

export function fmtRate(bps: number | null | undefined): string {
  if (bps === null || bps === undefined) return '—';
  if (bps < 1000) return `${Math.round(bps)} B/s`;
  if (bps < 1_000_000) return `${(bps / 1000).toFixed(bps < 10_000 ? 1 : 0)} kB/s`;
  if (bps < 1_000_000_000) return `${(bps / 1_000_000).toFixed(bps < 10_000_000 ? 2 : 1)} MB/s`;
  return `${(bps / 1_000_000_000).toFixed(2)} GB/s`;
}

/** A rate for an axis label: short. */
export function fmtRateShort(bps: number): string {
  if (bps === 0) return '0';
  if (bps < 1000) return `${Math.round(bps)} B/s`;
  if (bps < 1_000_000) return `${+(bps / 1000).toFixed(1)} kB/s`;
  if (bps < 1_000_000_000) return `${+(bps / 1_000_000).toFixed(1)} MB/s`;
  return `${+(bps / 1_000_000_000).toFixed(1)} GB/s`;
}

export function fmtMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 10_000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

export function fmtClock(t: number): string {
  const d = new Date(t);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function fmtAgo(ms: number): string {
  if (ms < 5_000) return 'just now';
  return `${fmtDuration(ms)} ago`;
}

/** A static key as people compare it: the first 8 and last 4 hex digits. */
export function shortKey(hex: string | null | undefined): string {
  if (!hex) return '—';
  return hex.length > 16 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex;
}

export const ENCAPSULATION_LABELS: Record<string, string> = {
  udp: 'UDP',
  tcp: 'TCP',
  websocket: 'WebSocket',
  'http-stream': 'HTTP stream',
  'http-poll': 'HTTP polling',
};

export function encLabel(e: string | null | undefined): string {
  if (!e) return '—';
  return ENCAPSULATION_LABELS[e] ?? e;
}

/** What each verdict means, in a sentence. */
export const VERDICT_TEXT: Record<string, { title: string; text: string }> = {
  none: {
    title: 'No translation',
    text: 'The relay saw exactly what the client sent: nothing between them rewrote the outer headers.',
  },
  address: {
    title: 'Address translated',
    text: 'A NAT rewrote the client’s address and kept its port (a port-preserving NAT).',
  },
  'address+port': {
    title: 'Address and port translated',
    text: 'A NAT rewrote the client’s address and port (NAPT). On UDP the relay asks for keepalives to hold the binding open.',
  },
  'port-only': {
    title: 'Port translated',
    text: 'Only the source port changed: a port-translating firewall, or a NAT on the client’s own host.',
  },
  protocol: {
    title: 'Protocol re-originated',
    text: 'An HTTP proxy or CDN ended the client’s connection and opened its own: the relay sees its headers.',
  },
  unknown: {
    title: 'Not enough to tell',
    text: 'One side cannot see the field the verdict needs (a browser does not know its own address).',
  },
};

export const FIELD_LABELS: Record<string, string> = {
  srcAddr: 'Source address',
  srcPort: 'Source port',
  dstAddr: 'Destination address',
  dstPort: 'Destination port',
  url: 'Request target',
  host: 'Host',
};

export function fieldLabel(f: string): string {
  if (f.startsWith('header:')) return f.slice('header:'.length);
  return FIELD_LABELS[f] ?? f;
}
