export * from './driver.ts';
export * from './http.ts';
export * from './keys.ts';
export * from './tcp.ts';
export * from './udp.ts';
export * from './websocket.ts';
