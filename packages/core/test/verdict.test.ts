import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { OuterView } from '../src/index.ts';
import {
  computeVerdict,
  Encapsulation,
  HTTP_ENCAPSULATIONS,
  saferVerdict,
  translationDetected,
  VERDICT_NAMES,
  Verdict,
} from '../src/index.ts';

const { UDP, TCP, WEBSOCKET, HTTP_STREAM, HTTP_POLL } = Encapsulation;
const V = Verdict;

/** A WebSocket request as a Node client sends it, and the same request arriving unchanged. */
const wsClient: OuterView = {
  srcAddr: '192.168.1.20',
  srcPort: 50000,
  dstAddr: '203.0.113.5',
  dstPort: 443,
  url: 'wss://relay.example/tunnel?v=1',
  host: 'relay.example',
  headers: [
    ['sec-websocket-key', 'dGhlIHNhbXBsZSBub25jZQ=='],
    ['sec-websocket-version', '13'],
    ['connection', 'Upgrade'],
    ['upgrade', 'websocket'],
  ],
};
const wsRelay: OuterView = {
  srcAddr: '192.168.1.20',
  srcPort: 50000,
  dstAddr: '10.0.0.5',
  dstPort: 8443,
  url: '/tunnel?v=1',
  host: 'relay.example',
  headers: [
    ['host', 'relay.example'],
    ['sec-websocket-key', 'dGhlIHNhbXBsZSBub25jZQ=='],
    ['sec-websocket-version', '13'],
    ['connection', 'Upgrade'],
    ['upgrade', 'websocket'],
    ['user-agent', 'added-by-runtime'],
  ],
};
const addHeaders = (v: OuterView, ...h: [string, string][]): OuterView => ({
  ...v,
  headers: [...(v.headers ?? []), ...h],
});
const at = (v: OuterView, srcAddr: string | undefined, srcPort?: number): OuterView => {
  const out: OuterView = { ...v };
  delete out.srcAddr;
  delete out.srcPort;
  if (srcAddr !== undefined) out.srcAddr = srcAddr;
  if (srcPort !== undefined) out.srcPort = srcPort;
  return out;
};

interface Row {
  name: string;
  enc: Encapsulation;
  client: OuterView;
  relay: OuterView;
  want: Verdict;
}

