#!/bin/sh
# The image's health check, for whichever vidnav command the container runs:
#   vidnav serve ...   GET /healthz on the served port (default 8000) answers 200
#   vidnav worker ...  the Celery worker of this container answers a ping over the broker
set -eu
cmd=$(tr '\0' ' ' < /proc/1/cmdline)
case "$cmd" in
  *"vidnav worker"*|*"celery"*" worker"*)
    exec celery -A workers.celery_app inspect ping --destination "celery@$(hostname)" \
      --timeout 10 >/dev/null ;;
  *"vidnav serve"*)
    port=$(printf '%s\n' "$cmd" | sed -n 's/.*--port[ =]\([0-9][0-9]*\).*/\1/p')
    exec python -c 'import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=10) as r:
    sys.exit(0 if r.status == 200 else 1)' "${port:-8000}" ;;
  *) echo "no health check for: $cmd" >&2; exit 1 ;;
esac
