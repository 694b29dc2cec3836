#!/usr/bin/env bash
# Start the compose stack for real and use it as a client would (issue 11):
#   1. build the images: a bookworm base and Postgres/Redis stand-ins (no registry is reachable
#      here; scripts/container_images.sh), vidnav's image and the CPU vLLM image;
#   2. `up` the cpu stack; upload the narrated clip over HTTP, ask, poll the job to
#      `succeeded`, read the trace;
#   3. `up` the cpu-vllm stack (same volumes); ask; kill the navigate worker's container while
#      the job runs, start it again: the job still finishes (its task is redelivered), and
#      the policy's replies came from vLLM;
#   4. remove every container, network and volume it created (also on failure).
# Prints the timings of the builds, each start and the first answer. Needs root, podman and
# podman-compose (scripts/setup_env.sh --dev installs them). Images are kept between runs:
# a second run reuses the base, the stand-ins and every unchanged layer.
# Set VIDNAV_COMPOSE_SKIP_VLLM=1 to stop after the cpu stack.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROJECT=${VIDNAV_COMPOSE_PROJECT:-vidnav-compose-test}
PY=${PYTHON:-$ROOT/.venv/bin/python}
COMPOSE_BIN=${PODMAN_COMPOSE:-$(command -v podman-compose || echo "$ROOT/.venv/bin/podman-compose")}
QUESTION="What does the narrator say people can do together?"
T0=$SECONDS
declare -a TIMINGS=()

log() { printf '[compose_test %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
timing() { TIMINGS+=("$(printf '%-34s %6ss' "$1" "$2")"); log "TIMING $1: ${2}s"; }
die() { log "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || die "needs root (podman as root, see scripts/setup_podman.sh)"
command -v podman >/dev/null || die "podman is not installed: bash scripts/setup_podman.sh"
[ -x "$COMPOSE_BIN" ] || die "podman-compose is not installed (pip install podman-compose)"

work=$(mktemp -d /tmp/vidnav-compose-test.XXXXXX)
ENV_FILE=$work/stack.env
compose() { "$COMPOSE_BIN" -p "$PROJECT" --env-file "$ENV_FILE" "$@"; }
cname() {  # the container of a service
  podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n1
}

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] && [ -f "$ENV_FILE" ]; then
    log "logs of the failed run (last lines per container):"
    for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
                 --format '{{.Names}}'); do
      echo "----- $c" >&2
      podman logs --tail 40 "$c" 2>&1 | tail -n 40 >&2
    done
  fi
  if [ -f "$ENV_FILE" ]; then
    compose --profile cpu-vllm down -v >/dev/null 2>&1
  fi
  remove_ours
  rm -rf "$work"
  exit "$rc"
}
remove_ours() {  # every container, volume, network and pod of this project, by label and name
  local -
  set +e +o pipefail  # each step may find nothing to remove
  podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f \
    >/dev/null 2>&1
  podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" \
    | xargs -r podman volume rm -f >/dev/null 2>&1
  podman volume ls -q | grep "^${PROJECT}_" | xargs -r podman volume rm -f >/dev/null 2>&1
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
  podman pod rm -f "pod_${PROJECT}" >/dev/null 2>&1
  return 0
}
trap cleanup EXIT
trap 'exit 143' INT TERM
# A run killed before its clean-up (SIGKILL, a lost machine) leaves its volumes: a Postgres
# volume initialised with that run's password refuses this run's ("password authentication
# failed"). Start from nothing.
remove_ours

# --- 1. images -------------------------------------------------------------------------------
start=$(now)
bash scripts/container_images.sh all
timing "build: base + stand-ins" "$(since "$start")"

# What pip needs inside a build here, mounted for the build only: the CA bundle (a build
# secret) and the find-links folder holding the torch CPU wheel.
build_args=(--format docker --build-arg BASE=localhost/vidnav-base:bookworm
            --build-arg PIP_EXTRA_INDEX_URL=)
ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[ -s "$ca" ] && build_args+=(--secret "id=pip_ca,src=$ca")
links=${PIP_FIND_LINKS:-$(pip config get global.find-links 2>/dev/null || true)}
if [ -n "$links" ] && [ -d "$links" ]; then
  build_args+=(-v "$links:$links:ro" --build-arg "PIP_FIND_LINKS=$links")
