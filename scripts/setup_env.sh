#!/usr/bin/env bash
# Prepare a machine for vidnav: system packages, local services for the full stack,
# and the project's virtual environment. Idempotent; safe to run on a fresh machine.
#   scripts/setup_env.sh            # ffmpeg + .venv with vidnav[cpu]
#   scripts/setup_env.sh --dev      # also test tools and Chromium, and start Postgres/Redis
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
PY=${PYTHON:-python3}

log() { printf '== %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  if command -v apt-get >/dev/null; then
    log "installing ffmpeg (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    log "ffmpeg not found and no apt-get: vidnav will use imageio-ffmpeg's bundled binary"
  fi
fi

# The browser tests drive Debian's Chromium through chromium-driver (nothing downloaded).
if [ "$dev" = 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  if command -v apt-get >/dev/null; then
    log "installing chromium and chromium-driver (Debian packages, for the browser tests)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
      chromium chromium-driver >/dev/null
  else
    log "chromium not found and no apt-get: the browser tests will be skipped"
  fi
fi

if [ "$dev" = 1 ]; then
  # Containers for the compose test (tests/deploy): podman, runc, debootstrap, their config.
  bash scripts/setup_podman.sh
  if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
  fi
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# torch first, from the local CPU wheel where there is one, so nothing pulls a CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  log "installing torch (CPU)"
  .venv/bin/pip install -q "torch==2.13.0" \
    || .venv/bin/pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
extras="cpu"
[ "$dev" = 1 ] && extras="cpu,dev"
stamp=".venv/.vidnav-installed-$(sha256sum pyproject.toml | cut -c1-16)-$extras"
if [ ! -f "$stamp" ]; then
  log "installing vidnav[$extras]"
  .venv/bin/pip install -q -e ".[$extras]"
  touch "$stamp"
fi
