export * from './keylog.ts';
export * from './node-crypto.ts';
export * from './select.ts';
export * from './sodium.ts';
