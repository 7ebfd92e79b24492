/**
 * A real HTTP proxy for tests: squid on 127.0.0.1 with a random free port and a generated minimal
 * configuration in a temporary directory (no cache; CONNECT, unless refused, and plain requests
 * allowed to 127.0.0.1 on any port and nowhere else; pid and logs in the directory; DNS pointed at loopback so that nothing leaves the
 * machine), run in the foreground (-N). Optionally with basic authentication through squid's
 * basic_ncsa_auth helper and a generated password file. Optionally serving TLS (an https://
 * proxy: `https_port` with a given certificate and key, copied into the directory). As root,
 * squid drops to the `proxy` user (Debian's), which then owns the directory.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chownSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NCSA_AUTH = '/usr/lib/squid/basic_ncsa_auth';
/** Digest against a file of `user:password` lines. */
export const DIGEST_AUTH = '/usr/lib/squid/digest_file_auth';
/** NTLM that takes any user (it checks the messages' form, not the password): a test helper. */
export const NTLM_FAKE_AUTH = '/usr/lib/squid/ntlm_fake_auth';
export const hasSquid = spawnSync('squid', ['-v']).status === 0;
export const hasNcsaAuth = existsSync(NCSA_AUTH);
export const NEGOTIATE_WRAPPER = '/usr/lib/squid/negotiate_wrapper_auth';
export const KERBEROS_AUTH = '/usr/lib/squid/negotiate_kerberos_auth';
export const hasDigestAndNtlmAuth =
  existsSync(DIGEST_AUTH) &&
  existsSync(NTLM_FAKE_AUTH) &&
  existsSync(NEGOTIATE_WRAPPER) &&
  existsSync(KERBEROS_AUTH);

export interface Squid {
  port: number;
  /** The proxy URL without credentials (https:// when it serves TLS). */
  url: string;
  /** The access log so far (one line per finished request or tunnel). */
  accessLog(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const a = s.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * A password file line that basic_ncsa_auth accepts: it checks crypt(3) hashes (so SHA-256-crypt
 * "$5$" from `openssl passwd -5`, also "$1$"/"$apr1$" MD5), and as a last resort the plain MD5
 * hex digest, used here only when openssl is missing.
 */
function passwdLine(user: string, password: string): string {
  const r = spawnSync('openssl', ['passwd', '-5', '-stdin'], { input: password });
  const hash =
    r.status === 0
      ? r.stdout.toString().trim()
      : createHash('md5').update(password, 'utf8').digest('hex');
  return `${user}:${hash}\n`;
}

function idOf(flag: '-u' | '-g', user: string): number {
  const r = spawnSync('id', [flag, user]);
  if (r.status !== 0) throw new Error(`no user ${user} for squid to run as`);
  return Number(r.stdout.toString().trim());
}

const connects = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });

export async function startSquid(
  opts: {
    /** Proxy authentication; `scheme` default basic (ntlm: any user, see NTLM_FAKE_AUTH). */
    auth?: { user: string; password: string; scheme?: 'basic' | 'digest' | 'ntlm' | 'negotiate' };
    connect?: boolean;
    /** PEM files: serve TLS with this certificate and key. */
    tls?: { cert: string; key: string };
  } = {},
) {
  const dir = mkdtempSync(join(tmpdir(), 'rl-squid-'));
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  const owned: string[] = [];
  let listen = `http_port 127.0.0.1:${port}`;
  if (opts.tls) {
    const cert = join(dir, 'proxy.pem');
    const key = join(dir, 'proxy.key');
    copyFileSync(opts.tls.cert, cert);
    copyFileSync(opts.tls.key, key);
    owned.push(cert, key);
    listen = `https_port 127.0.0.1:${port} tls-cert=${cert} tls-key=${key}`;
  }
  const lines = [
    listen,
    `pid_filename ${join(dir, 'squid.pid')}`,
    `cache_log ${join(dir, 'cache.log')}`,
    `access_log stdio:${join(dir, 'access.log')}`,
    `coredump_dir ${dir}`,
    'cache deny all',
    'cache_mem 0 MB',
    'visible_hostname roamlink-test',
    'dns_nameservers 127.0.0.1',
    'pinger_enable off',
    'shutdown_lifetime 0 seconds',
    'acl relay dst 127.0.0.1/32',
    'acl CONNECT method CONNECT',
  ];
  if (asRoot) lines.push('cache_effective_user proxy');
  if (opts.auth) {
    const pw = join(dir, 'passwd');
    const scheme = opts.auth.scheme ?? 'basic';
    if (scheme === 'basic') {
      writeFileSync(pw, passwdLine(opts.auth.user, opts.auth.password), { mode: 0o640 });
      lines.push(
        `auth_param basic program ${NCSA_AUTH} ${pw}`,
        'auth_param basic children 2',
        'auth_param basic realm roamlink-test',
      );
    } else if (scheme === 'digest') {
      writeFileSync(pw, `${opts.auth.user}:${opts.auth.password}\n`, { mode: 0o640 });
      lines.push(
        `auth_param digest program ${DIGEST_AUTH} ${pw}`,
        'auth_param digest children 2',
        'auth_param digest realm roamlink-test',
      );
    } else if (scheme === 'ntlm') {
      lines.push(`auth_param ntlm program ${NTLM_FAKE_AUTH}`, 'auth_param ntlm children 2');
    } else {
      // Negotiate only: the wrapper hands NTLM tokens to the NTLM helper, Kerberos ones to a
      // Kerberos helper that has no keytab here.
      lines.push(
        `auth_param negotiate program ${NEGOTIATE_WRAPPER} --ntlm ${NTLM_FAKE_AUTH} --kerberos ${KERBEROS_AUTH}`,
        'auth_param negotiate children 2',
      );
    }
    lines.push('acl authed proxy_auth REQUIRED', 'http_access deny !authed');
  }
  // By default no SSL_ports restriction: CONNECT to the relay's port, whatever it is. With
  // `connect: false`, CONNECT is refused, as squid's default configuration refuses it to every
  // port but 443. Plain (forward) requests to the relay pass either way.
  lines.push(
    opts.connect === false ? 'http_access deny CONNECT' : 'http_access allow CONNECT relay',
    'http_access allow relay',
    'http_access deny all',
  );
  const conf = join(dir, 'squid.conf');
  writeFileSync(conf, `${lines.join('\n')}\n`);
  if (asRoot) {
    const uid = idOf('-u', 'proxy');
    const gid = idOf('-g', 'proxy');
    for (const f of [
      dir,
      conf,
      ...owned,
      ...(existsSync(join(dir, 'passwd')) ? [join(dir, 'passwd')] : []),
    ]) {
      chownSync(f, uid, gid);
    }
  }

  const proc: ChildProcess = spawn('squid', ['-N', '-f', conf, '-n', `rltest${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr?.on('data', (b: Buffer) => {
    if (stderr.length < 8192) stderr += b.toString();
  });
  let exited = false;
  const exit = new Promise<void>((r) =>
    proc.once('exit', () => {
      exited = true;
      r();
    }),
  );
  const read = (f: string): string => {
    try {
      return readFileSync(join(dir, f), 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async (): Promise<void> => {
    if (!exited) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 15_000;
  while (!(await connects(port))) {
    if (exited || Date.now() > deadline) {
      const why = `${stderr}\n${read('cache.log')}`.trim().split('\n').slice(-15).join('\n');
      await stop();
      throw new Error(`squid did not start on 127.0.0.1:${port}: ${why}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const squid: Squid = {
    port,
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    accessLog: () => read('access.log'),
    stop,
  };
  return squid;
}
