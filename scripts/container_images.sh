#!/usr/bin/env bash
# Local images for running vidnav's compose stack where no container registry is reachable:
#   base       localhost/vidnav-base:bookworm, Debian bookworm (minbase) from the apt mirror
#              this machine already uses, imported into podman (stands in for debian:bookworm-slim)
#   standins   localhost/vidnav-standin-postgres:15 and localhost/vidnav-standin-redis:7,
#              built on that base from Debian's packages, behaving like the official images
#              for what docker-compose.yml uses (POSTGRES_* variables, /var/lib/postgresql/data,
#              redis-server on PATH, /data)
# Each image is rebuilt only when its recipe changed (a label holds the recipe's hash).
#   bash scripts/container_images.sh [base|standins|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${VIDNAV_BASE_IMAGE:-localhost/vidnav-base:bookworm}
PG_IMAGE=${VIDNAV_STANDIN_POSTGRES:-localhost/vidnav-standin-postgres:15}
REDIS_IMAGE=${VIDNAV_STANDIN_REDIS:-localhost/vidnav-standin-redis:7}

log() { printf '[images %4ds] %s\n' "$SECONDS" "$*" >&2; }

# Bump when build_base changes what goes into the base image.
BASE_RECIPE=bookworm-minbase-1

image_label() {  # image label -> value, or nothing when the image is absent
  podman image inspect --format "{{ index .Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# The Debian mirror this machine's apt uses (deb822 or one-line sources).
debian_mirror() {
  local uri
  uri=$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/debian.sources | head -n1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hs -E '^deb ' /etc/apt/sources.list | grep -v security \
    | head -n1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
  local hash mirror rootfs
  hash=$BASE_RECIPE
  if [ "$(image_label "$BASE_IMAGE" vidnav.recipe)" = "$hash" ]; then
    log "$BASE_IMAGE is current"
    return
  fi
  mirror=$(debian_mirror)
  rootfs=$(mktemp -d /var/tmp/vidnav-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  log "debootstrap bookworm (minbase) from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  # What debian:bookworm-slim also has: updates and security sources, no docs or man pages.
  cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$rootfs/etc/apt/apt.conf.d/90slim"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  log "importing $BASE_IMAGE"
  tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
    --change "LABEL vidnav.recipe=$hash" - "$BASE_IMAGE" >/dev/null
  log "$BASE_IMAGE built"
}

build_standin() {  # image folder
  local image=$1 dir=$2 hash
  # The recipe is the folder and the base image it starts from.
  hash=$( (cat "$dir"/*; podman image inspect --format '{{.Id}}' "$BASE_IMAGE") | sha256sum \
    | cut -c1-16)
  if [ "$(image_label "$image" vidnav.recipe)" = "$hash" ]; then
    log "$image is current"
    return
  fi
  log "building $image"
  podman build -q --format docker --build-arg "BASE=$BASE_IMAGE" \
    --label "vidnav.recipe=$hash" -t "$image" "$dir" >/dev/null
  log "$image built"
}

what=${1:-all}
case "$what" in
  base) build_base ;;
  standins)
    build_standin "$PG_IMAGE" deploy/standins/postgres
    build_standin "$REDIS_IMAGE" deploy/standins/redis ;;
  all)
    build_base
    build_standin "$PG_IMAGE" deploy/standins/postgres
    build_standin "$REDIS_IMAGE" deploy/standins/redis ;;
  *) echo "usage: $0 [base|standins|all]" >&2; exit 2 ;;
esac
