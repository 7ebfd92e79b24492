/**
 * One hop of the benchmark's Node floor (tunnel-node-pipe.ts): two plain Node processes in a
 * chain, shaped like roamlink's client and relay, that move bytes with `stream.pipe` and nothing
 * else: no encryption, no framing, no acknowledgements, no multiplexing. Whatever a tunnel made
 * of two Node processes does on top of this costs more, so this is the ceiling for one on the
 * machine at hand.
 *
 *   node node-pipe-hop.ts exit
 *     accepts connections from the entry hop; each starts with one line `host:port\n`, the target.
 *     It connects there, answers one byte 0, and pipes both ways (it closes if it cannot).
 *   node node-pipe-hop.ts entry <exitPort> <host:port>
 *     a SOCKS5 server (RFC 1928: no authentication, CONNECT, IPv4 or domain addresses) and a
 *     `-L`-style listener forwarding to <host:port>, both through the exit hop.
 *
 * Each prints one JSON line with its ports once it listens. Every socket has Nagle off, as
 * roamlink's and ssh's do.
 */
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

/** Reads exactly `n` bytes from a socket in paused mode. */
function take(sock: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error, b?: Buffer): void => {
      sock.off('readable', tryRead);
      sock.off('end', onEnd);
      sock.off('error', done);
      if (b) resolve(b);
      else reject(err ?? new Error('closed'));
    };
    const onEnd = (): void => done(new Error('ended before the header'));
    const tryRead = (): void => {
      const b = sock.read(n) as Buffer | null;
      if (b) done(undefined, b);
    };
    sock.on('readable', tryRead);
    sock.once('end', onEnd);
    sock.once('error', done);
    tryRead();
  });
}

/** Pipes two connected sockets both ways; either one closing closes the other. */
function splice(a: Socket, b: Socket): void {
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.pipe(b);
  b.pipe(a);
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

/** Opens a connection to `target` through the exit hop; resolves once the exit hop is connected. */
async function dialExit(exitPort: number, target: string): Promise<Socket> {
  const s = connect({ port: exitPort, host: '127.0.0.1', noDelay: true });
  s.write(`${target}\n`);
  const [ok] = await take(s, 1);
  if (ok !== 0) throw new Error('exit hop refused');
  return s;
}

async function runExit(): Promise<void> {
  const server = createServer({ noDelay: true, pauseOnConnect: true }, async (c) => {
    c.on('error', () => c.destroy());
    try {
      let line = '';
      while (!line.endsWith('\n')) {
        line += (await take(c, 1)).toString('latin1');
        if (line.length > 300) throw new Error('target line too long');
      }
      const at = line.lastIndexOf(':');
      const host = line.slice(0, at);
      const port = Number(line.slice(at + 1, -1));
      const up = connect({ port, host, noDelay: true });
      up.once('error', () => c.destroy());
      up.once('connect', () => {
        c.write(Buffer.of(0));
        splice(c, up);
        c.resume();
      });
    } catch {
      c.destroy();
    }
  });
  process.stdout.write(`${JSON.stringify({ port: await listen(server) })}\n`);
}

async function runEntry(exitPort: number, forwardTarget: string): Promise<void> {
  const socks = createServer({ noDelay: true, pauseOnConnect: true }, async (c) => {
    c.on('error', () => c.destroy());
    try {
      const [ver, nMethods] = await take(c, 2);
      if (ver !== 5) throw new Error('not SOCKS5');
      const methods = await take(c, nMethods!);
      if (!methods.includes(0)) {
        c.end(Buffer.of(5, 0xff));
        return;
      }
      c.write(Buffer.of(5, 0));
      const [v, cmd, , atyp] = await take(c, 4);
      // RFC 1928 §6: 7 = command not supported, 8 = address type not supported.
      if (v !== 5 || cmd !== 1 || (atyp !== 1 && atyp !== 3)) {
        c.end(Buffer.of(5, v !== 5 || cmd !== 1 ? 7 : 8, 0, 1, 0, 0, 0, 0, 0, 0));
        return;
      }
      const host =
        atyp === 1
          ? [...(await take(c, 4))].join('.')
          : (await take(c, (await take(c, 1))[0]!)).toString('latin1');
      const port = (await take(c, 2)).readUInt16BE(0);
      const up = await dialExit(exitPort, `${host}:${port}`).catch(() => undefined);
      if (!up) {
        c.end(Buffer.of(5, 5, 0, 1, 0, 0, 0, 0, 0, 0));
        return;
      }
      c.write(Buffer.of(5, 0, 0, 1, 0, 0, 0, 0, 0, 0));
      splice(c, up);
      c.resume();
    } catch {
      c.destroy();
    }
  });
  const forward = createServer({ noDelay: true, pauseOnConnect: true }, async (c) => {
    c.on('error', () => c.destroy());
    const up = await dialExit(exitPort, forwardTarget).catch(() => undefined);
    if (!up) {
      c.destroy();
      return;
    }
    splice(c, up);
    c.resume();
  });
  const socksPort = await listen(socks);
  const forwardPort = await listen(forward);
  process.stdout.write(`${JSON.stringify({ socksPort, forwardPort })}\n`);
}

const [role, exitPort, target] = process.argv.slice(2);
if (role === 'exit') await runExit();
else if (role === 'entry' && exitPort && target) await runEntry(Number(exitPort), target);
else {
  process.stderr.write('usage: node-pipe-hop.ts exit | entry <exitPort> <host:port>\n');
  process.exit(2);
}
