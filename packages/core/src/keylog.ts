/**
 * Key log lines for Wireshark's ESP decryption ("esp_sa" table, Preferences → Protocols → ESP →
 * ESP SAs), one line per SA direction, so that a capture of roamlink's UDP encapsulation decrypts.
 * Pure formatting; writing the file is a runtime adapter's job (ROAMLINK_KEYLOG on Node).
 *
 * Fields, each a double-quoted string: protocol, source address, destination address, SPI,
 * encryption algorithm, key (key || salt, RFC 4106 §8.1 / RFC 7634 §4), authentication algorithm
 * ("NULL": the AEAD's ICV is the authentication), authentication key (empty). Addresses are "*"
 * (any) by default, because an SA outlives every address it is used from — that is the point of
 * roamlink.
 */
import { toHex } from './bytes.ts';
import { Suite } from './crypto/aead.ts';
import type { SaKeyInfo } from './sa.ts';

/** Wireshark's names for the two suites, as its ESP dissector lists them. */
export const WIRESHARK_ESP_ALGORITHMS: Record<Suite, string> = {
  [Suite.AES_256_GCM]: 'AES-GCM with 16 octet ICV [RFC4106]',
  [Suite.CHACHA20_POLY1305]: 'ChaCha20 with Poly1305 [RFC7634]',
};

export function wiresharkEspSaLine(
  info: SaKeyInfo,
  addresses: { family?: 'IPv4' | 'IPv6'; src?: string; dst?: string } = {},
): string {
  const fields = [
    addresses.family ?? 'IPv4',
    addresses.src ?? '*',
    addresses.dst ?? '*',
    `0x${info.spi.toString(16).padStart(8, '0')}`,
    WIRESHARK_ESP_ALGORITHMS[info.suite],
    `0x${toHex(info.keys.key)}${toHex(info.keys.salt)}`,
    'NULL',
    '',
  ];
  return fields.map((f) => `"${f}"`).join(',');
}