const rows: Row[] = [
  // Rule 3: addresses and ports.
  {
    name: 'udp, nothing translated',
    enc: UDP,
    client: { srcAddr: '198.51.100.7', srcPort: 4500, dstAddr: '203.0.113.5', dstPort: 4500 },
    relay: { srcAddr: '198.51.100.7', srcPort: 4500, dstAddr: '203.0.113.5', dstPort: 4500 },
    want: V.NONE,
  },
  {
    name: 'udp, NAPT',
    enc: UDP,
    client: { srcAddr: '192.168.1.20', srcPort: 50000 },
    relay: { srcAddr: '198.51.100.1', srcPort: 61001 },
    want: V.ADDRESS_AND_PORT,
  },
  {
    name: 'udp, port-preserving NAT',
    enc: UDP,
    client: { srcAddr: '192.168.1.20', srcPort: 50000 },
    relay: { srcAddr: '198.51.100.1', srcPort: 50000 },
    want: V.ADDRESS,
  },
  {
    name: 'tcp, port-translating firewall',
    enc: TCP,
    client: { srcAddr: '198.51.100.7', srcPort: 50000 },
    relay: { srcAddr: '198.51.100.7', srcPort: 40000 },
    want: V.PORT_ONLY,
  },
  {
    name: 'udp, IPv4-mapped IPv6 at the relay equals the IPv4 client',
    enc: UDP,
    client: { srcAddr: '198.51.100.7', srcPort: 4500 },
    relay: { srcAddr: '::ffff:198.51.100.7', srcPort: 4500 },
    want: V.NONE,
  },
  {
    name: 'udp, bracketed upper-case IPv6 against its compressed lower-case form',
    enc: UDP,
    client: { srcAddr: '[2001:DB8:0:0::1]', srcPort: 4500 },
    relay: { srcAddr: '2001:db8::1', srcPort: 4500 },
    want: V.NONE,
  },
  {
    name: 'udp, mapped IPv6 in hex groups against another IPv4 address',
    enc: UDP,
    client: { srcAddr: '::ffff:c633:6407', srcPort: 4500 },
    relay: { srcAddr: '198.51.100.8', srcPort: 4500 },
    want: V.ADDRESS,
  },
  {
    name: 'udp, client address unknown',
    enc: UDP,
    client: { srcPort: 4500 },
    relay: { srcAddr: '198.51.100.7', srcPort: 4500 },
    want: V.UNKNOWN,
  },
  {
    name: 'udp, relay address unknown',
    enc: UDP,
    client: { srcAddr: '198.51.100.7', srcPort: 4500 },
    relay: {},
    want: V.UNKNOWN,
  },
  {
    name: 'tcp, client port unknown, address differs',
    enc: TCP,
    client: { srcAddr: '192.168.1.20' },
    relay: { srcAddr: '198.51.100.1', srcPort: 61001 },
    want: V.ADDRESS_AND_PORT,
  },
  {
    name: 'tcp, client port unknown, address equal',
    enc: TCP,
    client: { srcAddr: '198.51.100.7' },
    relay: { srcAddr: '198.51.100.7', srcPort: 61001 },
    want: V.UNKNOWN,
  },
  {
    name: 'udp, empty address string is unknown',
    enc: UDP,
    client: { srcAddr: '', srcPort: 4500 },
    relay: { srcAddr: '198.51.100.7', srcPort: 4500 },
    want: V.UNKNOWN,
  },
  {
    name: 'udp, relay behind a port-forward: destination fields take no part',
    enc: UDP,
    client: { srcAddr: '198.51.100.7', srcPort: 4500, dstAddr: '203.0.113.5', dstPort: 4500 },
    relay: { srcAddr: '198.51.100.7', srcPort: 4500, dstAddr: '10.0.0.5', dstPort: 14500 },
    want: V.NONE,
  },
  {
    name: 'udp ignores HTTP fields (Via, Host, target all differ)',
    enc: UDP,
    client: { srcAddr: '198.51.100.7', srcPort: 4500, url: '/a', host: 'a', headers: [['x', '1']] },
    relay: {
      srcAddr: '198.51.100.7',
      srcPort: 4500,
      url: '/b',
      host: 'b',
      headers: [['via', 'p']],
    },
    want: V.NONE,
  },
  {
    name: 'tcp ignores HTTP fields too',
    enc: TCP,
    client: { srcAddr: '192.168.1.20', srcPort: 50000, headers: [['x', '1']] },
    relay: { srcAddr: '198.51.100.1', srcPort: 50000, headers: [['forwarded', 'for=1.2.3.4']] },
    want: V.ADDRESS,
  },
  // Rule 1 does not fire: HTTP through a transparent path falls through to the addresses.
  {
    name: 'websocket, transparent path, same addresses',
    enc: WEBSOCKET,
    client: wsClient,
    relay: wsRelay,
    want: V.NONE,
  },
  {
    name: 'websocket, transparent path behind a NAPT',
    enc: WEBSOCKET,
    client: wsClient,
    relay: at(wsRelay, '198.51.100.1', 61001),
    want: V.ADDRESS_AND_PORT,
  },
  {
    name: 'websocket from a browser (address unknown, no headers set), transparent',
    enc: WEBSOCKET,
    client: { url: 'wss://relay.example/tunnel?v=1' },
    relay: at(wsRelay, '198.51.100.1', 61001),
    want: V.UNKNOWN,
  },
  {
    name: 'websocket, Host with the default port of the scheme',
    enc: WEBSOCKET,
    client: { ...wsClient, host: 'Relay.Example:443' },
    relay: wsRelay,
    want: V.NONE,
  },
  {
    name: 'websocket, Host derived from the URL with its default port',
    enc: WEBSOCKET,
    client: at({ url: 'wss://user@relay.example:443/tunnel?v=1' }, '192.168.1.20', 50000),
    relay: { ...wsRelay, host: 'RELAY.example' },
    want: V.NONE,
  },
  {
    name: 'http stream, absolute-form target with the same path and query',
    enc: HTTP_STREAM,
    client: { srcAddr: '192.168.1.20', srcPort: 50000, url: 'http://relay.example/up?s=1#frag' },
    relay: {
      srcAddr: '192.168.1.20',
      srcPort: 50000,
      url: 'HTTP://relay.example/up?s=1',
      host: 'relay.example:80',
    },
    want: V.NONE,
  },
  {
    name: 'http poll, empty path equals "/"',
    enc: HTTP_POLL,
    client: { srcAddr: '192.168.1.20', srcPort: 50000, url: 'http://relay.example' },
    relay: { srcAddr: '192.168.1.20', srcPort: 50000, url: '/', host: 'relay.example' },
    want: V.NONE,
  },
  {
    name: 'websocket, client-set X-Forwarded-For arrives unchanged',
    enc: WEBSOCKET,
    client: addHeaders(wsClient, ['X-Forwarded-For', '10.1.2.3']),
    relay: addHeaders(wsRelay, ['x-forwarded-for', '10.1.2.3']),
    want: V.NONE,
  },
  {
    name: 'websocket, hop-by-hop headers removed on the way',
    enc: WEBSOCKET,
    client: addHeaders(wsClient, ['te', 'trailers'], ['keep-alive', 'timeout=5']),
    relay: { ...wsRelay, headers: wsRelay.headers!.filter(([n]) => n !== 'connection') },
    want: V.NONE,
  },
  {
    name: 'websocket, repeated header lines merged into one by a hop',
    enc: WEBSOCKET,
    client: addHeaders(wsClient, ['x-tag', 'a'], ['x-tag', ' b ']),
    relay: addHeaders(wsRelay, ['x-tag', 'a, b']),
    want: V.NONE,
  },
  // Rule 1 fires.
  {
    name: 'websocket, a proxy adding Via only',
    enc: WEBSOCKET,
    client: wsClient,
    relay: addHeaders(wsRelay, ['via', '1.1 proxy.corp']),
    want: V.PROTOCOL,
  },
  {
    name: 'websocket, a CDN adding cf-connecting-ip',
    enc: WEBSOCKET,
    client: wsClient,
    relay: addHeaders(at(wsRelay, '162.158.1.1', 33000), ['cf-connecting-ip', '198.51.100.1']),
    want: V.PROTOCOL,
  },
  {
    name: 'http stream, a proxy appending to a client-set X-Forwarded-For',
    enc: HTTP_STREAM,
    client: addHeaders(wsClient, ['x-forwarded-for', '10.1.2.3']),
    relay: addHeaders(wsRelay, ['x-forwarded-for', '10.1.2.3, 192.168.1.20']),
    want: V.PROTOCOL,
  },
  {
    name: 'http poll, Forwarded added, addresses unknown (protocol wins over unknown)',
    enc: HTTP_POLL,
    client: { url: 'https://relay.example/poll' },
    relay: { headers: [['Forwarded', 'for=192.0.2.60;proto=https']] },
    want: V.PROTOCOL,
  },
  {
    name: 'websocket, Host rewritten',
    enc: WEBSOCKET,
    client: wsClient,
    relay: { ...wsRelay, host: 'internal-relay.local' },
    want: V.PROTOCOL,
  },
  {
    name: 'websocket, Host with a non-default port differs',
    enc: WEBSOCKET,
    client: wsClient,
    relay: { ...wsRelay, host: 'relay.example:80' },
    want: V.PROTOCOL,
  },
  {
    name: 'http stream, target path rewritten (absolute-form at the relay)',
    enc: HTTP_STREAM,
    client: wsClient,
    relay: { ...wsRelay, url: 'http://relay.example/api/tunnel?v=1' },
    want: V.PROTOCOL,
  },
  {
    name: 'websocket, query dropped',
    enc: WEBSOCKET,
    client: wsClient,
    relay: { ...wsRelay, url: '/tunnel' },
    want: V.PROTOCOL,
  },
  {
    name: 'websocket, a client-set header missing at the relay',
    enc: WEBSOCKET,
    client: wsClient,
    relay: { ...wsRelay, headers: wsRelay.headers!.filter(([n]) => n !== 'sec-websocket-key') },
    want: V.PROTOCOL,
  },
  {
    name: 'websocket, a client-set header changed at the relay',
    enc: WEBSOCKET,
    client: wsClient,
    relay: {
      ...wsRelay,
      headers: wsRelay.headers!.map(([n, v]) =>
        n === 'sec-websocket-key' ? [n, 'b3RoZXIgbm9uY2UgaGVyZQ=='] : [n, v],
      ),
    },
    want: V.PROTOCOL,
  },
];

