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
