/**
 * The JSON-lines logger: every line parses back to the envelope and fields; thresholds; child
 * loggers' bound fields; hostile fields (cycles, bigint, bytes, errors, throwing getters) and a
 * failing sink never throw; the pretty format.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger, type LoggerOptions, MAX_HEX_BYTES, toLoggable } from '../src/log.ts';

const FIXED = new Date('2025-01-02T03:04:05.678Z');

function capture(o: LoggerOptions = {}): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const log = createLogger({ now: () => FIXED, out: { write: (s) => lines.push(s) }, ...o });
  return { lines, log };
}
const parse = (line: string): Record<string, unknown> => {
  assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'), 'one line');
  return JSON.parse(line) as Record<string, unknown>;
};

test('one JSON object per line: ts, level, msg first, then fields', () => {
  const { lines, log } = capture();
  log.info('listening', { udp: '127.0.0.1:51820', sessions: 0, ok: true, none: null });
  assert.equal(lines.length, 1);
  assert.equal(
    lines[0],
    '{"ts":"2025-01-02T03:04:05.678Z","level":"info","msg":"listening","udp":"127.0.0.1:51820","sessions":0,"ok":true,"none":null}\n',
  );
  log.error('multi\nline "msg"');
  assert.deepEqual(parse(lines[1]!), {
    ts: '2025-01-02T03:04:05.678Z',
    level: 'error',
    msg: 'multi\nline "msg"',
  });
});

test('threshold: lower levels are not written; silent writes nothing', () => {
  const { lines, log } = capture({ level: 'warn' });
  log.debug('d');
  log.info('i');
  log.warn('w');
  log.error('e');
  assert.deepEqual(
    lines.map((l) => parse(l).level),
    ['warn', 'error'],
  );
  assert.equal(log.enabled('info'), false);
  assert.equal(log.enabled('error'), true);
  const quiet = capture({ level: 'silent' });
  quiet.log.error('nothing');
  assert.equal(quiet.lines.length, 0);
  const all = capture({ level: 'debug' });
  all.log.debug('yes');
  assert.equal(parse(all.lines[0]!).level, 'debug');
});

test('child loggers bind fields; call fields win; envelope keys cannot be overwritten', () => {
  const { lines, log } = capture({ fields: { svc: 'relay' } });
  const session = log.child({ session: 'ab12', path: 'tcp:3' });
  const moved = session.child({ path: 'ws:1', verdict: 'address_and_port' });
  moved.info('path-changed', { reason: 'registration' });
  session.warn('slow', { path: 'tcp:4', level: 'fake', ts: 1, msg: 'x' });
  log.info('plain');
  assert.deepEqual(parse(lines[0]!), {
    ts: FIXED.toISOString(),
    level: 'info',
    msg: 'path-changed',
    svc: 'relay',
    session: 'ab12',
    path: 'ws:1',
    verdict: 'address_and_port',
    reason: 'registration',
  });
  assert.deepEqual(parse(lines[1]!), {
    ts: FIXED.toISOString(),
    level: 'warn',
    msg: 'slow',
    svc: 'relay',
    session: 'ab12',
    path: 'tcp:4',
    _level: 'fake',
    _ts: 1,
    _msg: 'x',
  });
  assert.deepEqual(Object.keys(parse(lines[2]!)), ['ts', 'level', 'msg', 'svc']);
  // A child keeps the parent's threshold.
  const { lines: l2, log: warnOnly } = capture({ level: 'warn' });
  warnOnly.child({ a: 1 }).info('hidden');
  assert.equal(l2.length, 0);
});

test('hostile fields: cycles, bigint, bytes, errors, odd numbers, throwing getters', () => {
  const { lines, log } = capture();
  const cyclic: Record<string, unknown> = { name: 'a' };
  cyclic.self = cyclic;
  const shared = { x: 1 };
  const err = Object.assign(new Error('boom'), { code: 'ROAMLINK_ERR_MALFORMED' });
  const nasty = {
    get bad(): never {
      throw new Error('getter');
    },
    fine: 1,
  };
  const big = new Uint8Array(MAX_HEX_BYTES + 1);
  log.error('weird', {
    cyclic,
    twice: [shared, shared],
    n: 12345678901234567890n,
    key: Uint8Array.of(0, 1, 0xab, 0xff),
    buf: Buffer.from('hi'),
    big,
    u16: new Uint16Array(4),
    err,
    inf: Number.POSITIVE_INFINITY,
    nan: Number.NaN,
    undef: undefined,
    fn: function named() {},
    sym: Symbol('s'),
    date: FIXED,
    map: new Map([['k', 1n]]),
    set: new Set([1, 2]),
    nasty,
  });
  assert.equal(lines.length, 1);
  const o = parse(lines[0]!);
  assert.deepEqual(o.cyclic, { name: 'a', self: '[circular]' });
  assert.deepEqual(o.twice, [{ x: 1 }, { x: 1 }], 'a shared object is not a cycle');
  assert.equal(o.n, '12345678901234567890');
  assert.equal(o.key, '0001abff');
  assert.equal(o.buf, '6869', 'Buffer as hex, not its toJSON');
  assert.equal(o.big, `[${MAX_HEX_BYTES + 1} bytes]`);
  assert.equal(o.u16, '[Uint16Array 8 bytes]');
  const e = o.err as Record<string, unknown>;
  assert.equal(e.name, 'Error');
  assert.equal(e.message, 'boom');
  assert.equal(e.code, 'ROAMLINK_ERR_MALFORMED');
  assert.match(String(e.stack), /boom/);
  assert.equal(o.inf, 'Infinity');
  assert.equal(o.nan, 'NaN');
  assert.equal(o.undef, null);
  assert.equal(o.fn, '[function named]');
  assert.equal(o.sym, 'Symbol(s)');
  assert.equal(o.date, FIXED.toISOString());
  assert.deepEqual(o.map, { k: '1' });
  assert.deepEqual(o.set, [1, 2]);
  assert.deepEqual(o.nasty, { bad: '[unreadable]', fine: 1 });
  // Deep nesting is cut, not followed forever.
  let deep: Record<string, unknown> = { leaf: true };
  for (let i = 0; i < 50; i++) deep = { deep };
  assert.match(JSON.stringify(toLoggable(deep)), /\[…\]/);
});

test('a failing sink or clock never throws out of a log call', () => {
  const log = createLogger({
    out: {
      write: () => {
        throw new Error('EPIPE');
      },
    },
  });
  assert.doesNotThrow(() => log.error('still fine', { a: 1 }));
  const lines: string[] = [];
  const badClock = createLogger({
    now: () => {
      throw new Error('clock');
    },
    out: { write: (s) => lines.push(s) },
  });
  assert.doesNotThrow(() => badClock.info('x'));
  assert.match(String(parse(lines[0]!).ts), /^\d{4}-\d\d-\d\dT/);
  // A proxy that throws on every trap.
  const trap = new Proxy(
    {},
    {
      ownKeys: () => {
        throw new Error('trap');
      },
      getPrototypeOf: () => {
        throw new Error('trap');
      },
    },
  );
  const { lines: l2, log: l } = capture();
  assert.doesNotThrow(() => l.info('proxy', { trap }));
  assert.equal(parse(l2[0]!).trap, '[unloggable]');
});

test('pretty format: one human line; auto picks by TTY; colours only when asked', () => {
  const { lines, log } = capture({ format: 'pretty' });
  log
    .child({ session: 'ab12' })
    .warn('path changed', { reason: 'a b', n: 2, key: Uint8Array.of(1) });
  assert.equal(lines[0], '03:04:05.678 WARN  path changed session=ab12 reason="a b" n=2 key=01\n');
  const colored = capture({ format: 'pretty', color: true });
  colored.log.error('x');
  assert.equal(colored.lines[0], '03:04:05.678 \u001b[31mERROR\u001b[0m x\n');
  const tty: string[] = [];
  const auto = createLogger({
    format: 'auto',
    now: () => FIXED,
    out: { isTTY: true, write: (s) => tty.push(s) },
  });
  assert.equal(auto.format, 'pretty');
  const pipe = createLogger({ format: 'auto', out: { write: () => true } });
  assert.equal(pipe.format, 'json');
  auto.info('hi');
  assert.equal(tty[0], '03:04:05.678 \u001b[36mINFO \u001b[0m hi\n');
});
