/**
 * Proxy authentication: MD4 (RFC 1320 §A.5 vectors), NTLMv2 (MS-NLMP §4.2.4 vectors, and the
 * messages' layout), Digest (RFC 7616 §3.9.1 vectors), Proxy-Authenticate parsing, the choice of
 * scheme attempt by attempt, and CONNECT through scripted proxies that ask for NTLM (on one
 * connection) or close the connection after each 407.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import {
  authenticateMessage,
  md4,
  negotiateMessage,
  ntlmv2Responses,
  ntowfv2,
  parseChallengeMessage,
} from '../src/ntlm.ts';
import { connectViaProxy, isProxyError, ProxyErrorCode, parseProxyUrl } from '../src/proxy.ts';
import {
  AuthRefusal,
  digestAuthorization,
  type ProxyAuthMemory,
  ProxyAuthSession,
  parseChallenges,
} from '../src/proxy-auth.ts';
import { scripted } from './scripted-proxy.ts';
import { seeded } from './seeded.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

test('MD4: the RFC 1320 §A.5 test suite', () => {
  const suite: [string, string][] = [
    ['', '31d6cfe0d16ae931b73c59d7e0c089c0'],
    ['a', 'bde52cb31de33e46245e05fbdbd6fb24'],
    ['abc', 'a448017aaf21d8525fc10ae87aa6729d'],
    ['message digest', 'd9130a8164549fe818874806e1c7014b'],
    ['abcdefghijklmnopqrstuvwxyz', 'd79e1c308aa5bbcdeea8ed63df412da9'],
    [
      'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789',
      '043f8582f241db351ce627e153e7f0e4',
    ],
    ['1234567890'.repeat(8), 'e33b4ddc9c38f2199c3e7b164fcc0536'],
  ];
  for (const [input, digest] of suite) {
    assert.equal(hex(md4(Buffer.from(input, 'latin1'))), digest, JSON.stringify(input));
  }
});

// MS-NLMP §4.2.1: User, Domain, Password; server challenge 0123456789abcdef, client challenge
// aa × 8, time 0. §4.2.4.3: the CHALLENGE_MESSAGE of the NTLMv2 example.
const SPEC_CHALLENGE = bytes(`
  4e544c4d53535000 02000000 0c000c00 38000000 33828ae2 0123456789abcdef 0000000000000000
  24002400 44000000 060070170000000f 530065007200760065007200
  02000c00 44006f006d00610069006e00 01000c00 530065007200760065007200 00000000`);
const SPEC_TARGET_INFO = bytes(`
  02000c00 44006f006d00610069006e00 01000c00 530065007200760065007200 00000000`);

test('NTLMv2: NTOWFv2, NTProofStr, the LMv2 response and the session base key (MS-NLMP §4.2.4)', () => {
  // §4.2.2.1.2: NTOWFv1 is MD4 of the UTF-16 password.
  assert.equal(hex(md4(Buffer.from('Password', 'utf16le'))), 'a4f49c406510bdcab6824ee7c30fd852');
  const key = ntowfv2('Password', 'User', 'Domain');
  assert.equal(hex(key), '0c868a403bfd7a93a3001ef22ef02e3f');
  const r = ntlmv2Responses({
    responseKey: key,
    serverChallenge: bytes('0123456789abcdef'),
    clientChallenge: bytes('aaaaaaaaaaaaaaaa'),
    timestamp: Buffer.alloc(8),
    targetInfo: SPEC_TARGET_INFO,
    zeroLm: false,
  });
  assert.equal(hex(r.nt.subarray(0, 16)), '68cd0ab851e51c96aabc927bebef6a1c');
  assert.equal(
    hex(r.nt.subarray(16)),
    `0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000 ${hex(SPEC_TARGET_INFO)} 00000000`.replace(
      /\s+/g,
      '',
    ),
  );
  assert.equal(hex(r.lm), `86c35097ac9cec102554764a57cccc19${'aa'.repeat(8)}`);
  assert.equal(hex(r.sessionBaseKey), '8de40ccadbc14a82f15cb0ad0de95ca3');
  // With the proxy's timestamp present, the LM response is 24 zero bytes (§3.1.5.1.2).
  const z = ntlmv2Responses({
    responseKey: key,
    serverChallenge: bytes('0123456789abcdef'),
    clientChallenge: bytes('aaaaaaaaaaaaaaaa'),
    timestamp: Buffer.alloc(8),
    targetInfo: SPEC_TARGET_INFO,
    zeroLm: true,
  });
  assert.equal(hex(z.lm), '00'.repeat(24));
});

test('NTLM messages: NEGOTIATE, the spec CHALLENGE parsed, an AUTHENTICATE that answers it', () => {
  const n = negotiateMessage();
  assert.equal(n.length, 32);
  assert.equal(n.subarray(0, 12).toString('latin1'), 'NTLMSSP\0\u0001\0\0\0');
  const flags = n.readUInt32LE(12);
  assert.ok(flags & 0x1 && flags & 0x200 && flags & 0x80000, 'Unicode, NTLM, extended security');

  const c = parseChallengeMessage(SPEC_CHALLENGE);
  assert.equal(c.flags, 0xe28a8233);
  assert.equal(hex(c.serverChallenge), '0123456789abcdef');
  assert.deepEqual(c.targetInfo, SPEC_TARGET_INFO);
  assert.equal(c.timestamp, undefined);

  const client = bytes('aaaaaaaaaaaaaaaa');
  const m = authenticateMessage(c, 'Domain\\User', 'Password', client);
  assert.equal(m.subarray(0, 12).toString('latin1'), 'NTLMSSP\0\u0003\0\0\0');
  const field = (i: number): Buffer => {
    const len = m.readUInt16LE(12 + 8 * i);
    assert.equal(m.readUInt16LE(14 + 8 * i), len);
    const off = m.readUInt32LE(16 + 8 * i);
    return m.subarray(off, off + len);
  };
  const [lm, nt, domain, user, workstation, sessionKey] = [0, 1, 2, 3, 4, 5].map(field);
  assert.equal(domain!.toString('utf16le'), 'Domain');
  assert.equal(user!.toString('utf16le'), 'User');
  assert.equal(workstation!.length + sessionKey!.length, 0);
  assert.equal(lm!.length, 24);
  // The NT response is NTProofStr ‖ temp, the proof keyed by NTOWFv2 over challenge ‖ temp;
  // temp carries the client challenge and the proxy's AV pairs as they came.
  const temp = nt!.subarray(16);
  const proof = createHmac('md5', ntowfv2('Password', 'User', 'Domain'))
    .update(c.serverChallenge)
    .update(temp)
    .digest();
  assert.deepEqual(nt!.subarray(0, 16), proof);
  assert.deepEqual(temp.subarray(16, 24), client);
  assert.deepEqual(temp.subarray(28, 28 + SPEC_TARGET_INFO.length), SPEC_TARGET_INFO);
  // The flags are those both offered, but OEM: the strings are UTF-16.
  assert.equal(m.readUInt32LE(60), (c.flags & flags & ~0x2) >>> 0, 'without OEM');

  for (const bad of [
    Buffer.from('NTLMSSP\0'),
    Buffer.concat([
      SPEC_CHALLENGE.subarray(0, 8),
      Buffer.from([1, 0, 0, 0]),
      SPEC_CHALLENGE.subarray(12),
    ]),
  ]) {
    assert.throws(() => parseChallengeMessage(bad));
  }
  // Target information that runs past the message.
  const cut = Buffer.from(SPEC_CHALLENGE.subarray(0, SPEC_CHALLENGE.length - 8));
  assert.throws(() => parseChallengeMessage(cut), /out of bounds/);
});

test('Digest: the RFC 7616 §3.9.1 examples, MD5 and SHA-256', () => {
  for (const [algorithm, response] of [
    ['MD5', '8ca523f5e9506fed4657c9700eebdbec'],
    ['SHA-256', '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1'],
  ] as const) {
    const [challenge] = parseChallenges([
      `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=${algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`,
    ]);
    const h = digestAuthorization({
      challenge: challenge!,
      username: 'Mufasa',
      password: 'Circle of Life',
      method: 'GET',
      uri: '/dir/index.html',
      cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
      nc: 1,
    });
    assert.match(h, new RegExp(`response="${response}"`), algorithm);
    assert.match(
      h,
      /^Digest username="Mufasa", realm="http-auth@example.org", uri="\/dir\/index.html", /,
    );
    assert.match(
      h,
      /nc=00000001, cnonce="f2\/wE4q74E6zIJEtWaHKaf5wv\/H5QzzpXusqGemxURZJ", qop=auth/,
    );
    assert.match(h, /opaque="FQhe\/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"$/);
  }
  // A name a quoted-string cannot carry goes as username* (RFC 7616 §3.4.4, RFC 8187).
  const [c] = parseChallenges(['Digest realm="r", nonce="n", qop="auth"']);
  const h = digestAuthorization({
    challenge: c!,
    username: 'Jäsøn',
    password: 'p',
    method: 'CONNECT',
    uri: 'h:1',
    cnonce: 'c',
    nc: 2,
  });
  assert.match(h, /^Digest username\*=UTF-8''J%C3%A4s%C3%B8n, /);
  assert.match(h, /nc=00000002/);
});

test('Proxy-Authenticate: several challenges per field, token68, quoted strings with escapes', () => {
  const cs = parseChallenges([
    'Negotiate, NTLM',
    'Digest realm="a \\"b\\", c", nonce=xyz, algorithm=SHA-256, Basic realm="r"',
    'NTLM TlRMTVNTUAACAAAA==',
  ]);
  assert.deepEqual(
    cs.map((c) => [c.scheme, c.token68, Object.fromEntries(c.params)]),
    [
      ['negotiate', undefined, {}],
      ['ntlm', undefined, {}],
      ['digest', undefined, { realm: 'a "b", c', nonce: 'xyz', algorithm: 'SHA-256' }],
      ['basic', undefined, { realm: 'r' }],
      ['ntlm', 'TlRMTVNTUAACAAAA==', {}],
    ],
  );
});

const session = (memory: ProxyAuthMemory = {}, secure = false, user: string | null = 'u') =>
  new ProxyAuthSession({
    username: user ?? undefined,
    password: 'pw',
    memory,
    method: 'CONNECT',
    uri: 'h:1',
    secure,
  });

test('the scheme, attempt by attempt: strongest offered first, each once; the proxy remembered', () => {
  // A plain proxy gets no password before it asks; Basic is what it asked for.
  const memory: ProxyAuthMemory = {};
  let s = session(memory);
  assert.equal(s.first(), undefined);
  assert.equal(s.on407(['Basic realm="x"']), `Basic ${Buffer.from('u:pw').toString('base64')}`);
  assert.deepEqual(s.on407(['Basic realm="x"']), new AuthRefusal('credentials rejected'));
  // ...and is sent at once next time.
  assert.match(session(memory).first() ?? '', /^Basic /);
  // To an https proxy Basic goes at once.
  assert.match(session({}, true).first() ?? '', /^Basic /);

  // NTLM beats Digest beats Basic; after NTLM's CHALLENGE comes AUTHENTICATE on that connection.
  s = session();
  assert.match(
    String(s.on407(['Basic realm="x"', 'Digest realm="x", nonce="n"', 'NTLM'])),
    /^NTLM TlRMTVNTUAAB/,
  );
  const type2 = SPEC_CHALLENGE.toString('base64');
  const type3 = String(s.on407([`NTLM ${type2}`]));
  assert.match(type3, /^NTLM TlRMTVNTUAAD/);
  assert.equal(s.sameConnection, true);
  // Refused after AUTHENTICATE: Digest is tried next, with the same credentials.
  assert.match(String(s.on407(['NTLM', 'Digest realm="x", nonce="n"'])), /^Digest /);
  assert.deepEqual(
    s.on407(['NTLM', 'Digest realm="x", nonce="n"']),
    new AuthRefusal('credentials rejected'),
  );

  // Digest: SHA-256 over MD5; a stale nonce is answered again; remembered with its count.
  const dm: ProxyAuthMemory = {};
  s = session(dm);
  const d = String(
    s.on407([
      'Digest realm="x", nonce="a", algorithm=MD5, qop="auth"',
      'Digest realm="x", nonce="b", algorithm=SHA-256, qop="auth"',
    ]),
  );
  assert.match(d, /algorithm=SHA-256, nonce="b"/);
  assert.match(
    String(s.on407(['Digest realm="x", nonce="c", algorithm=SHA-256, qop="auth", stale=true'])),
    /nonce="c", nc=00000001, cnonce="[0-9a-f]{24}", qop=auth, response="[0-9a-f]{64}"$/,
  );
  // Without qop the response is RFC 2069's: no count, no client nonce.
  assert.match(
    String(session().on407(['Digest realm="x", nonce="d"'])),
    /^Digest username="u", realm="x", uri="h:1", algorithm=MD5, nonce="d", response="[0-9a-f]{32}"$/,
  );
  assert.equal(dm.scheme, 'digest');
  assert.match(session(dm).first() ?? '', /nonce="c", nc=00000002/);

  // Nothing to answer with.
  assert.deepEqual(
    session({}, false, null).on407(['Basic realm="x"']),
    new AuthRefusal('no credentials sent'),
  );
  assert.deepEqual(
    session().on407(['Bearer realm="x"']),
    new AuthRefusal('no scheme offered that roamlink speaks (Basic, Digest, NTLM)'),
  );
  // Negotiate alone: NTLM's messages in it (what Windows clients send without Kerberos)...
  const nm: ProxyAuthMemory = {};
  s = session(nm);
  assert.match(String(s.on407(['Negotiate'])), /^Negotiate TlRMTVNTUAAB/);
  assert.match(String(s.on407([`Negotiate ${type2}`])), /^Negotiate TlRMTVNTUAAD/);
  assert.equal(nm.scheme, 'negotiate');
  assert.match(session(nm).first() ?? '', /^Negotiate TlRMTVNTUAAB/);
  // ...but a Kerberos (SPNEGO) answer ends it: roamlink has no Kerberos.
  s = session();
  s.on407(['Negotiate']);
  assert.deepEqual(
    s.on407(['Negotiate oYIBPzCCATugAwoBAaELBgkqhkiC9xIBAgI=']),
    new AuthRefusal('the proxy wants Kerberos in Negotiate, which roamlink does not speak'),
  );
});

/** A proxy that speaks NTLM on one connection (or closes after each 407), and checks the user. */
async function ntlmProxy(opts: { closeAfter407?: boolean } = {}) {
  const seen: string[] = [];
  const close = opts.closeAfter407 ? 'Connection: close\r\n' : '';
  const p = await scripted((s, head) => {
    const auth = /\r\nProxy-Authorization: (.*)/.exec(head)?.[1];
    seen.push(auth ?? '-');
    if (auth?.startsWith('NTLM TlRMTVNTUAAD')) {
      const m = Buffer.from(auth.replace(/^NTLM /, ''), 'base64');
      const user = m.subarray(m.readUInt32LE(40), m.readUInt32LE(40) + m.readUInt16LE(36));
      if (user.toString('utf16le') === 'User') {
        s.write('HTTP/1.1 200 OK\r\n\r\n');
        return false;
      }
      s.write('HTTP/1.1 407 No\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n');
      return true;
    }
    const challenge = auth === undefined ? 'NTLM' : `NTLM ${SPEC_CHALLENGE.toString('base64')}`;
    s.write(
      `HTTP/1.1 407 No\r\nProxy-Authenticate: ${challenge}\r\n${close}Content-Length: 2\r\n\r\nno`,
    );
    if (!opts.closeAfter407) return true;
    s.end();
    return false;
  });
  return { port: p.port, seen, close: () => p.close() };
}

