/**
 * The tool a user would pick instead of roamlink: OpenSSH's dynamic forwarding (`ssh -D`, a SOCKS
 * port) with aes128-gcm, to a private sshd on 127.0.0.1.
 *
 * `startSshSocks()` makes a temporary directory with a fresh host key, a client key and its
 * authorized_keys, writes a minimal sshd_config, runs `sshd -D -e` on a free port, then
 * `ssh -N -D` to it, and resolves once the SOCKS port accepts connections. `stop()` ends both
 * processes and removes the directory; so does process exit, if the caller never got to `stop`.
 * Any reason sshd or ssh cannot run rejects with a message that says which step failed.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export const SSHD = '/usr/sbin/sshd';
export const SSH_CIPHER = 'aes128-gcm@openssh.com';

export interface SocksTunnel {
  socksPort: number;
  /** A local forward (`-L`) to the origin through the same tunnel, when the tunnel has one. */
  forwardPort?: number;
  stop(): Promise<void>;
  info?: Record<string, unknown>;
  /** The tunnel's own processes (their descendants count too): whose CPU a download costs. */
  pids?: number[];
}

/** Synchronous clean-ups of everything still running, for process exit. */
const live = new Set<() => void>();
let exitHookInstalled = false;
function onExit(fn: () => void): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const f of live) f();
    });
  }
  live.add(fn);
  return () => live.delete(fn);
}

function run(file: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args[0] ?? ''}: ${(stderr || err.message).trim()}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** A port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Resolves when `port` accepts a connection; rejects if `child` exits first or on timeout. */
async function waitForPort(
  port: number,
  child: ChildProcess,
  what: string,
  log: () => string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(
        `${what} exited (${child.signalCode ?? child.exitCode}): ${log().trim() || 'no message'}`,
      );
    if (await tryConnect(port)) return;
    if (Date.now() > deadline)
      throw new Error(`${what} did not listen within ${timeoutMs} ms: ${log().trim()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 2000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function spawnLogged(file: string, args: string[]): { child: ChildProcess; log: () => string } {
  const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    log = (log + d).slice(-4000);
  });
  child.once('error', (e) => {
    log += `\n${e.message}`;
  });
  return { child, log: () => log };
}

/** Starts a private sshd and `ssh -D` to it; see the module comment. */
/** `ssh -D`, plus `-L` to `forwardTo` (the origin) when given. */
export async function startSshSocks(timeoutMs = 10_000, forwardTo?: number): Promise<SocksTunnel> {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} not found (install openssh-server)`);
  const { stderr: version } = await run('ssh', ['-V']).catch((e: Error) => {
    throw new Error(`ssh client not usable (install openssh-client): ${e.message}`);
  });
  const isRoot = process.getuid?.() === 0;
  // Debian's service creates the privilege separation directory; a private sshd run as root
  // refuses to start without it.
  if (isRoot) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const user = isRoot ? 'root' : userInfo().username;

  const dir = await mkdtemp(join(tmpdir(), 'roamlink-bench-ssh-'));
  const procs: ChildProcess[] = [];
  const killAllSync = (): void => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const unhook = onExit(killAllSync);
  const stop = async (): Promise<void> => {
    unhook();
    for (const p of [...procs].reverse()) await stopChild(p);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const hostKey = join(dir, 'host_ed25519');
    const clientKey = join(dir, 'id_ed25519');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-host', '-f', hostKey]);
    await run('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      'bench-client',
      '-f',
      clientKey,
    ]);
    const authorized = join(dir, 'authorized_keys');
    await writeFile(authorized, await readFile(`${clientKey}.pub`), { mode: 0o600 });

    const sshdPort = await freePort();
    const config = join(dir, 'sshd_config');
    await writeFile(
      config,
      [
        `ListenAddress 127.0.0.1:${sshdPort}`,
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${authorized}`,
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'StrictModes no',
        'UsePAM no',
        'UseDNS no',
        'AllowTcpForwarding yes',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    );
    const sshd = spawnLogged(SSHD, ['-D', '-e', '-f', config]);
    procs.push(sshd.child);
    await waitForPort(sshdPort, sshd.child, 'sshd', sshd.log, timeoutMs);

    const socksPort = await freePort();
    const forwardPort = forwardTo === undefined ? undefined : await freePort();
    const ssh = spawnLogged('ssh', [
      '-F',
      '/dev/null',
      '-N',
      '-D',
      `127.0.0.1:${socksPort}`,
      ...(forwardPort === undefined
        ? []
        : ['-L', `127.0.0.1:${forwardPort}:127.0.0.1:${forwardTo}`]),
      '-c',
      SSH_CIPHER,
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'ExitOnForwardFailure=yes',
      '-o',
      'Compression=no',
      '-o',
      'LogLevel=ERROR',
      '-i',
      clientKey,
      '-p',
      String(sshdPort),
      `${user}@127.0.0.1`,
    ]);
    procs.push(ssh.child);
    await waitForPort(socksPort, ssh.child, 'ssh -D', ssh.log, timeoutMs);
    if (forwardPort !== undefined) {
      await waitForPort(forwardPort, ssh.child, 'ssh -L', ssh.log, timeoutMs);
    }
    return {
      socksPort,
      ...(forwardPort === undefined ? {} : { forwardPort }),
      stop,
      info: { version: version.trim(), cipher: SSH_CIPHER, user },
      // sshd serves the connection from children it forks: they are counted with it.
      pids: [sshd.child.pid, ssh.child.pid].filter((p): p is number => p !== undefined),
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
