#!/usr/bin/env bash
# The main job on the embedded default (no Postgres, Redis or GPU): set up, fetch a real
# video, and answer a question about it with the CPU model profile, printing the trace.
#   bash scripts/quickstart.sh                      # the narrated clip, a default question
#   bash scripts/quickstart.sh VIDEO "question" [--option TEXT ...] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup_env.sh
if [ "$#" -ge 2 ]; then
  exec .venv/bin/vidnav ask "$@"
fi
video=$(.venv/bin/python scripts/fetch_videos.py narrated)
exec .venv/bin/vidnav ask "$video" "${QUESTION:-What does the narrator say people can do together?}"
