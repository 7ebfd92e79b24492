#!/usr/bin/env bash
# Debian packages the tests and benchmarks use: tshark (the key log test decrypts a capture with
# it), squid (a real HTTP proxy with CONNECT and basic auth), openssh-server and openssh-client
# (`pnpm bench tunnel` compares against `ssh -D`), chromium (`pnpm test:e2e` drives Debian's
# /usr/bin/chromium through playwright-core). Installed only when missing; needs root (CI runs as
# root).
set -euo pipefail
need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v squid >/dev/null 2>&1 || need+=(squid)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "[setup] missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
  exit 0
fi
echo "[setup] apt-get install ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
