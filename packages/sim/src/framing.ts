/**
 * Length-prefixed records (RFC 8229 §3), the framing of the TCP encapsulation and of every HTTP
 * body: shared with the Node adapters from the core, so that simulated and real bytes are the same.
 */
export {
  decodeRecords,
  EMPTY_RECORD,
  encodeRecord,
  encodeRecords,
  RECORD_HEADER_BYTES,
  RecordReader,
} from '@roamlink/core';
