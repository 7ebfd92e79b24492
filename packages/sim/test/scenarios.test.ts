/**
 * Every scenario of the simulator table (issue 3), run through the real client and relay
 * sessions: the correctness parts of each row (verdict, chosen encapsulation, exactly-once
 * delivery, no new key exchange on a move) and determinism. Performance targets are reported by
 * `pnpm sim`, not asserted here.
 *
 * Scenarios marked todo fail today because the core misses a behaviour issue 3 asks for; the
 * reason names what was observed. They stay asserted in full so that they pass once it is fixed.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runScenario, type ScenarioRow } from '../src/scenario.ts';
import { SCENARIOS } from '../src/scenarios.ts';

/** Scenario name → what the core misses there. Empty: every scenario passes in full. */
const KNOWN_CORE_GAPS: Record<string, string> = {};

const rows = new Map<string, ScenarioRow>();
function row(name: string): ScenarioRow {
  let r = rows.get(name);
  if (!r) {
    const spec = SCENARIOS.find((s) => s.name === name);
    if (!spec) throw new Error(`no scenario ${name}`);
    r = runScenario(spec);
    rows.set(name, r);
  }
  return r;
}

describe('scenario table', () => {
  test('covers at least 20 scenarios with unique names', () => {
    assert.ok(SCENARIOS.length >= 20, `${SCENARIOS.length} scenarios`);
    assert.equal(new Set(SCENARIOS.map((s) => s.name)).size, SCENARIOS.length);
  });

  for (const spec of SCENARIOS) {
    const todo = KNOWN_CORE_GAPS[spec.name];
    test(`${spec.name}: ${spec.description}`, todo === undefined ? {} : { todo }, () => {
      const r = row(spec.name);
      assert.equal(r.detectedVerdict, r.expectedVerdict, 'verdict');
      assert.equal(r.chosenEncapsulation, r.expectedEncapsulation, 'chosen encapsulation');
      assert.equal(r.transportDuplicates, 0, 'no transmission delivered twice');
      assert.ok(
        r.exactlyOnce,
        `every message delivered exactly once (${JSON.stringify(r.messages)})`,
      );
      assert.equal(r.newKeyExchange, false, 'no new key exchange');
    });
  }

  test('rows carry the fields issue 3 names', () => {
    const r = row('no-nat');
    for (const k of [
      'scenario',
      'expectedVerdict',
      'detectedVerdict',
      'expectedEncapsulation',
      'chosenEncapsulation',
      'move',
      'lossy',
      'setupRtt',
      'c2sResumeRtt',
      's2cResumeRtt',
      'validatedRtt',
      'exactlyOnce',
      'newKeyExchange',
    ]) {
      assert.ok(k in r, k);
    }
    assert.equal(r.keepalives, 0, 'no keepalives without a NAT');
  });

  test('moves are measured: resume times and validation are reported', () => {
    const r = row('wifi-to-cellular');
    assert.equal(r.move, true);
    assert.notEqual(r.c2sResumeRtt, null);
    assert.notEqual(r.s2cResumeRtt, null);
    assert.notEqual(r.validatedRtt, null);
  });

  test('proxy-buffering: the buffered stream costs the session nothing; it ends on polling', () => {
    const r = row('proxy-buffering');
    // Up when the POST carrying the handshake is answered (its answer brings the relay's reply,
    // stream or no stream): the polling path's own setup, 2 RTT through the proxy, and no more.
    assert.equal(r.setupRtt, 2);
    assert.equal(r.encapSetupRtt, 2);
    assert.ok(r.setupRtt! <= 3, 'issue 3: up in the time of the fastest allowed path (3 RTT)');
    assert.equal(r.met['setup<=fastestPath'], true);
    assert.equal(r.chosenEncapsulation, 'http-poll');
    assert.equal(r.registrations, 2, 'registered again once, when the stream fell back');
    assert.ok(r.exactlyOnce);
    assert.equal(r.transportDuplicates, 0);
    assert.equal(r.newKeyExchange, false);
    assert.ok(r.bytes['http-poll']!.down > 100_000, 'the traffic went down by polling');
  });

  test('deterministic: the same seed gives the same row', () => {
    for (const name of ['lossy-moves', 'proxy-buffering', 'nat-rebinding']) {
      const spec = SCENARIOS.find((s) => s.name === name)!;
      assert.deepEqual(runScenario(spec), row(name), name);
    }
  });

  test('a different seed changes a lossy run', () => {
    const spec = SCENARIOS.find((s) => s.name === 'lossy-moves')!;
    const other = runScenario({ ...spec, seed: 2 });
    assert.notDeepEqual(other.messages, row('lossy-moves').messages);
  });
});