fi

start=$(now)
podman build -q "${build_args[@]}" -t localhost/vidnav:latest . >/dev/null
timing "build: vidnav image" "$(since "$start")"
if [ -z "${VIDNAV_COMPOSE_SKIP_VLLM:-}" ]; then
  start=$(now)
  podman build -q "${build_args[@]}" -t localhost/vidnav-vllm-cpu:latest deploy/vllm-cpu \
    >/dev/null
  timing "build: vllm-cpu image" "$(since "$start")"
fi
for image in localhost/vidnav:latest localhost/vidnav-vllm-cpu:latest \
             localhost/vidnav-standin-postgres:15 localhost/vidnav-standin-redis:7; do
  podman image exists "$image" || continue
  log "image $image: $(podman image inspect --format '{{.Size}}' "$image" \
    | awk '{ printf "%.0f MB", $1 / 1e6 }')"
done

# --- the stack's .env: .env.example with a password, a profile's lines and the stand-ins ------
video=$("$PY" scripts/fetch_videos.py narrated)
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$port"
write_env() {  # profile: cpu or cpu-vllm
  sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')/" \
      -e "s/^#\[$1\] //" .env.example > "$ENV_FILE"
  cat >> "$ENV_FILE" <<ENV
VIDNAV_POSTGRES_IMAGE=localhost/vidnav-standin-postgres:15
VIDNAV_REDIS_IMAGE=localhost/vidnav-standin-redis:7
VIDNAV_API_HOST=127.0.0.1
VIDNAV_API_PORT=$port
VIDNAV_MODELS_DIR=$ROOT/.cache/models
VIDNAV_CELERY_VISIBILITY_TIMEOUT_S=20
ENV
}

