/**
 * The roamlink side of `pnpm bench tunnel`: starts `roamlink relay` and `roamlink connect
 * --socks` as two processes (as a user runs them), the client racing only the one encapsulation
 * under test, and stops both. The harness (tunnel.ts) uses only `startRoamlinkTunnel`; a failure
 * here becomes that row's error, the other rows still run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NodeChild, spawnNode, stopChild } from './child.ts';
import type { SocksTunnel } from './tunnel-ssh.ts';

const CLI = fileURLToPath(new URL('../../apps/client/src/cli.ts', import.meta.url));
const KINDS = ['udp', 'tcp', 'ws', 'http'] as const;
type Kind = (typeof KINDS)[number] | 'udp-1400' | 'wss' | 'https';
/** The test CA's certificate for localhost (never used outside tests and benchmarks). */
const TLS_DIR = fileURLToPath(new URL('../../packages/node/test/fixtures/tls/', import.meta.url));

const spawnCli = (args: string[], env: Record<string, string> = {}): NodeChild =>
  spawnNode(CLI, args, env);

export interface RoamlinkTunnelOptions {
  /** More `roamlink connect` arguments. */
  clientArgs?: string[];
  /**
   * Where the client reaches the relay's TCP or HTTP port: given the relay's `host:port`, an
   * address in front of it (a delay proxy); default the relay's own.
   */
  via?: (kind: 'tcp' | 'http', relayAddress: string) => Promise<string>;
}

/** `roamlink connect --socks`, plus `-L` to `forwardTo` (the origin) when given. */
export async function startRoamlinkTunnel(
  encapsulation: Kind,
  forwardTo?: number,
  o: RoamlinkTunnelOptions = {},
): Promise<SocksTunnel> {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-bench-'));
  // udp-1400: UDP held at the common 1400-byte packet (no path-MTU search), on both sides.
  const kind: (typeof KINDS)[number] =
    encapsulation === 'udp-1400'
      ? 'udp'
      : encapsulation === 'wss'
        ? 'ws'
        : encapsulation === 'https'
          ? 'http'
          : encapsulation;
  // wss, https: TLS on the relay's HTTP port; the client given its https:// URL.
  const tls = encapsulation === 'wss' || encapsulation === 'https';
  const env: Record<string, string> =
    encapsulation === 'udp-1400' ? { ROAMLINK_UDP_MAX_PAYLOAD: '1360' } : {};
  const key = spawnCli(['keygen', '--data-dir', join(dir, 'client')]);
  const clientKey = String((await key.next((l) => typeof l.raw === 'string', 'client key')).raw);
  const relay = spawnCli(
    [
      'relay',
      '--udp',
      '127.0.0.1:0',
      '--tcp',
      '127.0.0.1:0',
      '--http',
      '127.0.0.1:0',
      '--data-dir',
      join(dir, 'relay'),
      '--allow',
      clientKey,
      '--egress-allow',
      '127.0.0.1/32',
      '--log-format',
      'json',
      ...(tls
        ? ['--tls-cert', join(TLS_DIR, 'relay.pem'), '--tls-key', join(TLS_DIR, 'relay.key')]
        : []),
    ],
    env,
  );
  let client: NodeChild | undefined;
  const stop = async (): Promise<void> => {
    await Promise.all([client ? stopChild(client.child) : undefined, stopChild(relay.child)]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const l = await relay.next((x) => x.msg === 'listening', 'relay listening');
    const tcpAt = o.via ? await o.via('tcp', String(l.tcp)) : String(l.tcp);
    const httpAt = o.via ? await o.via('http', String(l.http)) : String(l.http);
    client = spawnCli(
      [
        'connect',
        String(l.udp),
        '--relay-key',
        String(l.publicKey),
        '--relay-tcp',
        tcpAt,
        '--relay-http',
        tls ? `https://localhost:${httpAt.split(':').pop()}` : httpAt,
        ...(tls ? ['--tls-ca', join(TLS_DIR, 'ca.pem')] : []),
        '--data-dir',
        join(dir, 'client'),
        '--socks',
        '127.0.0.1:0',
        ...(forwardTo === undefined ? [] : ['-L', `127.0.0.1:0:127.0.0.1:${forwardTo}`]),
        '--json-log',
        ...KINDS.filter((k) => k !== kind).map((k) => `--no-${k}`),
        ...(o.clientArgs ?? []),
      ],
      env,
    );
    const socks = await client.next((x) => x.msg === 'socks-listening', 'SOCKS port');
    const fwd =
      forwardTo === undefined
        ? undefined
        : await client.next((x) => x.msg === 'forward-listening', 'forward');
    // The handshake comes before the registration; the suite it agreed is the row's cipher.
    const est = await client.next((x) => x.msg === 'established', 'handshake');
    const reg = await client.next((x) => x.msg === 'registered', 'registration');
    const port = Number(String(socks.address).split(':').pop());
    return {
      socksPort: port,
      ...(fwd ? { forwardPort: Number(String(fwd.address).split(':').pop()) } : {}),
      stop,
      info: {
        encapsulation: reg.encapsulation,
        verdict: reg.verdict,
        suite: est.suite,
        // The relay's startup measurement, which picked the suite.
        relayCrypto: l.cryptoMeasured,
      },
      pids: [relay.child.pid, client.child.pid].filter((p): p is number => p !== undefined),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
