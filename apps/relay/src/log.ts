/**
 * Structured logs: one JSON object per line, `{"ts":"<ISO 8601>","level":"info","msg":"…",…}`,
 * then the bound fields of the logger and the fields of the call (the call's win on a clash).
 * A `pretty` format writes one human line instead (`12:00:00.123 INFO  msg key=value`), coloured
 * when asked; `auto` picks pretty on a TTY and JSON elsewhere.
 *
 * Logging never throws and never takes the process down: circular references become
 * "[circular]", bigints decimal strings, byte arrays hex (or "[N bytes]" when long), errors
 * {name, message, code, stack}, non-finite numbers strings; a failing write is ignored.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** A threshold: a level, or `silent` for nothing at all. */
export type LogThreshold = LogLevel | 'silent';
export type LogFormat = 'json' | 'pretty' | 'auto';
export type LogFields = Readonly<Record<string, unknown>>;

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
const RANK: Record<LogThreshold, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

/** Where lines go: anything with `write(string)` (a stream, or an array-backed fake in tests). */
export interface LogSink {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

export interface LoggerOptions {
  /** Lowest level written; `info` unless set. */
  level?: LogThreshold;
  format?: LogFormat;
  /** stderr unless set. */
  out?: LogSink;
  /** Colours in pretty mode; by default when `out` is a TTY. */
  color?: boolean;
  /** The clock, for tests. */
  now?: () => Date;
  /** Fields on every line. */
  fields?: LogFields;
}

/** Byte arrays up to this length are written as hex; longer ones as "[N bytes]". */
export const MAX_HEX_BYTES = 64;
const MAX_DEPTH = 6;
const MAX_KEYS = 100;
const RESERVED = new Set(['ts', 'level', 'msg']);

function hex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i]!.toString(16).padStart(2, '0');
  return s;
}

/**
 * Makes a value safe for JSON.stringify: no cycles, no bigint, no `toJSON` surprises (Buffer's
 * included), bounded depth. Never throws.
 */
export function toLoggable(v: unknown, seen: object[] = [], depth = 0): unknown {
  try {
    switch (typeof v) {
      case 'string':
      case 'boolean':
        return v;
      case 'number':
        return Number.isFinite(v) ? v : String(v);
      case 'bigint':
        return v.toString();
      case 'undefined':
        return null;
      case 'symbol':
        return v.toString();
      case 'function':
        return `[function ${v.name || 'anonymous'}]`;
    }
    if (v === null) return null;
    const o = v as object;
    if (o instanceof Uint8Array) return o.length <= MAX_HEX_BYTES ? hex(o) : `[${o.length} bytes]`;
    if (ArrayBuffer.isView(o)) return `[${o.constructor.name} ${o.byteLength} bytes]`;
    if (o instanceof ArrayBuffer) return `[ArrayBuffer ${o.byteLength} bytes]`;
    if (o instanceof Date) return Number.isNaN(o.getTime()) ? 'Invalid Date' : o.toISOString();
    if (seen.includes(o)) return '[circular]';
    if (depth >= MAX_DEPTH) return '[…]';
    const inner = [...seen, o];
    if (o instanceof Error) {
      const e = o as Error & { code?: unknown; cause?: unknown };
      const out: Record<string, unknown> = { name: e.name, message: e.message };
      if (e.code !== undefined) out.code = toLoggable(e.code, inner, depth + 1);
      if (e.stack) out.stack = e.stack;
      if (e.cause !== undefined) out.cause = toLoggable(e.cause, inner, depth + 1);
      return out;
    }
    if (Array.isArray(o)) {
      const list = o.slice(0, MAX_KEYS).map((x) => toLoggable(x, inner, depth + 1));
      if (o.length > MAX_KEYS) list.push(`[… ${o.length - MAX_KEYS} more]`);
      return list;
    }
    if (o instanceof Map) {
      return toLoggable(Object.fromEntries([...o].map(([k, x]) => [String(k), x])), seen, depth);
    }
    if (o instanceof Set) return toLoggable([...o], seen, depth);
    const out: Record<string, unknown> = {};
    let n = 0;
    for (const k of Object.keys(o)) {
      if (n++ >= MAX_KEYS) {
        out['…'] = `${Object.keys(o).length - MAX_KEYS} more keys`;
        break;
      }
      let x: unknown;
      try {
        x = (o as Record<string, unknown>)[k];
      } catch {
        x = '[unreadable]';
      }
      out[k] = toLoggable(x, inner, depth + 1);
    }
    return out;
  } catch {
    return '[unloggable]';
  }
}