wait_healthy() {  # run the health checks podman-compose does not run, until all pass
  local deadline=$((SECONDS + $1)) c pending
  shift
  while :; do
    pending=""
    for svc in "$@"; do
      c=$(cname "$svc")
      [ -n "$c" ] || die "no container for service $svc"
      # A crash at start shows as a restart (restart: unless-stopped): fail now, not at the end.
      [ "$(podman inspect --format '{{.State.Status}} {{.RestartCount}}' "$c")" = "running 0" ] \
        || die "$svc is not running as started: $(podman inspect --format \
             '{{.State.Status}}, {{.RestartCount}} restarts' "$c")"
      podman healthcheck run "$c" >/dev/null 2>&1 || pending="$pending $svc"
    done
    [ -z "$pending" ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || die "not healthy in time:$pending"
    sleep 3
  done
}

# --- 2. the cpu stack --------------------------------------------------------------------------
write_env cpu
# The key is made by this run's first stack, so the password must survive the second write.
password=$(sed -n 's/^POSTGRES_PASSWORD=//p' "$ENV_FILE")
log "cpu stack: up"
start=$(now)
compose up -d >"$work/up-cpu.log" 2>&1 || { cat "$work/up-cpu.log" >&2; die "compose up failed"; }
timing "start: cpu stack (compose up)" "$(since "$start")"
ready=$("$PY" scripts/compose_client.py ready "$URL" --timeout 300)
timing "start: cpu stack API ready" "$(since "$start")"
log "readyz: $ready"
wait_healthy 300 postgres redis api worker-ingest worker-caption worker-navigate
timing "start: cpu stack all healthy" "$(since "$start")"
[ "$(podman inspect --format '{{.State.ExitCode}}' "$(cname migrate)")" = 0 ] \
  || die "the migrate job failed"

key=$(podman exec "$(cname api)" vidnav tenants create "compose-test-$RANDOM" 2>/dev/null)
[ -n "$key" ] || die "vidnav tenants create printed no key"
asked=$(now)
video_id=$("$PY" scripts/compose_client.py upload "$URL" "$key" "$video")
job=$("$PY" scripts/compose_client.py ask "$URL" "$key" "$video_id" "$QUESTION")
result=$("$PY" scripts/compose_client.py finish "$URL" "$key" "$job" --expect succeeded \
  --timeout 900)
timing "first answer: upload to succeeded" "$(since "$asked")"
log "cpu stack answer: $result"

if [ -z "${VIDNAV_COMPOSE_SKIP_VLLM:-}" ]; then
  # --- 3. the cpu-vllm stack: the policy on vLLM, and a worker killed mid-job ------------------
  [ -f .cache/models/smollm2-135m-instruct/config.json ] \
    || die "no converted SmolLM2 in .cache/models: run scripts/setup_vllm_cpu.sh"
  # vLLM runs as a non-root user in its container: the mounted model must be world-readable
  # (scripts/convert_smollm2.py makes it so; setup_vllm_cpu.sh repairs an older conversion).
  [ -z "$(find .cache/models/smollm2-135m-instruct ! -perm -o=r -print -quit)" ] \
    || die "the converted SmolLM2 is not readable by every user: run scripts/setup_vllm_cpu.sh"
  log "cpu stack: down (volumes kept); cpu-vllm stack: up"
  compose down >/dev/null 2>&1
  write_env cpu-vllm
  sed -i "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$password/" "$ENV_FILE"
  start=$(now)
  compose --profile cpu-vllm up -d >"$work/up-vllm.log" 2>&1 \
    || { cat "$work/up-vllm.log" >&2; die "compose up failed"; }
  timing "start: cpu-vllm stack (compose up)" "$(since "$start")"
  wait_healthy 900 vllm-cpu
  timing "start: vllm-cpu healthy" "$(since "$start")"
  ready=$("$PY" scripts/compose_client.py ready "$URL" --timeout 300)
  timing "start: cpu-vllm stack API ready" "$(since "$start")"
  log "readyz: $ready"
  echo "$ready" | grep -q '"policy": {"ok": true' || die "readyz does not see the vLLM policy"

  asked=$(now)
  job=$("$PY" scripts/compose_client.py ask "$URL" "$key" "$video_id" "$QUESTION" \
    --max-rounds 3)
  running=$("$PY" scripts/compose_client.py running "$URL" "$key" "$job" --rounds 1 \
    --timeout 900)
  log "job running: $running; killing the navigate worker"
  navigate=$(cname worker-navigate)
  podman kill "$navigate" >/dev/null
  podman start "$navigate" >/dev/null
  result=$("$PY" scripts/compose_client.py finish "$URL" "$key" "$job" \
    --expect succeeded,no_answer --timeout 1200)
  timing "vLLM policy: question to finished" "$(since "$asked")"
  log "cpu-vllm stack result: $result"
  attempts=$(podman exec "$(cname postgres)" psql -U vidnav -d vidnav -tAc \
    "SELECT attempts FROM jobs WHERE id = '$job'")
  log "job attempts: $attempts"
  [ "${attempts:-0}" -ge 2 ] || die "the job was not restarted after the kill (attempts=$attempts)"
  served=$(podman exec "$(cname vllm-cpu)" python -c "
import urllib.request
text = urllib.request.urlopen('http://127.0.0.1:8000/metrics', timeout=10).read().decode()
print(int(sum(float(line.split()[-1]) for line in text.splitlines()
              if line.startswith('vllm:request_success_total'))))")
  log "vLLM served $served chat completions"
  [ "$served" -ge 2 ] || die "the policy's replies did not come from vLLM"
fi

# --- 4. down --------------------------------------------------------------------------------------
start=$(now)
compose --profile cpu-vllm down -v >/dev/null 2>&1
left=$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT"; \
       podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT")
[ -z "$left" ] || die "left behind: $left"
timing "stop: down -v" "$(since "$start")"

log "summary:"
printf '  %s\n' "${TIMINGS[@]}" >&2
log "PASS in $((SECONDS - T0)) s"
