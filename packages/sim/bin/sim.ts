/**
 * `pnpm sim`: runs every scenario of the deterministic simulator and prints one row each
 * (issue 3). `--json` prints the rows as a JSON array instead; `--only <name>` (repeatable) runs
 * just those scenarios; `--seed <n>` changes the seed of every run; `--trace` writes every
 * session event and path error to stderr.
 */
import { runScenario, type ScenarioRow } from '../src/scenario.ts';
import { SCENARIOS } from '../src/scenarios.ts';

const SHORT: Record<string, string> = { websocket: 'ws', 'http-stream': 'hs', 'http-poll': 'hp' };

const args = process.argv.slice(2);
const json = args.includes('--json');
const trace = args.includes('--trace');
const only: string[] = [];
let seed: number | undefined;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--only' && args[i + 1] !== undefined) only.push(args[++i]!);
  else if (args[i] === '--seed' && args[i + 1] !== undefined) seed = Number(args[++i]);
}

const specs = SCENARIOS.filter((s) => only.length === 0 || only.includes(s.name));
if (specs.length === 0) {
  process.stderr.write(`no such scenario; known: ${SCENARIOS.map((s) => s.name).join(', ')}\n`);
  process.exit(2);
}
const rows: ScenarioRow[] = specs.map((s) =>
  runScenario(seed === undefined ? s : { ...s, seed }, {
    ...(trace
      ? { log: (t, line) => process.stderr.write(`${s.name} ${t.toFixed(1)} ${line}\n`) }
      : {}),
  }),
);

if (json) {
  process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
} else {
  printTable(rows);
}

function num(x: number | null): string {
  return x === null ? '-' : String(x);
}

function kb(n: number): string {
  return n < 1024 ? String(n) : `${(n / 1024).toFixed(n < 10_240 ? 1 : 0)}k`;
}

function printTable(rs: readonly ScenarioRow[]): void {
  const head = [
    'scenario',
    'verdict exp/got',
    'encap exp/got',
    'mv',
    'loss',
    'setup',
    'encSet',
    'c2s',
    's2c',
    'valid',
    'dead ms',
    'bytes up/down per path',
    'ka',
    'once',
    'kex',
    'missed targets',
  ];
  const body = rs.map((r) => [
    r.scenario,
    `${r.expectedVerdict}/${r.detectedVerdict}`,
    `${r.expectedEncapsulation}/${r.chosenEncapsulation}`,
    r.move ? 'y' : '-',
    r.lossy ? 'y' : '-',
    num(r.setupRtt),
    num(r.encapSetupRtt),
    num(r.c2sResumeRtt),
    num(r.s2cResumeRtt),
    num(r.validatedRtt),
    num(r.deadDetectMs ?? r.fallbackMs ?? r.lighterBackMs),
    Object.entries(r.bytes)
      .filter(([, b]) => b.up + b.down > 0)
      .map(([k, b]) => `${SHORT[k] ?? k} ${kb(b.up)}/${kb(b.down)}`)
      .join(' '),
    String(r.keepalives),
    r.exactlyOnce ? 'yes' : 'NO',
    r.newKeyExchange ? 'NEW' : 'no',
    Object.entries(r.met)
      .filter(([, ok]) => !ok)
      .map(([k]) => k)
      .join(' ') || '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
  const met = rs.reduce((n, r) => n + Object.values(r.met).filter(Boolean).length, 0);
  const all = rs.reduce((n, r) => n + Object.keys(r.met).length, 0);
  out.push(
    '',
    `RTT columns are in base round trips of the path in use; resume and validation exclude the`,
    `encapsulation's own setup (encSet). dead ms: fault noticed, data-blocked fallback or lighter`,
    `path back (whichever the scenario measures). Bytes: datagram bytes client → relay / relay →`,
    `client per encapsulation (ws WebSocket, hs HTTP streaming, hp HTTP polling); ka: NAT`,
    `keepalives. Targets met: ${met} of ${all}.`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
}
