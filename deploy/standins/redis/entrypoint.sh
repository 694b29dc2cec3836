#!/bin/sh
# Run redis-server as the redis user owning /data; the rest of the command line is passed on.
set -eu
if [ "${1:-}" != redis-server ]; then exec "$@"; fi
shift
chown -R redis:redis /data
exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no "$@"
