/**
 * A tunnel through a SOCKS5 proxy (RFC 1928 CONNECT, RFC 1929 username/password): what a
 * `socks5://` or `socks5h://` proxy URL gives the WebSocket and HTTP paths, as the CONNECT of an
 * HTTP proxy does (proxy.ts). A SOCKS proxy is what `ssh -D`, Tor and many gateways offer.
 *
 * `socks5h://` lets the proxy resolve the relay's name (the name goes in the request, ATYP 3: no
 * DNS query leaves this machine, what Tor needs); `socks5://` resolves it here and sends the
 * address. Failures are ProxyErrors with the same codes as an HTTP proxy's, the reply codes of
 * RFC 1928 §6 named; the connection is destroyed before the error is reported.
 */
import { lookup } from 'node:dns/promises';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { hostPort, type ProxyConfig, ProxyError, ProxyErrorCode } from './proxy.ts';

/** RFC 1928 §6: what each reply code says. */
const REPLIES: Record<number, string> = {
  1: 'general SOCKS server failure',
  2: 'connection not allowed by ruleset',
  3: 'network unreachable',
  4: 'host unreachable',
  5: 'connection refused',
  6: 'TTL expired',
  7: 'command not supported',
  8: 'address type not supported',
};

/** The request's address: ATYP and its bytes (RFC 1928 §5). */
function address(host: string): Buffer {
  const type = isIP(host);
  if (type === 4) return Buffer.from([1, ...host.split('.').map(Number)]);
  if (type === 6) {
    const b = Buffer.alloc(17);
    b[0] = 4;
    // Expand "::" and write the eight groups; a dotted IPv4 tail (::ffff:192.0.2.1) is two.
    const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(host);
    if (v4) {
      const [a, b2, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
      host = `${host.slice(0, v4.index)}${((a << 8) | b2).toString(16)}:${((c << 8) | d).toString(16)}`;
    }
    const [head = '', tail] = host.split('::');
    const h = head === '' ? [] : head.split(':');
    const t = tail === undefined || tail === '' ? [] : tail.split(':');
    const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    for (let i = 0; i < 8; i++) b.writeUInt16BE(Number.parseInt(groups[i]!, 16), 1 + 2 * i);
    return b;
  }
  const name = Buffer.from(host, 'utf8');
  if (name.length > 255) throw new Error('host name longer than 255 bytes');
  return Buffer.concat([Buffer.from([3, name.length]), name]);
}

/**
 * Opens a tunnel to `host`:`port` through the SOCKS5 proxy `p` and resolves with the socket,
 * positioned at the first byte from the target.
 */
export async function socks5Connect(
  p: ProxyConfig,
  host: string,
  port: number,
  opts: { timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<Socket> {
  const where = `proxy ${p.href} (CONNECT ${hostPort(host, port)})`;
  let target = host;
  // socks5:// resolves here; socks5h:// leaves the name to the proxy.
  if (!p.socks?.remoteDns && isIP(host) === 0) {
    try {
      target = (await lookup(host)).address;
    } catch (e) {
      throw new ProxyError(
        ProxyErrorCode.UNREACHABLE,
        `${where}: cannot resolve ${host} (${(e as NodeJS.ErrnoException).code ?? e})`,
        { cause: e },
      );
    }
  }
  const socket = netConnect({ host: p.hostname, port: p.port });
  let connected = false;
  let buf: Buffer = Buffer.alloc(0);
  let want: { n: number; resolve: (b: Buffer) => void } | undefined;
  let failed: ProxyError | undefined;
  let fail: (e: ProxyError) => void = () => {};
  const failure = new Promise<never>((_, reject) => {
    fail = (e) => {
      failed ??= e;
      reject(failed);
    };
  });
  failure.catch(() => {});
  const pump = (): void => {
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: the usual read loop.
    while (want && (chunk = socket.read() as Buffer | null) !== null) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length >= want.n) {
        const w = want;
        want = undefined;
        const out = buf.subarray(0, w.n);
        buf = buf.subarray(w.n);
        w.resolve(out);
      }
    }
  };
  /** The next `n` bytes from the proxy. */
  const read = (n: number): Promise<Buffer> => {
    if (buf.length >= n) {
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return Promise.resolve(out);
    }
    const got = new Promise<Buffer>((resolve) => {
      want = { n, resolve };
    });
    pump();
    return Promise.race([got, failure]);
  };
  const onError = (e: NodeJS.ErrnoException): void =>
    fail(
      new ProxyError(
        connected ? ProxyErrorCode.BAD_RESPONSE : ProxyErrorCode.UNREACHABLE,
        `${where}: ${connected ? 'connection broke before an answer' : 'cannot connect'}: ${e.code ?? e.message}`,
        { cause: e },
      ),
    );
  const onEnd = (): void =>
    fail(
      new ProxyError(ProxyErrorCode.BAD_RESPONSE, `${where}: connection closed before an answer`),
    );
  const onAbort = (): void =>
    fail(
      new ProxyError(ProxyErrorCode.ABORTED, `${where}: aborted`, { cause: opts.signal?.reason }),
    );
  const timer = setTimeout(
    () =>
      fail(
        new ProxyError(
          ProxyErrorCode.TIMEOUT,
          `${where}: ${connected ? 'no answer' : 'no connection'} within ${opts.timeoutMs} ms`,
        ),
      ),
    opts.timeoutMs,
  );
  socket.on('error', onError);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('readable', pump);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  try {
    await Promise.race([
      new Promise<void>((resolve) =>
        socket.once('connect', () => {
          connected = true;
          resolve();
        }),
      ),
      failure,
    ]);
    // Greeting (§3): no authentication, and username/password when we have credentials.
    const methods = p.username === undefined ? [0] : [0, 2];
    socket.write(Buffer.from([5, methods.length, ...methods]));
    const [version, method] = await read(2);
    if (version !== 5) {
      throw new ProxyError(ProxyErrorCode.BAD_RESPONSE, `${where}: not a SOCKS5 answer`);
    }
    if (method === 0xff) {
      const sent = p.username === undefined ? 'no credentials sent' : 'credentials rejected';
      throw new ProxyError(
        ProxyErrorCode.AUTH_REQUIRED,
        `${where}: the SOCKS proxy accepts none of our methods (${sent})`,
      );
    }
    if (method === 2) {
      // RFC 1929 §2.
      const u = Buffer.from(p.username ?? '', 'utf8');
      const pw = Buffer.from(p.password ?? '', 'utf8');
      if (u.length > 255 || pw.length > 255) {
        throw new ProxyError(ProxyErrorCode.INVALID_URL, `${where}: credentials over 255 bytes`);
      }
      socket.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([pw.length]), pw]));
      const [, status] = await read(2);
      if (status !== 0) {
        throw new ProxyError(
          ProxyErrorCode.AUTH_REQUIRED,
          `${where}: SOCKS authentication failed (credentials rejected)`,
        );
      }
    } else if (method !== 0) {
      throw new ProxyError(
        ProxyErrorCode.BAD_RESPONSE,
        `${where}: SOCKS method ${method} not offered`,
      );
    }
    const port2 = Buffer.alloc(2);
    port2.writeUInt16BE(port);
    socket.write(Buffer.concat([Buffer.from([5, 1, 0]), address(target), port2]));
    const head = await read(4);
    if (head[0] !== 5)
      throw new ProxyError(ProxyErrorCode.BAD_RESPONSE, `${where}: not a SOCKS5 answer`);
    if (head[1] !== 0) {
      const why = REPLIES[head[1]!] ?? `reply ${head[1]}`;
      throw new ProxyError(ProxyErrorCode.REFUSED, `${where}: refused: ${why}`, {
        status: head[1]!,
      });
    }
    // The bound address, which says nothing we use: its length by its type, then the port.
    const type = head[3];
    const len = type === 1 ? 4 : type === 4 ? 16 : type === 3 ? (await read(1))[0]! : -1;
    if (len < 0)
      throw new ProxyError(ProxyErrorCode.BAD_RESPONSE, `${where}: bad address type ${type}`);
    await read(len + 2);
  } catch (e) {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    socket.on('error', () => {});
    socket.destroy();
    throw failed ?? e;
  }
  clearTimeout(timer);
  opts.signal?.removeEventListener('abort', onAbort);
  socket.off('error', onError);
  socket.off('end', onEnd);
  socket.off('close', onEnd);
  socket.off('readable', pump);
  // Bytes that came with the reply are the target's.
  if (buf.length > 0) socket.unshift(buf);
  await new Promise((r) => process.nextTick(r));
  return socket;
}
