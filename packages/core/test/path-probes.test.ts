import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Encapsulation } from '../src/encapsulation.ts';
import {
  lighterCandidates,
  PathProbes,
  retransmissionTimeout,
  VERIFY_TRIES,
} from '../src/path-probes.ts';
import type { Candidate } from '../src/session.ts';

test('retransmission timeout', () => {
  for (const [srtt, rto] of [
    [undefined, 300],
    [10, 200],
    [100, 300],
    [500, 1500],
  ] as const) {
    assert.equal(retransmissionTimeout(srtt), rto, `srtt ${srtt}`);
  }
});

test('verification probe: retries on the chosen path, then data-blocked', () => {
  const p = new PathProbes<string>();
  assert.equal(p.verifyDeadline(300), undefined);
  const ids = [p.startVerify('a', 1200, 0)];
  assert.equal(p.verifyDeadline(300), 300);
  for (let i = 1; i < VERIFY_TRIES; i++) {
    assert.deepEqual(p.verifyExpired('a'), { kind: 'retry' });
    ids.push(p.startVerify('a', 1200, i * 300));
  }
  assert.deepEqual(ids, [1, 2, 3]);
  assert.equal(p.verify?.tries, VERIFY_TRIES);
  assert.deepEqual(p.verifyExpired('a'), { kind: 'blocked', path: 'a', size: 1200 });
  assert.equal(p.verify, undefined);
  assert.ok(p.blocked.has('a'));
});

test('verification probe of a path no longer chosen is dropped', () => {
  const p = new PathProbes<string>();
  p.startVerify('a', 1200, 0);
  assert.deepEqual(p.verifyExpired('b'), { kind: 'stale' });
  assert.equal(p.verify, undefined);
  assert.equal(p.blocked.size, 0);
});

test('acks match id, size and path; one answer settles a lighter batch', () => {
  const p = new PathProbes<string>();
  const v = p.startVerify('a', 1200, 0);
  const l1 = p.startLighter('b', 1200, 5);
  const l2 = p.startLighter('c', 1200, 5);
  p.blocked.add('b');
  // [id, size, path, expected]
  const table = [
    [v, 1200, 'b', undefined], // wrong path
    [v, 100, 'a', undefined], // truncated: not data-sized
    [v, 1200, 'a', { kind: 'verify' }],
    [v, 1200, 'a', undefined], // answered already
    [l1, 1200, 'c', undefined],
    [l1, 1200, 'b', { kind: 'lighter', sentAt: 5 }],
    [l2, 1200, 'c', undefined], // the batch is settled
  ] as const;
  for (const [id, size, path, expected] of table) {
    assert.deepEqual(p.ack(id, size, path), expected, `ack ${id}/${size} on ${path}`);
  }
  assert.equal(p.blocked.has('b'), false);
});

test('lighter candidates: the ones the relay prefers to the encapsulation in use', () => {
  const cand = (path: string, encapsulation: Encapsulation): Candidate<string> =>
    ({ path, info: { encapsulation } }) as unknown as Candidate<string>;
  const cands = [
    cand('udp', Encapsulation.UDP),
    cand('tcp', Encapsulation.TCP),
    cand('ws', Encapsulation.WEBSOCKET),
  ];
  const prefs = [Encapsulation.UDP, Encapsulation.TCP, Encapsulation.WEBSOCKET];
  const names = (path: string | undefined, e: Encapsulation | undefined) =>
    lighterCandidates(cands, path, e, prefs).map((c) => c.path);
  assert.deepEqual(names('ws', Encapsulation.WEBSOCKET), ['udp', 'tcp']);
  assert.deepEqual(names('tcp', Encapsulation.TCP), ['udp']);
  assert.deepEqual(names('udp', Encapsulation.UDP), []);
  assert.deepEqual(names(undefined, undefined), []);
});
