/**
 * The Node side of the key log: when ROAMLINK_KEYLOG names a file, every SA's keys are appended
 * to it as lines of Wireshark's "esp_sa" table (format in @roamlink/core keylog.ts), created with
 * mode 0600 because it holds session keys. docs/PROTOCOL.md ("Key log") says how to use it.
 */
import { appendFileSync } from 'node:fs';
import type { SaKeyInfo } from '@roamlink/core';
import { wiresharkEspSaLine } from '@roamlink/core';

export type KeyLogWriter = (info: SaKeyInfo) => void;

/** A writer for `path` (default: $ROAMLINK_KEYLOG), or undefined when no key log is wanted. */
export function keyLogWriter(
  path: string | undefined = process.env.ROAMLINK_KEYLOG,
): KeyLogWriter | undefined {
  if (!path) return undefined;
  return (info) => {
    appendFileSync(path, `${wiresharkEspSaLine(info)}\n`, { mode: 0o600 });
  };
}