test('computeVerdict: table', () => {
  assert.ok(rows.length >= 20);
  for (const r of rows) {
    const got = computeVerdict(r.client, r.relay, r.enc);
    assert.equal(
      VERDICT_NAMES[got],
      VERDICT_NAMES[r.want],
      `${r.name}: got ${VERDICT_NAMES[got]}, want ${VERDICT_NAMES[r.want]}`,
    );
  }
});

test('computeVerdict: every verdict is reachable from the table', () => {
  const reached = new Set(rows.map((r) => r.want));
  for (const v of Object.values(Verdict)) assert.ok(reached.has(v), VERDICT_NAMES[v]);
});

test('computeVerdict: the HTTP rules apply to every HTTP encapsulation and no other', () => {
  const relay = addHeaders(wsRelay, ['via', '1.1 proxy']);
  for (const enc of Object.values(Encapsulation)) {
    const want = HTTP_ENCAPSULATIONS.has(enc) ? V.PROTOCOL : V.NONE;
    assert.equal(computeVerdict(wsClient, relay, enc), want);
  }
  assert.deepEqual([...HTTP_ENCAPSULATIONS].sort(), [WEBSOCKET, HTTP_STREAM, HTTP_POLL]);
});

test('computeVerdict: each proxy/CDN header alone makes PROTOCOL; set by the client it does not', () => {
  const names = [
    'via',
    'forwarded',
    'x-forwarded-for',
    'x-forwarded-host',
    'x-forwarded-proto',
    'x-real-ip',
    'cf-connecting-ip',
    'true-client-ip',
    'cdn-loop',
    'x-forwarded-port',
  ];
  for (const n of names) {
    const relay = addHeaders(wsRelay, [n.toUpperCase(), 'x']);
    assert.equal(computeVerdict(wsClient, relay, WEBSOCKET), V.PROTOCOL, n);
    assert.equal(computeVerdict(addHeaders(wsClient, [n, 'x']), relay, WEBSOCKET), V.NONE, n);
  }
});

