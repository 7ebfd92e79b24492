/**
 * Starting a server: every listener of this package and of the apps (TCP paths, the relay's HTTP
 * port, SOCKS5, forwards) listens the same way, so one function does it.
 */
import type { Server } from 'node:net';
import type { UdpEndpoint } from './udp.ts';

/**
 * Starts `server` listening on `host:port` (port 0: any free one) and resolves with the address
 * it got, an IPv4-mapped IPv6 address written as IPv4; rejects if it cannot listen.
 */
export function listenOn(server: Server, host: string, port: number): Promise<UdpEndpoint> {
  return new Promise<UdpEndpoint>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(
        a && typeof a === 'object'
          ? { address: a.address.replace(/^::ffff:(?=\d+\.)/, ''), port: a.port }
          : { address: host, port },
      );
    });
  });
}