test('CONNECT through an NTLM proxy: probe, NEGOTIATE, AUTHENTICATE on one connection', async () => {
  const p = await ntlmProxy();
  try {
    const proxy = parseProxyUrl(`http://Domain%5CUser:Password@127.0.0.1:${p.port}`);
    const s = await connectViaProxy(proxy, '127.0.0.1', 9);
    s.destroy();
    assert.deepEqual(
      p.seen.map((a) => a.slice(0, 17)),
      ['-', 'NTLM TlRMTVNTUAAB', 'NTLM TlRMTVNTUAAD'],
    );
    // The next tunnel starts with NEGOTIATE.
    (await connectViaProxy(proxy, '127.0.0.1', 9)).destroy();
    assert.equal(p.seen[3]!.slice(0, 17), 'NTLM TlRMTVNTUAAB');
    // Wrong user: refused after AUTHENTICATE, named as such.
    await assert.rejects(
      connectViaProxy(`http://Domain%5CSomeoneElse:pw@127.0.0.1:${p.port}`, '127.0.0.1', 9),
      (e) =>
        isProxyError(e, ProxyErrorCode.AUTH_REQUIRED) &&
        /credentials rejected; proxy offers: NTLM\)$/.test(e.message) &&
        !e.message.includes('pw'),
    );
  } finally {
    p.close();
  }
});

