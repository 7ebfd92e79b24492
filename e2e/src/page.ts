/**
 * The test page's API (e2e/page/app.js, `window.e2e`) as the specs call it through
 * `page.evaluate`: the browser package's own types for what it returns.
 */
import type { ConnectOptions, SessionStatus } from '@roamlink/browser';
import type { Page } from 'playwright-core';

export interface Progress {
  total: number;
  sent: number;
  received: number;
  done: boolean;
  error: string | undefined;
  ms: number;
  firstBad: number;
}

interface E2eApi {
  connect(o: Omit<ConnectOptions, 'onLog'>): Promise<{ ms: number; status: SessionStatus }>;
  status(): SessionStatus;
  events(): { type: string; detail: unknown }[];
  startEcho(o: { host: string; port: number; total: number; rate?: number }): boolean;
  progress(): Progress | undefined;
  finish(): Promise<Progress>;
  pingPong(o: { host: string; port: number; count: number; size?: number }): Promise<number[]>;
  wsEcho(o: {
    url: string;
    total: number;
    count: number;
  }): Promise<{ ms: number; times: number[] }>;
  close(): void;
}

/** The page's `window.e2e`. Spelled out inside each function: page.evaluate sends only its source. */
type W = { e2e: E2eApi };

export const pageConnect = (page: Page, o: Omit<ConnectOptions, 'onLog'>) =>
  page.evaluate((opts) => (globalThis as unknown as W).e2e.connect(opts), o);
export const pageStatus = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as W).e2e.status());
export const pageEvents = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as W).e2e.events());
export const pageStartEcho = (
  page: Page,
  o: { host: string; port: number; total: number; rate?: number },
) => page.evaluate((x) => (globalThis as unknown as W).e2e.startEcho(x), o);
export const pageProgress = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as W).e2e.progress());
export const pageFinish = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as W).e2e.finish());
export const pageClose = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as W).e2e.close());
export const pagePingPong = (
  page: Page,
  o: { host: string; port: number; count: number; size?: number },
) => page.evaluate((x) => (globalThis as unknown as W).e2e.pingPong(x), o);
export const pageWsEcho = (page: Page, o: { url: string; total: number; count: number }) =>
  page.evaluate((x) => (globalThis as unknown as W).e2e.wsEcho(x), o);
