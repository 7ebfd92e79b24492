export * from './bytes.ts';
export * from './crypto/aead.ts';
export * from './errors.ts';