test('a proxy that closes after each 407: the next request on a new connection, but NTLM cannot', async () => {
  const p = await ntlmProxy({ closeAfter407: true });
  try {
    await assert.rejects(
      connectViaProxy(`http://Domain%5CUser:Password@127.0.0.1:${p.port}`, '127.0.0.1', 9),
      (e) =>
        isProxyError(e, ProxyErrorCode.AUTH_REQUIRED) &&
        /the proxy closed the connection mid-handshake/.test(e.message),
    );
    // The probe's 407 closed its connection; NEGOTIATE went on a new one.
    assert.deepEqual(
      p.seen.map((a) => a.slice(0, 17)),
      ['-', 'NTLM TlRMTVNTUAAB'],
    );
  } finally {
    p.close();
  }
});

test('a proxy that promises to keep the connection after its 407 and closes it: asked again on a new one', async () => {
  const p = await scripted((s, head) => {
    if (head.includes('Proxy-Authorization: Basic ')) {
      s.write('HTTP/1.1 200 OK\r\n\r\n');
      return false;
    }
    s.write('HTTP/1.1 407 No\r\nProxy-Authenticate: Basic realm="r"\r\nContent-Length: 0\r\n\r\n');
    s.end();
    return false;
  });
  try {
    (await connectViaProxy(`http://u:pw@127.0.0.1:${p.port}`, '127.0.0.1', 9)).destroy();
    assert.equal(p.heads.length, 2);
    assert.match(p.heads[1]!, /Proxy-Authorization: Basic dTpwdw==/);
  } finally {
    await p.close();
  }
});

