#!/usr/bin/env node
/**
 * The `roamlink` command.
 *
 *   roamlink connect <relay host[:port] | https://host[:port]> --relay-key <hex> [--socks 127.0.0.1:1080]
 *            [-L [bind:]port:host:port]... [--proxy http(s)://user:pass@host:port]
 *            [--proxy-ca file] [--proxy-insecure] [--proxy-pac file|URL] [--proxy-user user:password]
 *            [--no-udp] [--no-tcp] [--no-ws] [--no-http] [--no-http-upstream] [--relay-tcp host:port]
 *            [--relay-udp host:port] [--relay-http host:port|URL] [--tls-ca file] [--tls-insecure]
 *            [--data-dir dir] [--suite name] [--json-log] [--control]
 *   roamlink relay [relay options; see roamlink relay --help]
 *   roamlink keygen [--data-dir dir | --out file]
 *
 * Exit codes: 0 clean exit, 1 the session failed, 2 bad usage, 3 the relay could not be reached.
 */
import { parseArgs } from 'node:util';
import { toHex } from '@roamlink/core';
import { loadOrCreateKey } from '@roamlink/node';
import { connect, EXIT } from './connect.ts';
import type { TransportKind } from './tunnel.ts';

const USAGE = `usage:
  roamlink connect <relay> --relay-key <hex> [options]              run a client
  roamlink relay [options]                                          run a relay
  roamlink keygen [--data-dir dir | --out file]                     create or show a key

<relay> is host[:port] (a Node relay: UDP and TCP on port, default 51820, WebSocket and HTTP on
port + 1) or a URL, https://host[:port][/prefix] (http://, wss://, ws:// too), for WebSocket and
HTTP only, as an edge relay or a relay behind a TLS front on 443 serves them.

connect options:
  --relay-key <hex>         the relay's public key (printed by the relay on start)
  --socks <host:port>       SOCKS5 server (CONNECT and UDP ASSOCIATE), e.g. 127.0.0.1:1080
  -L, --forward <spec>      local forward [bind:]port:host:port (repeatable)
  --proxy <url>             reach the relay's HTTP port through an HTTP proxy (WebSocket in
                            a CONNECT tunnel, HTTP as plain proxied requests: that passes a
                            proxy that allows CONNECT only to port 443, as squid's default does);
                            default: $HTTPS_PROXY / $HTTP_PROXY, honouring $NO_PROXY
                            (credentials are better kept in $HTTPS_PROXY than on the command line);
                            an https:// proxy is reached over TLS; the proxy may ask for Basic,
                            Digest or NTLM, also inside Negotiate (a domain user as DOMAIN%5Cuser
                            in the URL), and gets no password over plain http before it asks;
                            socks5h://host:port (names resolved by the proxy) or socks5:// for
                            a SOCKS5 proxy (ssh -D, Tor)
  --proxy-pac <file|URL>    a proxy auto-config script chooses the proxy (its first PROXY, HTTPS
                            or SOCKS5 entry, or DIRECT) instead of --proxy and the environment
  --proxy-user <user:password>
                            credentials for a proxy whose URL has none (one a PAC script names);
                            default $ROAMLINK_PROXY_USER
  --proxy-ca <file>         PEM CA certificate(s) to trust for an https:// proxy, besides those
                            Node trusts (repeatable)
  --proxy-insecure          do not check an https:// proxy's certificate
  --no-proxy                never use a proxy, whatever the environment says
  --no-udp, --no-tcp, --no-ws, --no-http
                            leave an encapsulation out of the race
  --no-http-upstream        HTTP streaming: a POST per batch, never one open chunked POST (which
                            is otherwise tried, and used where request bodies pass unbuffered)
  --relay-udp <host:port>   the relay's UDP port (default: the relay's address and port; with a
                            URL relay, no UDP unless given)
  --relay-tcp <host:port>   the relay's TCP port (default: as UDP; with a URL relay, no TCP unless
                            given)
  --relay-http <host:port|URL>
                            the relay's HTTP port (default: the relay's port + 1), or its URL
                            (https:// for TLS)
  --tls-ca <file>           PEM CA certificate(s) to trust for an https relay, besides those
                            Node trusts (repeatable; $NODE_EXTRA_CA_CERTS works too)
  --tls-insecure            do not check an https relay's certificate: for self-signed ones and
                            intercepting proxies; the session still authenticates the relay by
                            --relay-key, so nothing inside becomes readable
  --data-dir <dir>          where the client key lives (default .roamlink/client)
  --suite <name>            offer one suite only (chacha20-poly1305 | aes-256-gcm)
  --outage-ms <n>           how long streams wait through an outage (default 120000)
  --keepalive-ms <n>        a PING after this long idle while streams are open (default 30000)
  --json-log                JSON lines on stdout instead of the status line
  --control                 read control lines on stdin (drop|disable|enable|only <kind>, all,
                            network-changed: dial every transport again now, status)
  --duration-s <n>          stop after n seconds (default: run until Ctrl-C)

exit codes: 0 ok, 1 session failed, 2 bad usage, 3 relay unreachable
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === 'relay') {
    const { runRelay } = await import('@roamlink/relay');
    return runRelay(rest);
  }
  if (cmd === 'keygen') {
    const { values } = parseArgs({
      args: rest,
      options: {
        'data-dir': { type: 'string', default: '.roamlink/client' },
        out: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    });
    if (values.help) {
      process.stdout.write('usage: roamlink keygen [--data-dir dir | --out file]\n');
      return EXIT.OK;
    }
    const file = values.out ?? `${values['data-dir']}/client.key`;
    const { keypair, created } = loadOrCreateKey(file);
    process.stderr.write(`${created ? 'created' : 'using'} ${file}; public key:\n`);
    process.stdout.write(`${toHex(keypair.publicKey)}\n`);
    return EXIT.OK;
  }
  if (cmd === 'connect') {
    let parsed: ReturnType<typeof parseConnect>;
    try {
      parsed = parseConnect(rest);
    } catch (e) {
      process.stderr.write(`roamlink connect: ${(e as Error).message}\n\n${USAGE}`);
      return EXIT.USAGE;
    }
    if (parsed === 'help') {
      process.stdout.write(USAGE);
      return EXIT.OK;
    }
    return connect(parsed);
  }
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? EXIT.USAGE : EXIT.OK;
  }
  process.stderr.write(`roamlink: unknown command "${cmd}"\n\n${USAGE}`);
  return EXIT.USAGE;
}

function parseConnect(args: string[]): Parameters<typeof connect>[0] | 'help' {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'relay-key': { type: 'string' },
      socks: { type: 'string' },
      forward: { type: 'string', short: 'L', multiple: true, default: [] },
      proxy: { type: 'string' },
      'no-proxy': { type: 'boolean', default: false },
      'proxy-ca': { type: 'string', multiple: true, default: [] },
      'proxy-insecure': { type: 'boolean', default: false },
      'proxy-pac': { type: 'string' },
      'proxy-user': { type: 'string' },
      'no-udp': { type: 'boolean', default: false },
      'no-tcp': { type: 'boolean', default: false },
      'no-ws': { type: 'boolean', default: false },
      'no-http': { type: 'boolean', default: false },
      'no-http-upstream': { type: 'boolean', default: false },
      'relay-udp': { type: 'string' },
      'relay-tcp': { type: 'string' },
      'relay-http': { type: 'string' },
      'tls-ca': { type: 'string', multiple: true, default: [] },
      'tls-insecure': { type: 'boolean', default: false },
      'data-dir': { type: 'string', default: '.roamlink/client' },
      suite: { type: 'string' },
      'rekey-after-ms': { type: 'string' },
      'outage-ms': { type: 'string' },
      'keepalive-ms': { type: 'string' },
      'json-log': { type: 'boolean', default: false },
      control: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      'duration-s': { type: 'string', default: '0' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  if (positionals.length !== 1) throw new Error('expected one relay address');
  if (!values['relay-key']) throw new Error('--relay-key is required');
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} expects a number, got "${v}"`);
    return n;
  };
  const disabled: TransportKind[] = [];
  for (const k of ['udp', 'tcp', 'ws', 'http'] as const) if (values[`no-${k}`]) disabled.push(k);
  if (disabled.length === 4) throw new Error('every encapsulation is turned off');
  return {
    relay: positionals[0]!,
    relayKey: values['relay-key'],
    relayUdp: values['relay-udp'],
    relayTcp: values['relay-tcp'],
    relayHttp: values['relay-http'],
    tlsCa: values['tls-ca'],
    tlsInsecure: values['tls-insecure'],
    socks: values.socks,
    forwards: values.forward,
    dataDir: values['data-dir'],
    disabled,
    suite: values.suite,
    rekeyAfterMs: num('--rekey-after-ms', values['rekey-after-ms']),
    outageMs: num('--outage-ms', values['outage-ms']),
    keepaliveMs: num('--keepalive-ms', values['keepalive-ms']),
    proxy: values['no-proxy'] ? false : values.proxy,
    proxyCa: values['proxy-ca'],
    proxyInsecure: values['proxy-insecure'],
    proxyPac: values['proxy-pac'],
    proxyUser: values['proxy-user'] ?? process.env.ROAMLINK_PROXY_USER,
    httpUpstream: !values['no-http-upstream'],
    control: values.control,
    jsonLog: values['json-log'],
    quiet: values.quiet,
    durationS: num('--duration-s', values['duration-s']) ?? 0,
  };
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`roamlink: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(EXIT.FAILED);
  },
);
