/**
 * A relay in the test's own process, on loopback: noble's ChaCha20-Poly1305, every client
 * allowed, every stream sent to 127.0.0.1, no logs. `listen` names its listeners.
 */
import { generateKeypair, type Keypair, nobleProvider, Suite } from '@roamlink/core';
import { nodeRandom } from '@roamlink/node';
import { type RelayHandle, type RelayOptions, startRelay } from '../src/relay.ts';

export function startLoopbackRelay(
  listen: Pick<RelayOptions, 'udp' | 'tcp' | 'http'>,
  keypair: Keypair = generateKeypair(nodeRandom),
): Promise<RelayHandle> {
  return startRelay({
    keypair,
    provider: nobleProvider,
    suites: [Suite.CHACHA20_POLY1305],
    ...listen,
    authorize: () => ({ allowed: true }),
    egress: async () => ({ address: '127.0.0.1' }),
    log: () => {},
  });
}
