/** `pnpm bench <name> [--json] [--quick]`: runs one benchmark, or all of them with `all`. */
const benches: Record<string, () => Promise<{ run: (args: string[]) => void | Promise<void> }>> = {
  sa: () => import('./sa.ts'),
  browser: () => import('./browser.ts'),
  tunnel: () => import('./tunnel.ts'),
  upload: () => import('./upload.ts'),
  'ws-receive': () => import('./ws-receive.ts'),
};

const [name, ...args] = process.argv.slice(2);
if (!name || !(name in benches || name === 'all')) {
  process.stderr.write(
    `usage: pnpm bench <${[...Object.keys(benches), 'all'].join('|')}> [--json] [--quick]\n`,
  );
  process.exit(2);
}
for (const n of name === 'all' ? Object.keys(benches) : [name]) {
  const mod = await benches[n]!();
  await mod.run(args);
}
