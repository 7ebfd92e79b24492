#!/usr/bin/env bash
# The README's test command runs this (through ./dev test): system packages, lint and type-check,
# then every test — unit, property, vector, integration over real sockets, and a short run of each
# benchmark so that none can rot.
set -euo pipefail
bash scripts/system-deps.sh
echo "== lint and type-check"
pnpm run check
echo "== tests"
pnpm run test:unit
echo "== browser end-to-end (Playwright, Debian chromium)"
pnpm run test:e2e
