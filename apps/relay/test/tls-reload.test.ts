/**
 * watchTls (main.ts): a renewal written over the relay's certificate files is taken up once
 * their modification time changes, with no signal; a pair that does not load is logged and not
 * applied. Real files and a short interval; the SIGHUP path runs against the real process in
 * apps/client/test/tls.test.ts.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../src/log.ts';
import { watchTls } from '../src/main.ts';

const TLS = fileURLToPath(new URL('../../../packages/node/test/fixtures/tls/', import.meta.url));

const until = async (cond: () => boolean, what: string): Promise<void> => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), `no ${what} within 2 s`);
};

test('watchTls: changed files are applied without a signal; a bad pair is logged and not applied', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roamlink-tls-reload-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  copyFileSync(join(TLS, 'relay.pem'), cert);
  copyFileSync(join(TLS, 'relay.key'), key);
  const applied: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    format: 'json',
    out: { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
  });
  const stop = watchTls(
    { tlsCert: cert, tlsKey: key },
    (t) => applied.push(new X509Certificate(t.cert).fingerprint256),
    log,
    20,
  );
  try {
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(applied, [], 'nothing changed, nothing applied');

    copyFileSync(join(TLS, 'other.pem'), cert);
    copyFileSync(join(TLS, 'other.key'), key);
    // Some filesystems keep coarse times: make the change visible whatever they keep.
    const later = new Date(Date.now() + 5000);
    utimesSync(cert, later, later);
    await until(() => applied.length === 1, 'reload');
    assert.equal(
      applied[0],
      new X509Certificate(readFileSync(join(TLS, 'other.pem'))).fingerprint256,
    );
    const ok = lines.find((l) => l.msg === 'tls-reloaded')!;
    assert.equal(ok.why, 'files changed');
    assert.match(String(ok.notAfter), /^2126-/);

    // The certificate renewed, its key not yet: refused, and nothing applied.
    copyFileSync(join(TLS, 'relay.pem'), cert);
    const later2 = new Date(Date.now() + 10_000);
    utimesSync(cert, later2, later2);
    await until(() => lines.some((l) => l.msg === 'tls-reload-failed'), 'the refusal');
    assert.equal(applied.length, 1);
    assert.match(
      String(lines.find((l) => l.msg === 'tls-reload-failed')!.error),
      /not a PEM certificate and its key/,
    );
  } finally {
    stop();
  }
});
