/**
 * The status page's built files (apps/status-page/dist), bundled into the Worker: a Worker reads
 * no files at run time. This module is what the bundle gets when it is built without them (wrangler
 * bundling `src/worker.ts` itself): the page answers 503 saying how to build it. `bundle.ts`
 * (scripts/) swaps it at bundle time for a module holding every file of the built page.
 */
import type { StatusAssets } from '../../relay/src/app.ts';

export const STATUS_ASSETS: StatusAssets = {
  missing:
    'This Worker was bundled without the status page. Build the page ' +
    '(`pnpm --filter @roamlink/status-page build`), then bundle the Worker with ' +
    '`node scripts/bundle.ts` (what `wrangler deploy` runs, wrangler.jsonc).',
};
