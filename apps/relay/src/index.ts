export * from './app.ts';
export { runRelay } from './main.ts';
export {
  type EgressAnswer,
  errnoToStreamError,
  type RelayHandle,
  type RelayOptions,
  startRelay,
} from './relay.ts';
