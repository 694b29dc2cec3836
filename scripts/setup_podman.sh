#!/usr/bin/env bash
# Containers on a machine with no Docker engine and no reachable registry (what
# scripts/compose_test.sh needs): Debian's podman, runc and debootstrap, and a podman
# configuration that works here. Idempotent; run as root on Debian.
#   - runc, not crun: crun fails on this kind of machine's hybrid cgroups;
#   - lower default container rlimits: podman's defaults (nofile 1048576) are above what the
#     sandbox allows, and containers then fail to start.
# podman-compose comes from PyPI with the project's dev extras (scripts/setup_env.sh --dev).
set -euo pipefail

log() { printf '== %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || { log "no apt-get: install ${missing[*]} by hand"; exit 1; }
  log "installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap \
    >/dev/null
fi

conf=/etc/containers/containers.conf.d/50-vidnav.conf
wanted='[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"'
if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
  log "configuring podman ($conf)"
  as_root mkdir -p "$(dirname "$conf")"
  printf '%s\n' "$wanted" | as_root tee "$conf" >/dev/null
fi
