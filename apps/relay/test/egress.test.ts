/**
 * The egress policy: address parsing (RFC 4291 §2.2 text forms, RFC 5952 canonical output),
 * the special-purpose defaults at every range's edges, IPv4-mapped and embedded addresses, ports,
 * the allow/deny precedence, names, and resolution through an injected lookup (DNS rebinding).
 */
import assert from 'node:assert/strict';
import { lookup as dnsLookup } from 'node:dns/promises';
import { test } from 'node:test';
import { ErrorCode, isRoamlinkError } from '@roamlink/core';
import fc from 'fast-check';
import {
  type EgressLookup,
  EgressPolicy,
  formatIp,
  type LookupAnswer,
  parseEgressRule,
  parseIp,
  SPECIAL_RANGES,
} from '../src/egress.ts';

test('parseIp: IPv4, IPv6 text forms, mapped addresses become IPv4', () => {
  const cases: [string, string | undefined][] = [
    ['1.2.3.4', '1.2.3.4'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['::', '::'],
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['2001:DB8:0:0:8:800:200C:417A', '2001:db8::8:800:200c:417a'],
    ['ff01::101', 'ff01::101'],
    ['0:0:0:0:0:0:13.1.68.3', '::d01:4403'],
    ['::ffff:129.144.52.38', '129.144.52.38'],
    ['::ffff:7f00:1', '127.0.0.1'],
    ['0:0:0:0:0:ffff:10.0.0.1', '10.0.0.1'],
    ['[::ffff:127.0.0.1]', '127.0.0.1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['1::', '1::'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    // Not addresses.
    ['01.2.3.4', undefined],
    ['256.0.0.1', undefined],
    ['1.2.3', undefined],
    ['1.2.3.4.5', undefined],
    ['127.1', undefined],
    ['2130706433', undefined],
    ['0x7f.0.0.1', undefined],
    ['::1::', undefined],
    ['1:2:3:4:5:6:7:8:9', undefined],
    ['1:2:3:4:5:6:7', undefined],
    [':1::2', undefined],
    ['12345::', undefined],
    ['fe80::1%', undefined],
    ['::ffff:1.2.3', undefined],
    ['', undefined],
    ['example.com', undefined],
  ];
  for (const [input, want] of cases) {
    const a = parseIp(input);
    assert.equal(a === undefined ? undefined : formatIp(a), want, input);
  }
  assert.equal(parseIp('::ffff:1.2.3.4')?.family, 4);
  assert.equal(parseIp('::1.2.3.4')?.family, 6);
});

test('formatIp: RFC 5952 §4 canonical text', () => {
  const cases: [string, string][] = [
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'], // §4.1 leading zeros, §4.2.1
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // §4.2.2 one zero word stays
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // §4.2.3 the longest run
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // §4.2.3 the first of equal runs
    ['2001:DB8::AAAA', '2001:db8::aaaa'], // §4.3 lower case
    ['0:0:0:0:0:0:0:0', '::'],
    ['1:0:0:0:0:0:0:0', '1::'],
  ];
  for (const [input, want] of cases) assert.equal(formatIp(parseIp(input)!), want, input);
});

test('parseIp ∘ formatIp is the identity on any 128-bit address', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), (n) => {
      const text = formatIp({ family: 6, n });
      const back = parseIp(text)!;
      // A mapped address comes back as its IPv4 address.
      if (n >> 32n === 0xffffn) return back.family === 4 && back.n === (n & 0xffffffffn);
      return back.family === 6 && back.n === n;
    }),
    { numRuns: 500 },
  );
});

