/** The published Noise IK / IKpsk2 vectors (vectors/noise-ik.json) and their layout. */
import { readFileSync } from 'node:fs';

export interface NoiseVectorMessage {
  payload: string;
  ciphertext: string;
}

/** Both published layouts: cacophony uses name/init_psk, snow uses protocol_name/init_psks. */
export interface NoiseVector {
  name?: string;
  protocol_name?: string;
  init_prologue: string;
  init_psk?: string;
  init_psks?: string[];
  init_static: string;
  init_ephemeral: string;
  init_remote_static: string;
  resp_prologue: string;
  resp_psk?: string;
  resp_psks?: string[];
  resp_static: string;
  resp_ephemeral: string;
  handshake_hash?: string;
  messages: NoiseVectorMessage[];
}

export function loadNoiseVectors(): { source: string; vectors: NoiseVector[] } {
  return JSON.parse(readFileSync(new URL('./vectors/noise-ik.json', import.meta.url), 'utf8')) as {
    source: string;
    vectors: NoiseVector[];
  };
}
