export * from './config.ts';
export * from './http-relay.ts';
export * from './mux-resume.ts';
export * from './relay-state.ts';
export * from './routing.ts';
