/**
 * A real move from UDP to TCP: the relay and client processes on loopback, registered on UDP (the
 * relay's choice when both work); then the client's UDP socket is closed under it (SIGUSR2) and
 * the client moves to the TCP connection it already has. The session must end on TCP with the
 * one handshake it started with (a move is a registration round, never a new key exchange), and
 * echoes must keep coming back over TCP.
 */
import { test } from 'node:test';
import { assertMoved, runDemo } from './demo-process.ts';

test('relay and client processes: a move from UDP to TCP keeps the SA', async () => {
  const r = await runDemo([], async (d) => {
    await d.until(
      (l) => l.event === 'registered' && l.encapsulation === 'udp',
      'registration on UDP',
    );
    await d.sleep(1500);
    d.signal('SIGUSR2');
    await d.sleep(2500);
  });
  assertMoved(r, 'udp-closed', 'udp', 'tcp');
});