test('default policy: special-purpose ranges denied at both edges, neighbours allowed', () => {
  const p = new EgressPolicy();
  const denied = [
    '0.0.0.0',
    '0.255.255.255',
    '10.0.0.0',
    '10.255.255.255',
    '100.64.0.0',
    '100.127.255.255',
    '127.0.0.1',
    '127.255.255.255',
    '169.254.0.0',
    '169.254.255.255',
    '172.16.0.0',
    '172.31.255.255',
    '192.0.0.0',
    '192.0.0.255',
    '192.0.2.1',
    '192.88.99.1',
    '192.168.0.0',
    '192.168.255.255',
    '198.18.0.0',
    '198.19.255.255',
    '198.51.100.7',
    '203.0.113.255',
    '224.0.0.1',
    '239.255.255.255',
    '240.0.0.0',
    '255.255.255.255',
    '::',
    '::1',
    '::2', // deprecated IPv4-compatible
    '::ffff:0:0:1', // IPv4-translated
    '::ffff:10.0.0.1',
    '::ffff:7f00:1',
    '64:ff9b:1::1',
    '100::1',
    '2001::1',
    '2001:1ff:ffff::1',
    '2001:db8::1',
    '3fff::1',
    '3fff:fff:ffff::1',
    '5f00::1',
    'fc00::1',
    'fdff:ffff::1',
    'fe80::1',
    'febf:ffff::1',
    'fec0::1',
    'ff02::1',
    '1fff:ffff::1',
    '4000::1',
    'e000::1',
  ];
  const allowed = [
    '1.0.0.0',
    '9.255.255.255',
    '11.0.0.0',
    '100.63.255.255',
    '100.128.0.0',
    '126.255.255.255',
    '128.0.0.0',
    '169.253.255.255',
    '169.255.0.0',
    '172.15.255.255',
    '172.32.0.0',
    '192.0.1.0',
    '192.167.255.255',
    '192.169.0.0',
    '198.17.255.255',
    '198.20.0.0',
    '223.255.255.255',
    '8.8.8.8',
    '::ffff:8.8.8.8',
    '2000::1',
    '2001:200::1',
    '2001:db7:ffff::1',
    '2001:db9::1',
    '2606:4700::1111',
    '3fff:1000::1',
    '3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
  ];
  for (const ip of denied) {
    const d = p.checkAddress(ip, 443);
    assert.equal(d.ok, false, `${ip} should be denied`);
    assert.ok(!d.ok && d.code === 'policy' && /denied by default/.test(d.reason), ip);
  }
  for (const ip of allowed) assert.equal(p.checkAddress(ip, 443).ok, true, `${ip} should pass`);
});

