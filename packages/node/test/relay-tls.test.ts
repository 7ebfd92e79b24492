/**
 * relay-tls.ts: the options every TLS dial of the client uses, and a real handshake against a
 * server with the test CA's certificate, trusted, untrusted and unchecked.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createServer, type TLSSocket } from 'node:tls';
import { dialRelayTls, relayTlsOptions, tlsTrustErrorIn } from '../src/relay-tls.ts';

const fixture = (name: string): string =>
  readFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url), 'utf8');

test('relayTlsOptions: SNI for names only, CAs added to the roots, checked unless verify is false', () => {
  const ca = fixture('ca.pem');
  const named = relayTlsOptions('relay.example', { ca: [ca] });
  assert.equal(named.servername, 'relay.example');
  assert.equal(named.rejectUnauthorized, true);
  // One context for the set, built once: every connection of a session shares it.
  const t = { ca: [ca] };
  assert.ok(relayTlsOptions('relay.example', t).secureContext);
  assert.equal(
    relayTlsOptions('relay.example', t).secureContext,
    relayTlsOptions('other.example', t).secureContext,
  );
  assert.deepEqual(named.ALPNProtocols, ['http/1.1']);
  // RFC 6066 §3: no literal address in SNI.
  assert.equal(relayTlsOptions('127.0.0.1', {}).servername, undefined);
  assert.equal(relayTlsOptions('::1', {}).servername, undefined);
  assert.equal(
    relayTlsOptions('127.0.0.1', {}).secureContext,
    undefined,
    'no CA given: the defaults as they are',
  );
  assert.equal(relayTlsOptions('relay.example', { verify: false }).rejectUnauthorized, false);
  assert.equal(relayTlsOptions('127.0.0.1', { servername: 'localhost' }).servername, 'localhost');
});

test('tlsTrustErrorIn: finds the certificate codes in a logged failure, and nothing else', () => {
  assert.equal(
    tlsTrustErrorIn('UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate'),
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  );
  assert.equal(
    tlsTrustErrorIn('Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP does not match'),
    'ERR_TLS_CERT_ALTNAME_INVALID',
  );
  assert.equal(tlsTrustErrorIn('Error: connect ECONNREFUSED 127.0.0.1:1'), undefined);
  assert.equal(tlsTrustErrorIn('ROAMLINK_ERR_PROXY_REFUSED: 403'), undefined);
});

test('dialRelayTls: a handshake with the test CA trusted; refused without it; unchecked with verify false', async () => {
  const server = createServer({ cert: fixture('relay.pem'), key: fixture('relay.key') }, (s) =>
    s.end('hello'),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const outcome = (s: TLSSocket): Promise<string> =>
    new Promise((resolve) => {
      let got = '';
      s.on('data', (d) => (got += d));
      s.once('end', () => resolve(`ok:${got}`));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(`error:${e.code}`));
    });
  try {
    const ca = [fixture('ca.pem')];
    assert.equal(await outcome(dialRelayTls('localhost', port, { ca })), 'ok:hello');
    // The certificate names 127.0.0.1 too (checked against the address, no SNI).
    assert.equal(await outcome(dialRelayTls('127.0.0.1', port, { ca })), 'ok:hello');
    assert.equal(
      await outcome(dialRelayTls('localhost', port, {})),
      'error:UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    );
    // A name the certificate does not carry, with the CA trusted.
    assert.equal(
      await outcome(dialRelayTls('127.0.0.1', port, { ca, servername: 'relay.example' })),
      'error:ERR_TLS_CERT_ALTNAME_INVALID',
    );
    assert.equal(await outcome(dialRelayTls('localhost', port, { verify: false })), 'ok:hello');
  } finally {
    server.close();
  }
});
