/**
 * @roamlink/sim: the five roamlink encapsulations (UDP, TCP, WebSocket, HTTP streaming, HTTP long
 * polling) as adapters over the deterministic network simulator, each with a client half and a
 * relay half. The core stays sans-I/O: it sees datagrams, path ids and PathInfo, never a socket.
 * Wire formats: README.md.
 */
export * from './framing.ts';
export * from './http-client.ts';
export * from './http-poll.ts';
export * from './http-session.ts';
export * from './http-stream.ts';
export * from './open.ts';
export * from './relay.ts';
export * from './scenario.ts';
export * from './tcp.ts';
export * from './types.ts';
export * from './udp.ts';
export * from './websocket.ts';
