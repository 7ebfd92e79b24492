/** clientCommand: the `roamlink connect` line the relay prints, for each way it can listen. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientCommand } from '../src/client-command.ts';

const K = 'ab'.repeat(32);
const e = (address: string, port: number) => ({ address, port });

test('defaults: the UDP endpoint alone, a wildcard address as RELAY-HOST', () => {
  assert.equal(
    clientCommand({
      udp: e('0.0.0.0', 51820),
      tcp: e('0.0.0.0', 51820),
      http: e('0.0.0.0', 51821),
      publicKey: K,
      tls: false,
    }),
    `roamlink connect RELAY-HOST:51820 --relay-key ${K}`,
  );
});

test('ports that are not the defaults are named; IPv6 in brackets; missing listeners turned off', () => {
  assert.equal(
    clientCommand({
      udp: e('::1', 4000),
      tcp: e('::1', 4443),
      http: e('::1', 8080),
      publicKey: K,
      tls: false,
    }),
    `roamlink connect [::1]:4000 --relay-key ${K} --relay-tcp [::1]:4443 --relay-http [::1]:8080`,
  );
  assert.equal(
    clientCommand({
      udp: undefined,
      tcp: e('192.0.2.1', 443),
      http: undefined,
      publicKey: K,
      tls: false,
    }),
    `roamlink connect 192.0.2.1:443 --relay-key ${K} --no-udp --no-ws --no-http`,
  );
  assert.equal(
    clientCommand({
      udp: undefined,
      tcp: undefined,
      http: e('0.0.0.0', 8080),
      publicKey: K,
      tls: false,
    }),
    `roamlink connect http://RELAY-HOST:8080 --relay-key ${K}`,
  );
});

test('TLS: the https:// URL (no port for 443), UDP and TCP by flag', () => {
  assert.equal(
    clientCommand({
      udp: e('0.0.0.0', 51820),
      tcp: e('0.0.0.0', 51820),
      http: e('0.0.0.0', 443),
      publicKey: K,
      tls: true,
    }),
    `roamlink connect https://RELAY-HOST --relay-key ${K} --relay-udp RELAY-HOST:51820 --relay-tcp RELAY-HOST:51820`,
  );
  assert.equal(
    clientCommand({
      udp: undefined,
      tcp: undefined,
      http: e('198.18.0.1', 8443),
      publicKey: K,
      tls: true,
    }),
    `roamlink connect https://198.18.0.1:8443 --relay-key ${K}`,
  );
});
