/**
 * A real move from TCP to WebSocket: the relay and client processes on loopback, the client
 * without UDP (--no-udp), so registered on TCP (the relay's choice over WebSocket); then the
 * client's TCP connection is closed under it (SIGUSR1) and the client moves to the WebSocket it
 * already has. The session must end on WebSocket with the one handshake it started with, and
 * echoes must keep coming back over it.
 */
import { test } from 'node:test';
import { assertMoved, runDemo } from './demo-process.ts';

test('relay and client processes: a move from TCP to WebSocket keeps the SA', async () => {
  const r = await runDemo(['--no-udp'], async (d) => {
    await d.until(
      (l) => l.event === 'registered' && l.encapsulation === 'tcp',
      'registration on TCP',
    );
    await d.sleep(1500);
    d.signal('SIGUSR1');
    await d.sleep(2500);
  });
  assertMoved(r, 'tcp-closed', 'tcp', 'websocket');
});