test('hostile answers: random Proxy-Authenticate values and NTLM challenges never throw past the parser', () => {
  const rand = seeded(0x5eed);
  const alphabet = 'NTLM Digest Basic realm=nonce="\\,=  abc==TlRMTVNTUAAC\t';
  for (let n = 0; n < 2000; n++) {
    const len = Math.floor(rand() * 60);
    let v = '';
    for (let i = 0; i < len; i++) v += alphabet[Math.floor(rand() * alphabet.length)];
    assert.doesNotThrow(() => parseChallenges([v]), JSON.stringify(v));
    // Whatever the proxy says, the answer is a header or a refusal, never an exception.
    const s = session();
    const a = s.on407([v]);
    assert.ok(typeof a === 'string' || a instanceof AuthRefusal);
    if (typeof a === 'string' && a.startsWith('NTLM ')) {
      const r = s.on407([`NTLM ${Buffer.from(v).toString('base64')}`]);
      assert.ok(r instanceof AuthRefusal, String(r));
    }
  }
  // CHALLENGE messages cut or corrupted anywhere: an Error, or a parse within bounds.
  for (let n = 0; n < 2000; n++) {
    const m = Buffer.from(SPEC_CHALLENGE);
    for (let k = 0; k < 3; k++) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
    const cut = m.subarray(0, Math.floor(rand() * (m.length + 1)));
    try {
      const c = parseChallengeMessage(cut);
      assert.ok(c.targetInfo.length <= cut.length && c.serverChallenge.length === 8);
    } catch (e) {
      assert.ok(e instanceof Error);
    }
  }
});
