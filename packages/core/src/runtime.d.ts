/**
 * The few Web-platform globals the core may use. They exist in every runtime roamlink targets
 * (Node, browsers, Workers); declaring them here keeps the core's `types: []` free of both the DOM
 * and Node typings, so that anything else fails to type-check.
 */
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
