/**
 * @roamlink/browser: a roaming encrypted tunnel from a web page. `connect()` races WebSocket and
 * HTTP to a roamlink relay, and the session survives moves (network changes, dead transports, a
 * frozen page) without a new handshake. See README.md.
 */
export type {
  BrowserErrorCode as BrowserErrorCodeType,
  StreamErrorName,
} from './errors.ts';
export { BrowserErrorCode, isRoamlinkBrowserError, RoamlinkBrowserError } from './errors.ts';
export type { KeyStorage, StoredKey } from './keys.ts';
export { browserRandom, DEFAULT_KEY_NAME, loadOrCreateClientKey } from './keys.ts';
export type { BrowserStream, Datagram } from './mux-host.ts';
export type {
  ClosedEventDetail,
  ConnectOptions,
  EncapsulationName,
  HandoverEventDetail,
  PathEventDetail,
  RekeyEventDetail,
  RoamlinkSessionEventMap,
  SessionStatus,
  SuiteName,
  VerdictEventDetail,
  VerdictName,
} from './session.ts';
export { connect, RoamlinkSession } from './session.ts';
export type { BrowserEncapsulation } from './transport.ts';
export { BROWSER_ENCAPSULATIONS } from './transport.ts';