test('computeVerdict: every hop-by-hop header may vanish; any other client header may not', () => {
  const hop = [
    'connection',
    'keep-alive',
    'proxy-authorization',
    'proxy-connection',
    'te',
    'trailer',
    'transfer-encoding',
    'upgrade',
  ];
  const bare = { ...wsRelay, headers: [] };
  for (const n of hop) {
    assert.equal(computeVerdict({ ...wsClient, headers: [[n, 'v']] }, bare, WEBSOCKET), V.NONE, n);
  }
  const c = { ...wsClient, headers: [['authorization', 'Bearer x']] as [string, string][] };
  assert.equal(computeVerdict(c, bare, WEBSOCKET), V.PROTOCOL);
  // An absent header list at the relay is an empty one.
  const { headers: _, ...noHeaders } = wsRelay;
  assert.equal(computeVerdict(c, noHeaders, WEBSOCKET), V.PROTOCOL);
});

test('computeVerdict: is pure and symmetric in what it reads', () => {
  const c = structuredClone(wsClient);
  const r = structuredClone(wsRelay);
  computeVerdict(c, r, WEBSOCKET);
  assert.deepEqual(c, wsClient);
  assert.deepEqual(r, wsRelay);
});

const RANKED: Verdict[] = [
  V.NONE,
  V.PORT_ONLY,
  V.ADDRESS,
  V.ADDRESS_AND_PORT,
  V.UNKNOWN,
  V.PROTOCOL,
];

test('saferVerdict: commutative and picks the higher rank, over all pairs', () => {
  assert.equal(RANKED.length, Object.keys(Verdict).length);
  for (let i = 0; i < RANKED.length; i++) {
    for (let j = 0; j < RANKED.length; j++) {
      const a = RANKED[i]!;
      const b = RANKED[j]!;
      const want = RANKED[Math.max(i, j)]!;
      assert.equal(saferVerdict(a, b), want, `${VERDICT_NAMES[a]} vs ${VERDICT_NAMES[b]}`);
      assert.equal(saferVerdict(b, a), saferVerdict(a, b));
    }
  }
});

test('translationDetected: everything but NONE', () => {
  for (const v of Object.values(Verdict)) assert.equal(translationDetected(v), v !== V.NONE);
});