test('denial reasons name the most specific range and its RFC', () => {
  const p = new EgressPolicy();
  const r = (ip: string): string => {
    const d = p.checkAddress(ip, 80);
    assert.ok(!d.ok);
    return d.reason;
  };
  assert.match(r('127.0.0.1'), /127\.0\.0\.0\/8 \(loopback, RFC 1122/);
  assert.match(r('255.255.255.255'), /255\.255\.255\.255\/32 \(limited broadcast/);
  assert.match(r('::1'), /::1\/128 \(loopback, RFC 4291/);
  assert.match(r('2001:db8::1'), /2001:db8::\/32 \(documentation, RFC 3849/);
  assert.match(r('[fd00::1]'), /^\[fd00::1\]:80 is in fc00::\/7 \(unique local/);
  // Every table entry is the reason for its first or last address (none is wholly shadowed).
  for (const s of SPECIAL_RANGES) {
    const hostBits = BigInt((s.cidr.family === 4 ? 32 : 128) - s.cidr.bits);
    const edges = [s.cidr.base, s.cidr.base | ((1n << hostBits) - 1n)];
    const reasons = edges.map((n) => {
      const d = p.checkAddress(formatIp({ family: s.cidr.family, n }), 80);
      assert.equal(d.ok, false);
      return d.ok ? '' : d.reason;
    });
    assert.ok(
      reasons.some((r) => r.includes(s.name)),
      `${s.name}: ${reasons.join(' / ')}`,
    );
  }
});

test('NAT64 and 6to4 addresses are judged by the IPv4 address they embed', () => {
  const p = new EgressPolicy();
  const cases: [string, boolean][] = [
    ['64:ff9b::8.8.8.8', true],
    ['64:ff9b::127.0.0.1', false],
    ['64:ff9b::a00:1', false],
    ['64:ff9b::c0a8:101', false],
    ['2002:808:808::1', true],
    ['2002:c0a8:101::1', false],
    ['2002:7f00:1::', false],
  ];
  for (const [ip, ok] of cases) assert.equal(p.checkAddress(ip, 53).ok, ok, ip);
  const d = p.checkAddress('64:ff9b::10.1.2.3', 53);
  assert.ok(!d.ok && /embeds 10\.1\.2\.3, in 10\.0\.0\.0\/8/.test(d.reason));
  // A deny rule on the IPv4 address also stops the translated forms of it.
  const q = new EgressPolicy({ deny: ['8.8.8.0/24'] });
  assert.equal(q.checkAddress('64:ff9b::8.8.8.8', 53).ok, false);
  assert.equal(q.checkAddress('2002:808:808::1', 53).ok, false);
  assert.equal(q.checkAddress('64:ff9b::8.8.4.4', 53).ok, true);
  // An allow rule on an IPv4 address does not open its NAT64 form (a translator's own loopback).
  const r = new EgressPolicy({ allow: ['127.0.0.1'] });
  assert.equal(r.checkAddress('64:ff9b::127.0.0.1', 80).ok, false);
});

test('allow overrides the defaults, deny beats allow; mapped addresses and CIDRs are IPv4', () => {
  const p = new EgressPolicy({
    allow: ['127.0.0.1', '10.0.0.0/8', '::ffff:192.168.0.0/112', '[fd00::/8]:22'],
    deny: ['10.0.0.5', '10.9.0.0/16:443'],
  });
  const cases: [string, number, boolean][] = [
    ['127.0.0.1', 80, true],
    ['::ffff:127.0.0.1', 80, true],
    ['127.0.0.2', 80, false],
    ['::1', 80, false],
    ['10.0.0.4', 80, true],
    ['10.0.0.5', 80, false],
    ['::ffff:10.0.0.5', 80, false],
    ['10.9.1.1', 80, true],
    ['10.9.1.1', 443, false],
    ['192.168.3.4', 80, true],
    ['192.169.3.4', 80, true], // public anyway
    ['192.168.0.0', 80, true],
    ['fd12::1', 22, true],
    ['fd12::1', 23, false],
    ['fc00::1', 22, false],
  ];
  for (const [ip, port, ok] of cases) {
    assert.equal(p.checkAddress(ip, port).ok, ok, `${ip}:${port}`);
  }
  const d = p.checkAddress('10.0.0.5', 80);
  assert.ok(!d.ok && d.reason === '10.0.0.5:80 is denied by rule 10.0.0.5');
  const a = p.checkAddress('10.0.0.4', 80);
  assert.ok(a.ok && a.reason === 'allowed by rule 10.0.0.0/8');
});

test('ports: single, lists, ranges, edges; bad ports are refused', () => {
  const p = new EgressPolicy({ allow: ['10.0.0.0/8:22,80-90'], deny: [':25', '*:6000-6010'] });
  const cases: [string, number, boolean][] = [
    ['10.1.1.1', 22, true],
    ['10.1.1.1', 21, false],
    ['10.1.1.1', 23, false],
    ['10.1.1.1', 79, false],
    ['10.1.1.1', 80, true],
    ['10.1.1.1', 85, true],
    ['10.1.1.1', 90, true],
    ['10.1.1.1', 91, false],
    ['8.8.8.8', 25, false],
    ['8.8.8.8', 26, true],
    ['8.8.8.8', 5999, true],
    ['8.8.8.8', 6000, false],
    ['8.8.8.8', 6010, false],
    ['8.8.8.8', 6011, true],
    ['8.8.8.8', 1, true],
    ['8.8.8.8', 65535, true],
    ['8.8.8.8', 0, false],
    ['8.8.8.8', 65536, false],
    ['8.8.8.8', 1.5, false],
    ['8.8.8.8', Number.NaN, false],
    ['8.8.8.8', -1, false],
  ];
  for (const [ip, port, ok] of cases)
    assert.equal(p.checkAddress(ip, port).ok, ok, `${ip}:${port}`);
  assert.equal(p.checkName('mail.example.com', 25).ok, false);
  assert.equal(p.checkName('mail.example.com', 0).ok, false);
});

test('names: exact and *.suffix rules, case and trailing dot, invalid names', () => {
  const p = new EgressPolicy({ deny: ['blocked.example', '*.corp.example:443'] });
  const cases: [string, number, boolean][] = [
    ['blocked.example', 80, false],
    ['BLOCKED.Example.', 80, false],
    ['a.blocked.example', 80, true], // exact rule: subdomains are other names
    ['corp.example', 443, true], // *. covers names below only
    ['a.corp.example', 443, false],
    ['A.B.Corp.Example', 443, false],
    ['a.corp.example', 80, true],
    ['xcorp.example', 443, true],
    ['example.com', 443, true],
    ['_srv.example.com', 443, true],
    // Not names: refused before any lookup.
    ['a..b', 443, false],
    ['-x.example', 443, false],
    [`${'a'.repeat(64)}.example`, 443, false],
    [`${'a.'.repeat(127)}com`, 443, false],
    ['ex ample.com', 443, false],
    ['é.example', 443, false],
    ['127.1', 443, false],
    ['2130706433', 443, false],
    ['0x7f.1', 443, false],
    ['', 443, false],
  ];
  for (const [host, port, ok] of cases)
    assert.equal(p.checkName(host, port).ok, ok, `${host}:${port}`);
  // An IP literal given as a host is checked as an address.
  assert.equal(p.checkName('127.0.0.1', 80).ok, false);
  assert.equal(p.checkName('[2606:4700::1111]', 80).ok, true);
});

test('default deny: only allow rules let traffic out; special ranges stay closed', () => {
  const p = new EgressPolicy({
    defaultAction: 'deny',
    allow: ['*:443', 'api.example.com:80'],
  });
  assert.equal(p.checkAddress('8.8.8.8', 443).ok, true);
  assert.equal(p.checkAddress('8.8.8.8', 80).ok, false);
  assert.equal(p.checkAddress('10.0.0.1', 443).ok, false, 'a host wildcard does not open 10/8');
  assert.equal(p.checkName('api.example.com', 80).ok, true);
  assert.equal(p.checkName('www.example.com', 80).ok, false);
  assert.equal(p.checkName('www.example.com', 443).ok, true);
  assert.equal(p.checkAddress('93.184.216.34', 80, 'api.example.com').ok, true);
  assert.equal(p.checkAddress('93.184.216.34', 80).ok, false);
});

test('rule syntax: canonical forms and JSON objects', () => {
  const ok: [Parameters<typeof parseEgressRule>[0], string][] = [
    ['127.0.0.1', '127.0.0.1'],
    [' 10.0.0.0/8:22,80-90 ', '10.0.0.0/8:22,80-90'],
    ['*.Example.COM.:443', '*.example.com:443'],
    [':25', '*:25'],
    ['*', '*'],
    ['fe80::/10', 'fe80::/10'],
    ['[FD00::/8]:22', '[fd00::/8]:22'],
    ['[::1]:8080', '[::1]:8080'],
    ['::ffff:10.0.0.0/104', '10.0.0.0/8'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['::/0', '::/0'],
    ['host.example:1-65535', 'host.example:1-65535'],
    [{ cidr: '10.0.0.0/8', ports: [22, '80-90'] }, '10.0.0.0/8:22,80-90'],
    [{ host: '*.x.example' }, '*.x.example'],
    [{ host: 'a.example', ports: 443 }, 'a.example:443'],
    [{ ports: '25' }, '*:25'],
    [{ cidr: '2001:db8::/32', ports: [443] }, '[2001:db8::/32]:443'],
  ];
  for (const [input, want] of ok)
    assert.equal(parseEgressRule(input).text, want, JSON.stringify(input));
  // The canonical text parses back to itself.
  for (const [, want] of ok) assert.equal(parseEgressRule(want).text, want);
});

test('rule syntax: bad rules are refused with a reason and the expected form', () => {
  const bad: [unknown, RegExp][] = [
    ['', /empty egress rule/],
    ['10.1.0.0/8', /host bits set \(the network is 10\.0\.0\.0\/8\)/],
    ['10.0.0.0/33', /prefix length must be 0–32/],
    ['fe80::/129', /prefix length must be 0–128/],
    ['300.1.1.1', /not an IP address/],
    ['[::1', /"\[" without "\]"/],
    ['[1.2.3.4]:80', /brackets are for IPv6/],
    ['[::1]80', /after "\]" comes ":PORTS"/],
    ['fe80::/10:22', /IPv6 rule with ports is written \[addr\/len\]:ports/],
    ['a*b.example', /"\*" is allowed only as/],
    ['*.', /not a valid \*\.suffix/],
    ['host:', /empty port list/],
    ['host:0', /port "0" is not 1–65535/],
    ['host:65536', /port "65536" is not 1–65535/],
    ['host:9-3', /runs backwards/],
    ['host:22,,23', /port "" is not/],
    ['bad_name-.example', /not a valid host name/],
    [{ host: 'a.example', cidr: '10.0.0.0/8' }, /not both/],
    [{ host: '10.0.0.0/8' }, /put addresses in "cidr"/],
    [{ cidr: 'x.example' }, /not an IP address/],
    [{ ports: [] }, /"ports" is empty/],
    [{ ports: [true] }, /a port is a number/],
    [{ hosts: 'a' }, /unknown key "hosts"/],
    [42, /a string or an object/],
    [null, /a string or an object/],
  ];
  for (const [input, re] of bad) {
    assert.throws(
      () => parseEgressRule(input as string),
      (e: unknown) => isRoamlinkError(e, ErrorCode.INVALID_ARGUMENT) && re.test(e.message),
      JSON.stringify(input),
    );
  }
  assert.throws(
    () => new EgressPolicy({ allow: ['127.0.0.1'], deny: ['ok.example', 'x:0'] }),
    /egress deny rule 2: "x:0": port "0"/,
  );
});

/** A lookup that records its calls and answers from a script. */
function scripted(
  ...answers: (readonly LookupAnswer[] | Error)[]
): EgressLookup & { calls: string[] } {
  const calls: string[] = [];
  const f = async (host: string, opts: { all: true }): Promise<readonly LookupAnswer[]> => {
    assert.equal(opts.all, true);
    calls.push(host);
    const a = answers[Math.min(calls.length - 1, answers.length - 1)]!;
    if (a instanceof Error) throw a;
    return a;
  };
  return Object.assign(f, { calls });
}
const v4 = (address: string): LookupAnswer => ({ address, family: 4 });
const v6 = (address: string): LookupAnswer => ({ address, family: 6 });

test('resolveAndCheck: first allowed answer, in resolver order; literals need no lookup', async () => {
  const p = new EgressPolicy();
  const mixed = scripted([v4('10.0.0.1'), v6('fe80::1'), v4('93.184.216.34'), v6('2606:4700::1')]);
  const r = await p.resolveAndCheck('www.example.com', 443, mixed);
  assert.deepEqual(r, {
    ok: true,
    address: '93.184.216.34',
    family: 4,
    reason: 'public address, allowed by default',
  });
  assert.deepEqual(mixed.calls, ['www.example.com']);

  const never = scripted(new Error('must not be called'));
  const lit = await p.resolveAndCheck('[2606:4700:0::1111]', 443, never);
  assert.ok(lit.ok && lit.address === '2606:4700::1111' && lit.family === 6);
  const priv = await p.resolveAndCheck('192.168.1.1', 443, never);
  assert.ok(!priv.ok && priv.code === 'policy');
  assert.equal(never.calls.length, 0);

  // A mapped answer is an IPv4 destination.
  const mapped = await p.resolveAndCheck('m.example', 80, scripted([v6('::ffff:93.184.216.34')]));
  assert.ok(mapped.ok && mapped.address === '93.184.216.34' && mapped.family === 4);
});

test('resolveAndCheck: DNS rebinding is caught on the resolved address, and resolved once', async () => {
  const p = new EgressPolicy();
  // The attacker's name answers a public address first, then loopback.
  const rebinding = scripted([v4('93.184.216.34')], [v4('127.0.0.1')]);
  const first = await p.resolveAndCheck('evil.example', 8080, rebinding);
  assert.ok(first.ok);
  // The caller connects to this literal: it parses as the very address that was checked.
  assert.equal(parseIp(first.address) && formatIp(parseIp(first.address)!), '93.184.216.34');
  assert.equal(rebinding.calls.length, 1, 'resolved exactly once');
  // Had the relay resolved again, the second answer would be refused, not connected to.
  const second = await p.resolveAndCheck('evil.example', 8080, rebinding);
  assert.ok(!second.ok && second.code === 'policy');
  assert.match(
    second.reason,
    /evil\.example resolved only to denied addresses: 127\.0\.0\.1:8080 is in 127/,
  );
  // Only private answers: refused, every answer's reason given.
  const inside = await p.resolveAndCheck(
    'intranet.example',
    80,
    scripted([v4('10.1.2.3'), v6('fd00::1')]),
  );
  assert.ok(!inside.ok && inside.code === 'policy');
  assert.match(
    inside.reason,
    /10\.1\.2\.3:80 is in 10\.0\.0\.0\/8.*\[fd00::1\]:80 is in fc00::\/7/,
  );
});

test('resolveAndCheck: name rules before the lookup; a named allow opens its answers', async () => {
  const p = new EgressPolicy({
    allow: ['intranet.example', 'db.example:5432'],
    deny: ['*.blocked.example', '10.66.0.0/16'],
  });
  const never = scripted(new Error('must not be called'));
  const blocked = await p.resolveAndCheck('x.blocked.example', 443, never);
  assert.ok(
    !blocked.ok &&
      blocked.code === 'policy' &&
      /denied by rule \*\.blocked\.example/.test(blocked.reason),
  );
  assert.equal(never.calls.length, 0);

  const named = await p.resolveAndCheck('Intranet.Example.', 80, scripted([v4('10.1.2.3')]));
  assert.ok(named.ok && named.address === '10.1.2.3' && /intranet\.example/.test(named.reason));
  // The named allow does not beat a deny rule.
  const denied = await p.resolveAndCheck('intranet.example', 80, scripted([v4('10.66.1.1')]));
  assert.ok(!denied.ok && /denied by rule 10\.66\.0\.0\/16/.test(denied.reason));
  // Ports on a named allow still count.
  assert.equal((await p.resolveAndCheck('db.example', 5432, scripted([v4('10.2.0.9')]))).ok, true);
  assert.equal((await p.resolveAndCheck('db.example', 22, scripted([v4('10.2.0.9')]))).ok, false);
});

test('resolveAndCheck: lookup failures are dns denials, never throws', async () => {
  const p = new EgressPolicy();
  const nx = Object.assign(new Error('getaddrinfo ENOTFOUND nx.example'), { code: 'ENOTFOUND' });
  const r1 = await p.resolveAndCheck('nx.example', 443, scripted(nx));
  assert.deepEqual(r1, {
    ok: false,
    code: 'dns',
    reason: 'resolving nx.example failed: ENOTFOUND',
  });
  const r2 = await p.resolveAndCheck('empty.example', 443, scripted([]));
  assert.deepEqual(r2, { ok: false, code: 'dns', reason: 'empty.example has no addresses' });
  const junk = scripted([{ address: 'not-an-ip', family: 4 }, v4('8.8.8.8')]);
  const r3 = await p.resolveAndCheck('junk.example', 443, junk);
  assert.ok(r3.ok && r3.address === '8.8.8.8');
  const r4 = await p.resolveAndCheck('bad..name', 443, scripted([v4('8.8.8.8')]));
  assert.ok(!r4.ok && r4.code === 'policy');
});

test('resolveAndCheck takes node:dns/promises lookup as is (localhost, from the hosts file)', async () => {
  const closed = await new EgressPolicy().resolveAndCheck('localhost', 8080, dnsLookup);
  assert.ok(!closed.ok && closed.code === 'policy', 'loopback is closed by default');
  const open = new EgressPolicy({ allow: ['127.0.0.0/8', '::1'] });
  const r = await open.resolveAndCheck('localhost', 8080, dnsLookup);
  assert.ok(r.ok && (r.address === '::1' || r.address.startsWith('127.')), JSON.stringify(r));
});
