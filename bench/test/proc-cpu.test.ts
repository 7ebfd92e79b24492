/**
 * CPU time of a process tree from /proc: a child and the grandchild it spawned each burn at least
 * 0.2 s of CPU (measured by themselves, so a busy machine only makes it take longer); the tree
 * counts both, the child alone does not.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { treeCpuSeconds } from '../src/proc-cpu.ts';

// Burns 0.2 s of its own CPU, says so, then lives until its stdin closes (its parent is gone).
const SPIN =
  'while (process.cpuUsage().user < 200000) {} console.log("spun"); process.stdin.resume(); process.stdin.on("end", () => process.exit(0));';

test('a tree counts its descendants: a child and its grandchild, 0.2 s of CPU each', async () => {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const g = require('node:child_process').spawn(process.execPath, ['-e', ${JSON.stringify(SPIN)}], { stdio: ['pipe', 'pipe', 'ignore'] });
       g.stdout.once('data', () => { ${SPIN} });`,
    ],
    { stdio: ['pipe', 'pipe', 'ignore'] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (c) => reject(new Error(`child exited ${c}`)));
    });
    const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    const own = (Number(fields[11]) + Number(fields[12])) / 100;
    const tree = treeCpuSeconds([child.pid!])!;
    assert.ok(own >= 0.19, `the child alone: ${own} s`);
    assert.ok(tree >= own + 0.19, `the tree: ${tree} s, the child alone ${own} s`);
    // A process that is not there counts nothing.
    assert.equal(treeCpuSeconds([2 ** 22 + 12_345]), 0);
  } finally {
    // Closing its stdin ends the child, and with it the grandchild's stdin.
    child.stdin.end();
    await new Promise((r) => child.once('exit', r));
  }
});
