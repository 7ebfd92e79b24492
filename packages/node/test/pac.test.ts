/**
 * Proxy auto-config: answers parsed; the standard helpers as a script sees them (DNS from the
 * table given, time from the clock given); what a script cannot do (require, process, code from
 * strings) and how long it may run; loading from a file and over HTTP; choosing the proxy.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { compilePac, loadPac, PacError, pacProxyFor, parsePacResult } from '../src/pac.ts';

test('FindProxyForURL answers: PROXY, HTTP, HTTPS, DIRECT, and what roamlink does not speak', () => {
  assert.deepEqual(
    parsePacResult(' PROXY a.corp:8080 ;HTTPS b.corp:443; SOCKS5 c:1080; SOCKS d:1080; DIRECT;'),
    [
      { type: 'proxy', url: 'http://a.corp:8080' },
      { type: 'proxy', url: 'https://b.corp:443' },
      // SOCKS5 with names resolved by the proxy, as browsers use it; plain SOCKS is SOCKS4.
      { type: 'proxy', url: 'socks5h://c:1080' },
      { type: 'unsupported', entry: 'SOCKS d:1080' },
      { type: 'direct' },
    ],
  );
  assert.deepEqual(parsePacResult('http [fd00::1]:3128'), [
    { type: 'proxy', url: 'http://[fd00::1]:3128' },
  ]);
  assert.deepEqual(parsePacResult(''), []);
});

const HELPERS_PAC = `
function FindProxyForURL(url, host) {
  return [
    url, host,
    isPlainHostName(host), isPlainHostName('intranet'),
    dnsDomainIs(host, '.corp.example'), localHostOrDomainIs('www', 'www.corp.example'),
    shExpMatch(host, '*.corp.*'), shExpMatch(host, 'relay?corp*'),
    isResolvable(host), dnsResolve(host), isResolvable('elsewhere.example'),
    isInNet(host, '10.1.0.0', '255.255.0.0'), isInNet(host, '10.2.0.0', '255.255.0.0'),
    isInNet('192.0.2.7', '192.0.2.0', '255.255.255.0'),
    dnsDomainLevels(host), typeof myIpAddress(),
    weekdayRange('MON', 'FRI'), weekdayRange('SAT'), timeRange(9, 17), timeRange(18, 6),
    dateRange('NOV'), dateRange(1, 15),
    typeof require, typeof process, typeof fetch,
  ].join(' ');
}`;

test('the helpers as a script sees them: DNS from the table, time from the clock, nothing else', () => {
  // Wednesday 2026-11-25, 10:30 local time.
  const pac = compilePac(
    HELPERS_PAC,
    'helpers.pac',
    new Map([['relay.corp.example', '10.1.2.3']]),
    () => new Date(2026, 10, 25, 10, 30),
  );
  const [answer] = pac
    .choices('wss://relay.corp.example:8443/rl/ws?sid=abc')
    .map((c) => (c.type === 'unsupported' ? c.entry : ''));
  assert.deepEqual(answer!.split(' '), [
    // Asked as https, without path or query.
    'https://relay.corp.example:8443/',
    'relay.corp.example',
    'false',
    'true',
    'true',
    'true',
    'true',
    'true',
    'true',
    '10.1.2.3',
    'false',
    'true',
    'false',
    'true',
    '2',
    'string',
    'true',
    'false',
    'true',
    'false',
    'true',
    'false',
    'undefined',
    'undefined',
    'undefined',
  ]);
});

test('a script that does not load, throws, runs forever or answers no string: a PacError', () => {
  const cases: [string, RegExp][] = [
    ['function FindProxyForURL(', /PAC bad\.pac: /],
    ['var x = 1;', /no FindProxyForURL function/],
    ['function FindProxyForURL() { throw new Error("boom"); }', /FindProxyForURL failed: boom/],
    [
      'function FindProxyForURL() { for (;;) {} }',
      /FindProxyForURL failed: Script execution timed out/,
    ],
    ['function FindProxyForURL() { return 42; }', /returned number, not a string/],
    // No code from strings: what eval would allow is refused.
    [
      'function FindProxyForURL() { return eval("1+1"); }',
      /FindProxyForURL failed: Code generation from strings disallowed/,
    ],
  ];
  for (const [text, message] of cases) {
    const t0 = performance.now();
    assert.throws(
      () => compilePac(text, 'bad.pac').choices('http://relay.example/'),
      (e) => e instanceof PacError && message.test(e.message),
      text,
    );
    assert.ok(performance.now() - t0 < 5_000, 'bounded by the time limit');
  }
});

test("no way out to Node: neither the global's nor a helper's constructor compiles code", () => {
  // The classic escapes from a vm context: reach a Function of Node's through an object of
  // Node's, and compile "return process" with it. Inside, every object is the context's own,
  // whose Function refuses strings.
  for (const probe of [
    'this.constructor.constructor("return process")()',
    'dnsResolve.constructor("return process")()',
    'shExpMatch.constructor.constructor("return process")()',
    'Object.getPrototypeOf(isInNet).constructor("return process")()',
    '(function () { return this; })().constructor.constructor("return process")()',
    '__resolved.constructor.constructor("return process")()',
  ]) {
    const pac = compilePac(
      `function FindProxyForURL(u, h) {
        try { var p = ${probe}; return "PROXY escaped:" + (typeof p.pid); }
        catch (e) { return "DIRECT"; }
      }`,
      'escape.pac',
    );
    assert.equal(pacProxyFor(pac, 'http://relay.example/'), false, probe);
  }
});

test('choosing: the first entry roamlink speaks; DIRECT or nothing is no proxy; only SOCKS4 is an error', () => {
  const pac = compilePac(
    `function FindProxyForURL(url, host) {
      if (host === 'a') return 'SOCKS s:1080; PROXY p:3128; DIRECT';
      if (host === 'b') return 'DIRECT';
      if (host === 'c') return '';
      return 'SOCKS s:1080';
    }`,
    'choose.pac',
  );
  assert.equal(pacProxyFor(pac, 'ws://a:1/'), 'http://p:3128');
  assert.equal(pacProxyFor(pac, 'ws://b:1/'), false);
  assert.equal(pacProxyFor(pac, 'ws://c:1/'), false);
  assert.throws(
    () => pacProxyFor(pac, 'ws://d:1/'),
    /no entry roamlink speaks .*SOCKS s:1080.*not supported/,
  );
});

test('loading: from a file, over HTTP, and the errors of each', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rl-pac-'));
  const file = join(dir, 'proxy.pac');
  const text =
    'function FindProxyForURL(url, host) { return isResolvable(host) ? "PROXY p:1" : "DIRECT"; }';
  writeFileSync(file, text);
  // localhost is resolved before the script runs; the script sees it.
  assert.equal(
    pacProxyFor(await loadPac(file, ['localhost']), 'http://localhost:1/'),
    'http://p:1',
  );
  assert.equal(pacProxyFor(await loadPac(file, []), 'http://localhost:1/'), false);
  await assert.rejects(loadPac(join(dir, 'missing.pac')), /cannot load it \(ENOENT\)/);
  const server = createServer((req, res) => {
    if (req.url === '/wpad.dat')
      res.writeHead(200, { 'Content-Type': 'application/x-ns-proxy-autoconfig' }).end(text);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const pac = await loadPac(`${base}/wpad.dat`, ['localhost']);
    assert.equal(pac.source, `${base}/wpad.dat`);
    assert.equal(pacProxyFor(pac, 'ws://localhost:9/'), 'http://p:1');
    await assert.rejects(loadPac(`${base}/nothing`), /cannot load it \(HTTP 404\)/);
  } finally {
    server.close();
  }
});
