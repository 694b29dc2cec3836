#!/usr/bin/env bash
# Regenerate the image's lock files from pyproject.toml with pip-tools, on the image's own
# interpreter (Debian bookworm's Python 3.11.2: markers such as python_full_version differ
# from a host's Python):
#   requirements/image.txt      vidnav and its dependencies (PROFILE=remote)
#   requirements/image-cpu.txt  the same plus the CPU model profile (PROFILE=cpu; torch CPU)
# Run after changing dependencies in pyproject.toml; commit the result.
#   ENGINE=docker bash scripts/lock.sh      (default: podman)
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${ENGINE:-podman}
base=${VIDNAV_BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
if [ "$engine" = podman ] && podman image exists localhost/vidnav-base:bookworm; then
  base=localhost/vidnav-base:bookworm
fi
"$engine" build -q --target venv --build-arg "BASE=$base" -t localhost/vidnav-lock:latest . \
  >/dev/null
ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
mounts=(-v "$PWD:/src" -w /src)
[ -s "$ca" ] && mounts+=(-v "$ca:/run/secrets/pip_ca:ro" -e PIP_CERT=/run/secrets/pip_ca)
links=$(pip config get global.find-links 2>/dev/null || true)
[ -n "$links" ] && [ -d "$links" ] && mounts+=(-v "$links:$links:ro" -e "PIP_FIND_LINKS=$links")
"$engine" run --rm --user 0 -e CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "${mounts[@]}" localhost/vidnav-lock:latest sh -eu -c '
  /opt/venv/bin/pip install -q "pip-tools>=7.4"
  compile() {
    /opt/venv/bin/pip-compile -q --strip-extras --allow-unsafe --no-emit-index-url \
      --no-emit-find-links --cache-dir /tmp/pip-tools "$@" pyproject.toml
  }
  compile -o requirements/image.txt
  compile --extra cpu -c requirements/torch-cpu.txt -o requirements/image-cpu.txt
'
