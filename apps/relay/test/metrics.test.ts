/**
 * The Prometheus registry: exact text exposition format 0.0.4 output for a small registry (HELP
 * and TYPE lines, label-value and HELP escaping, histogram buckets, _sum and _count), input
 * validation, and roamlink's own metric declarations.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, isRoamlinkError, newSessionStats } from '@roamlink/core';
import {
  escapeHelp,
  escapeLabelValue,
  formatValue,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
  RTT_BUCKETS_SECONDS,
  relayMetrics,
} from '../src/metrics.ts';

test('a small registry renders exactly, in declaration and first-use order', () => {
  const r = new Registry();
  const reqs = r.counter({
    name: 'demo_requests_total',
    help: 'Requests seen.\nSecond line with a \\ backslash.',
    labelNames: ['method', 'path'],
  });
  const temp = r.gauge({ name: 'demo_temperature_celsius', help: 'A gauge.' });
  const lat = r.histogram({
    name: 'demo_latency_seconds',
    help: 'Latency.',
    labelNames: ['route'],
    buckets: [0.005, 0.1, 1],
  });
  const plain = r.histogram({ name: 'demo_size_bytes', help: 'Sizes.', buckets: [10] });

  reqs.inc({ method: 'GET', path: '/a' });
  reqs.inc({ method: 'POST', path: 'say "hi"\\now\nthen' }, 2);
  reqs.inc({ path: '/a', method: 'GET' }, 0.5); // label order does not matter
  temp.set(undefined, -3.25);
  lat.observe({ route: 'x' }, 0.005); // on a bound: counts in that bucket (le is inclusive)
  lat.observe({ route: 'x' }, 0.05);
  lat.observe({ route: 'x' }, 3);
  lat.labels({ route: 'y' }); // created, never observed
  plain.observe(undefined, 11);

  const want = [
    '# HELP demo_requests_total Requests seen.\\nSecond line with a \\\\ backslash.',
    '# TYPE demo_requests_total counter',
    'demo_requests_total{method="GET",path="/a"} 1.5',
    'demo_requests_total{method="POST",path="say \\"hi\\"\\\\now\\nthen"} 2',
    '# HELP demo_temperature_celsius A gauge.',
    '# TYPE demo_temperature_celsius gauge',
    'demo_temperature_celsius -3.25',
    '# HELP demo_latency_seconds Latency.',
    '# TYPE demo_latency_seconds histogram',
    'demo_latency_seconds_bucket{route="x",le="0.005"} 1',
    'demo_latency_seconds_bucket{route="x",le="0.1"} 2',
    'demo_latency_seconds_bucket{route="x",le="1"} 2',
    'demo_latency_seconds_bucket{route="x",le="+Inf"} 3',
    'demo_latency_seconds_sum{route="x"} 3.055',
    'demo_latency_seconds_count{route="x"} 3',
    'demo_latency_seconds_bucket{route="y",le="0.005"} 0',
    'demo_latency_seconds_bucket{route="y",le="0.1"} 0',
    'demo_latency_seconds_bucket{route="y",le="1"} 0',
    'demo_latency_seconds_bucket{route="y",le="+Inf"} 0',
    'demo_latency_seconds_sum{route="y"} 0',
    'demo_latency_seconds_count{route="y"} 0',
    '# HELP demo_size_bytes Sizes.',
    '# TYPE demo_size_bytes histogram',
    'demo_size_bytes_bucket{le="10"} 0',
    'demo_size_bytes_bucket{le="+Inf"} 1',
    'demo_size_bytes_sum 11',
    'demo_size_bytes_count 1',
    '',
  ].join('\n');
  assert.equal(r.render(), want);
  assert.equal(r.contentType, 'text/plain; version=0.0.4; charset=utf-8');
  assert.equal(PROMETHEUS_CONTENT_TYPE, r.contentType);
});

test('escaping and value formatting', () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabelValue('plain ü'), 'plain ü');
  assert.equal(escapeHelp('x "q" \\ \n'), 'x "q" \\\\ \\n'); // quotes stay in HELP
  assert.equal(formatValue(Number.POSITIVE_INFINITY), '+Inf');
  assert.equal(formatValue(Number.NEGATIVE_INFINITY), '-Inf');
  assert.equal(formatValue(Number.NaN), 'NaN');
  assert.equal(formatValue(0.00025), '0.00025');
  assert.equal(formatValue(1e21), '1e+21');
  const r = new Registry();
  r.gauge({ name: 'g', help: 'h' }).set(undefined, Number.POSITIVE_INFINITY);
  assert.match(r.render(), /^g \+Inf$/m);
});

test('bound series, gauges up and down, counters mirrored with set, collect hooks', () => {
  const r = new Registry();
  const c = r.counter({ name: 'c_total', help: 'c', labelNames: ['k'] });
  const bound = c.labels({ k: 'a' });
  for (let i = 0; i < 1000; i++) bound.inc(3);
  assert.equal(c.get({ k: 'a' }), 3000);
  assert.equal(bound.get(), 3000);
  const g = r.gauge({ name: 'g', help: 'g', labelNames: ['k'] });
  const gb = g.labels({ k: 'x' });
  gb.inc(5);
  gb.dec(2);
  g.dec({ k: 'x' });
  assert.equal(g.get({ k: 'x' }), 2);
  c.set({ k: 'b' }, 42);
  let n = 0;
  r.onCollect(() => {
    n++;
    g.set({ k: 'x' }, 100 + n);
  });
  const text = r.render();
  assert.match(text, /^c_total\{k="b"\} 42$/m);
  assert.match(text, /^g\{k="x"\} 101$/m);
  assert.match(r.render(), /^g\{k="x"\} 102$/m);
  const h = r.histogram({ name: 'h', help: 'h', buckets: [1, 2] });
  h.observe(undefined, Number.NaN); // ignored
  h.labels({}).observe(2);
  assert.deepEqual(h.snapshot(), { buckets: [0, 1, 1], sum: 2, count: 1 });
});

test('misuse is refused with INVALID_ARGUMENT', () => {
  const r = new Registry();
  const c = r.counter({ name: 'x_total', help: 'x', labelNames: ['a'] });
  const bad = (f: () => unknown, re: RegExp): void =>
    assert.throws(
      f,
      (e: unknown) => isRoamlinkError(e, ErrorCode.INVALID_ARGUMENT) && re.test(e.message),
    );
  bad(() => c.inc({ a: '1' }, -1), /only goes up/);
  bad(() => c.inc({ a: '1' }, Number.NaN), /only goes up/);
  bad(() => c.labels({ a: '1' }).inc(-2), /only goes up/);
  bad(() => c.inc({}), /takes labels \{a\}, got \{\}/);
  bad(() => c.inc({ a: '1', b: '2' }), /takes labels \{a\}, got \{a, b\}/);
  bad(() => c.inc({ b: '1' }), /takes labels \{a\}/);
  bad(() => c.set({ a: '1' }, -1), /never negative/);
  bad(() => r.counter({ name: 'x_total', help: 'again' }), /clashes with x_total/);
  bad(() => r.counter({ name: '1bad', help: '' }), /metric name "1bad"/);
  bad(() => r.counter({ name: 'ok', help: '', labelNames: ['__x'] }), /label name "__x"/);
  bad(() => r.counter({ name: 'ok2', help: '', labelNames: ['a-b'] }), /label name "a-b"/);
  bad(() => r.counter({ name: 'ok3', help: '', labelNames: ['a', 'a'] }), /duplicate label/);
  bad(() => r.histogram({ name: 'h1', help: '', buckets: [] }), /needs buckets/);
  bad(() => r.histogram({ name: 'h2', help: '', buckets: [1, 1] }), /strictly increasing/);
  bad(
    () => r.histogram({ name: 'h3', help: '', buckets: [1, Number.POSITIVE_INFINITY] }),
    /finite/,
  );
  bad(
    () => r.histogram({ name: 'h4', help: '', buckets: [1], labelNames: ['le'] }),
    /label name "le"/,
  );
  r.histogram({ name: 'lat', help: '', buckets: [1] });
  bad(() => r.counter({ name: 'lat_count', help: '' }), /clashes with lat/);
  // Nothing above changed what renders: the failed declarations left no trace.
  assert.equal(r.render().match(/^# TYPE/gm)?.length, 2);
});

test('roamlink metrics: names, types, units, label values pre-created', () => {
  const r = new Registry();
  let sessions = 7;
  const stats = newSessionStats();
  const m = relayMetrics(r, {
    sessions: () => sessions,
    stats: () => stats,
    forgotten: () => 4,
    held: () => ({ fromClients: 1234, toClients: 56 }),
  });
  stats.handshakes = 5;
  stats.rekeys = 2;
  stats.unknownSpiHints = 3;
  stats.espDrops.replay = 9;
  stats.controlDrops.peer_not_allowed = 1;
  m.handovers.inc({ cause: 'rebinding' });
  m.verdicts.inc({ verdict: 'address_and_port' });
  m.receivedBytes.labels({ encapsulation: 'udp' }).inc(1500);
  m.packetsDropped.inc({ reason: 'queue_full' });
  m.streamsRefused.inc({ protocol: 'tcp', code: 'policy' });
  m.observeRttMs('udp', 0.1); // exactly on the first bound
  m.observeRttMs('udp', 12);
  m.observeRttMs('udp', 5000);
  const text = r.render();
  const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => `${x[1]} ${x[2]}`);
  assert.deepEqual(types, [
    'roamlink_sessions gauge',
    'roamlink_sessions_forgotten_total counter',
    'roamlink_handshakes_total counter',
    'roamlink_rekeys_total counter',
    'roamlink_unknown_spi_hints_total counter',
    'roamlink_handovers_total counter',
    'roamlink_verdicts_total counter',
    'roamlink_registrations_total counter',
    'roamlink_received_bytes_total counter',
    'roamlink_sent_bytes_total counter',
    'roamlink_packets_dropped_total counter',
    'roamlink_streams_opened_total counter',
    'roamlink_streams_refused_total counter',
    'roamlink_stream_sent_bytes_total counter',
    'roamlink_stream_received_bytes_total counter',
    'roamlink_stream_held_bytes gauge',
    'roamlink_rtt_seconds histogram',
  ]);
  for (const line of [
    'roamlink_sessions 7',
    'roamlink_sessions_forgotten_total 4',
    'roamlink_handshakes_total 5',
    'roamlink_rekeys_total 2',
    'roamlink_unknown_spi_hints_total 3',
    'roamlink_handovers_total{cause="rebinding"} 1',
    'roamlink_handovers_total{cause="upgrade"} 0',
    'roamlink_verdicts_total{verdict="address_and_port"} 1',
    'roamlink_verdicts_total{verdict="protocol"} 0',
    'roamlink_registrations_total{encapsulation="http-poll"} 0',
    'roamlink_received_bytes_total{encapsulation="udp"} 1500',
    'roamlink_packets_dropped_total{reason="replay"} 9',
    'roamlink_packets_dropped_total{reason="peer_not_allowed"} 1',
    'roamlink_packets_dropped_total{reason="queue_full"} 1',
    'roamlink_streams_refused_total{protocol="tcp",code="policy"} 1',
    'roamlink_streams_opened_total{protocol="udp"} 0',
    'roamlink_stream_held_bytes{direction="from_clients"} 1234',
    'roamlink_stream_held_bytes{direction="to_clients"} 56',
    'roamlink_rtt_seconds_bucket{encapsulation="udp",le="0.0001"} 1',
    'roamlink_rtt_seconds_bucket{encapsulation="udp",le="0.01"} 1',
    'roamlink_rtt_seconds_bucket{encapsulation="udp",le="0.025"} 2',
    'roamlink_rtt_seconds_bucket{encapsulation="udp",le="2"} 2',
    'roamlink_rtt_seconds_bucket{encapsulation="udp",le="+Inf"} 3',
    'roamlink_rtt_seconds_count{encapsulation="udp"} 3',
  ]) {
    assert.ok(text.split('\n').includes(line), line);
  }
  assert.match(text, /^roamlink_rtt_seconds_sum\{encapsulation="udp"\} 5\.0121\d*$/m);
  // Values read at render time follow their sources.
  sessions = 3;
  stats.handshakes = 6;
  const again = r.render();
  assert.match(again, /^roamlink_sessions 3$/m);
  assert.match(again, /^roamlink_handshakes_total 6$/m);
  // Every sample line belongs to the family declared above it, and every name is roamlink_*.
  for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) {
    assert.match(line, /^roamlink_[a-z_]+(\{[^}]*\})? [0-9.e+-]+$/, line);
  }
  assert.equal(RTT_BUCKETS_SECONDS[0], 0.0001);
  assert.equal(RTT_BUCKETS_SECONDS.at(-1), 2);
});
