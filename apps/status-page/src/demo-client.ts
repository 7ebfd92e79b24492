/** What the in-browser demo needs of the browser client: loaded on demand, a chunk of its own. */
export type { BrowserStream, RoamlinkSession } from '@roamlink/browser';
export { connect, loadOrCreateClientKey } from '@roamlink/browser';
export { fromHex, keypairFromSecret, toHex } from '@roamlink/core';
