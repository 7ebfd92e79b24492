/** The relay argument as a URL: which values are URLs, and the form the client uses. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRelayUrl, parseRelayUrl } from '../src/connect.ts';

test('isRelayUrl: any scheme:// is a URL; host:port and bracketed IPv6 are not', () => {
  assert.ok(isRelayUrl('https://relay.example'));
  assert.ok(isRelayUrl('WSS://relay.example'));
  assert.ok(isRelayUrl('ftp://relay.example'), 'taken as a URL, so that it gets its own error');
  assert.ok(!isRelayUrl('relay.example:51820'));
  assert.ok(!isRelayUrl('[::1]:51820'));
  assert.ok(!isRelayUrl('127.0.0.1'));
});

test('parseRelayUrl: ws(s) as http(s), default ports dropped, the path kept as a prefix', () => {
  assert.equal(parseRelayUrl('relay', 'https://relay.example'), 'https://relay.example');
  assert.equal(parseRelayUrl('relay', 'wss://relay.example:443/'), 'https://relay.example');
  assert.equal(parseRelayUrl('relay', 'ws://relay.example:80'), 'http://relay.example');
  assert.equal(parseRelayUrl('relay', 'https://relay.example:8443'), 'https://relay.example:8443');
  assert.equal(parseRelayUrl('relay', 'http://[::1]:51821'), 'http://[::1]:51821');
  assert.equal(
    parseRelayUrl('relay', 'https://edge.example/tunnel/'),
    'https://edge.example/tunnel',
  );
  assert.throws(() => parseRelayUrl('--relay-http', 'gopher://x'), /--relay-http: scheme gopher:/);
  assert.throws(() => parseRelayUrl('relay', 'https://'), /is not a URL/);
});