const COLORS: Record<LogLevel, string> = {
  debug: '\u001b[90m',
  info: '\u001b[36m',
  warn: '\u001b[33m',
  error: '\u001b[31m',
};
const RESET = '\u001b[0m';

function prettyValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? 'null';
}

export class Logger {
  readonly level: LogThreshold;
  readonly format: 'json' | 'pretty';
  readonly #out: LogSink;
  readonly #color: boolean;
  readonly #now: () => Date;
  readonly #fields: LogFields;

  constructor(o: LoggerOptions = {}) {
    this.level = o.level ?? 'info';
    this.#out = o.out ?? process.stderr;
    const fmt = o.format ?? 'json';
    this.format = fmt === 'auto' ? (this.#out.isTTY ? 'pretty' : 'json') : fmt;
    this.#color = o.color ?? (this.format === 'pretty' && this.#out.isTTY === true);
    this.#now = o.now ?? (() => new Date());
    this.#fields = o.fields ?? {};
  }

  /** A logger whose lines carry `fields` too (e.g. session, path, verdict). */
  child(fields: LogFields): Logger {
    return new Logger({
      level: this.level,
      format: this.format,
      out: this.#out,
      color: this.#color,
      now: this.#now,
      fields: { ...this.#fields, ...fields },
    });
  }

  /** Whether `level` would be written: check it before building costly fields. */
  enabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.level];
  }

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }

  log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (RANK[level] < RANK[this.level]) return;
    let line: string;
    try {
      line = this.#format(level, msg, fields);
    } catch {
      // Unreachable in practice (toLoggable does not throw); still, a log call must not.
      line = `${JSON.stringify({ ts: this.#ts(), level, msg: String(msg), logError: 'unformattable fields' })}\n`;
    }
    try {
      this.#out.write(line);
    } catch {
      // A closed pipe must not take the relay down.
    }
  }

  #ts(): string {
    try {
      return this.#now().toISOString();
    } catch {
      return new Date().toISOString();
    }
  }

  #merged(fields: LogFields | undefined): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const put = (src: LogFields): void => {
      for (const k of Object.keys(src)) {
        // The envelope's own keys stay the envelope's: a clashing field gets a leading "_".
        out[RESERVED.has(k) ? `_${k}` : k] = toLoggable(src[k], [], 1);
      }
    };
    put(this.#fields);
    if (fields) put(fields);
    return out;
  }

  #format(level: LogLevel, msg: string, fields: LogFields | undefined): string {
    const ts = this.#ts();
    const rest = this.#merged(fields);
    if (this.format === 'json') {
      return `${JSON.stringify({ ts, level, msg: String(msg), ...rest })}\n`;
    }
    const time = ts.slice(11, 23);
    const tag = level.toUpperCase().padEnd(5);
    const kv = Object.entries(rest)
      .map(([k, v]) => `${k}=${prettyValue(v)}`)
      .join(' ');
    const head = this.#color ? `${COLORS[level]}${tag}${RESET}` : tag;
    return `${time} ${head} ${String(msg).replace(/\n/g, '\\n')}${kv ? ` ${kv}` : ''}\n`;
  }
}

export function createLogger(o: LoggerOptions = {}): Logger {
  return new Logger(o);
}
