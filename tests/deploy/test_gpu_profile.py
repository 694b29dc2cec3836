"""The `gpu` compose profile cannot start here (no GPU), so it is checked statically: the
config podman-compose renders from docker-compose.yml and .env.example's gpu lines is
complete, every vidnav command parses, every variable is a real setting, the vLLM servers'
flags and variables are ones vLLM accepts, and the health checks point at real endpoints."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.cli import app as cli_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
VIDNAV_SERVICES = ("migrate", "api", "worker-ingest", "worker-caption", "worker-navigate")
VLLM_SERVICES = ("vllm-policy", "vllm-vlm")
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def render(tmp_path: Path, profile: str) -> dict[str, Any]:
    """`podman-compose --profile PROFILE config` with .env.example's lines for that profile."""
    compose = Path(sys.executable).with_name("podman-compose")
    if not compose.exists():
        pytest.fail("podman-compose is not installed (the dev extras)")
    example = (ROOT / ".env.example").read_text()
    env_file = tmp_path / f"{profile}.env"
    env_file.write_text(example.replace(f"#[{profile}] ", ""))
    # Only the env file decides: none of the caller's VIDNAV_* variables may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDNAV_", "VLLM_"))}
    out = subprocess.run(
        [str(compose), "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(env_file),
         "--profile", profile, "config"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
    return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return render(tmp_path_factory.mktemp("gpu"), "gpu")


def env_of(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_gpu_profile_has_every_service_and_no_cpu_vllm(gpu: dict[str, Any]) -> None:
    services = gpu["services"]
    assert set(services) == {"postgres", "redis", *VIDNAV_SERVICES, *VLLM_SERVICES}
    for name in VIDNAV_SERVICES:
        assert services[name]["image"] == "vidnav:latest"
        assert "/data" in " ".join(services[name]["volumes"])
    assert services["postgres"]["image"].startswith("docker.io/library/postgres:15")
    assert services["redis"]["image"].startswith("docker.io/library/redis:7")
    assert "--appendonly" in services["redis"]["command"]


def test_the_workers_are_pointed_at_the_vllm_servers(gpu: dict[str, Any]) -> None:
    services = gpu["services"]
    for name in VIDNAV_SERVICES:
        env = env_of(services[name])
        settings = Settings(**{k.removeprefix("VIDNAV_").lower(): v for k, v in env.items()
                               if k.startswith("VIDNAV_") and v is not None})
        assert settings.effective_profile == "remote"
        assert settings.cpu_roles == frozenset()
        urls = {settings.policy_base_url, settings.captioner_base_url, settings.videoqa_base_url}
        assert urls == {"http://vllm-policy:8000/v1", "http://vllm-vlm:8000/v1"}
    for url, server in (("http://vllm-policy:8000/v1", "vllm-policy"),
                        ("http://vllm-vlm:8000/v1", "vllm-vlm")):
        command = services[server]["command"]
        assert url == f"http://{server}:{option(command, '--port')}/v1"
    # The served names are the ones vidnav asks for by default.
    defaults = Settings()
    assert option(services["vllm-policy"]["command"], "--served-model-name") == \
        defaults.policy_model
    assert option(services["vllm-vlm"]["command"], "--served-model-name") == \
        defaults.captioner_model == defaults.videoqa_model


def test_every_vidnav_variable_is_a_real_setting(gpu: dict[str, Any]) -> None:
    fields = {f"VIDNAV_{name.upper()}" for name in Settings.model_fields}
    compose_text = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"\bVIDNAV_[A-Z0-9_]+", compose_text + example))
    in_env = {k for s in gpu["services"].values() for k in env_of(s) if k.startswith("VIDNAV_")}
    # Compose-level knobs (image names, ports, concurrency) are read by the compose file
    # itself; every other VIDNAV_ variable must be one vidnav reads.
    compose_only = {name for name in named if f"${{{name}" in compose_text and name not in in_env}
    assert in_env <= fields, sorted(in_env - fields)
    assert named - compose_only <= fields, sorted(named - compose_only - fields)
    # .env.example documents every variable the compose file interpolates.
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    assert interpolated <= set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", example)), \
        sorted(interpolated - set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", example)))


def test_every_vidnav_command_parses(gpu: dict[str, Any]) -> None:
    root = typer.main.get_command(cli_app)
    for name in VIDNAV_SERVICES:
        argv = gpu["services"][name]["command"]
        assert argv[0] == "vidnav"
        ctx = root.make_context("vidnav", list(argv[1:]), resilient_parsing=False)
        # Walk down the groups the way click does when it runs the command.
        while hasattr(ctx.command, "resolve_command"):  # a group (typer vendors click)
            protected = getattr(ctx, "_protected_args", None)
            if protected is None:
                protected = ctx.protected_args
            pending = [*protected, *ctx.args]
            sub_name, sub, rest = ctx.command.resolve_command(ctx, pending)
            assert sub is not None, argv
            ctx = sub.make_context(sub_name, rest, parent=ctx)
        assert not ctx.args, f"{argv}: unparsed {ctx.args}"


def test_the_gpu_reservations_match_the_tensor_parallel_size(gpu: dict[str, Any]) -> None:
    for name in VLLM_SERVICES:
        service = gpu["services"][name]
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert int(device["count"]) == int(option(service["command"], "--tensor-parallel-size"))
        assert service["entrypoint"] == ["vllm", "serve"]
        assert any(v.endswith(":/root/.cache/huggingface") for v in service["volumes"])
    # The authors' policy settings: a 32k context.
    assert option(gpu["services"]["vllm-policy"]["command"], "--max-model-len") == "32768"


def test_health_checks_point_at_real_endpoints(gpu: dict[str, Any]) -> None:
    services = gpu["services"]
    script = (ROOT / "deploy" / "healthcheck.sh").read_text()
    assert "/healthz" in script
    # The endpoint the script calls answers 200 from a bare app (no database behind it).
    assert TestClient(create_app()).get("/healthz").status_code == 200
    for name in ("api", "worker-ingest", "worker-caption", "worker-navigate"):
        assert services[name]["healthcheck"]["test"] == ["CMD", "vidnav-healthcheck"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in VLLM_SERVICES:
        test = " ".join(services[name]["healthcheck"]["test"])
        port = option(services[name]["command"], "--port")
        assert f"http://127.0.0.1:{port}/health'" in test


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        pytest.skip("no .venv-vllm (scripts/setup_vllm_cpu.sh; VIDNAV_SKIP_VLLM was set)")
    return VLLM_PYTHON


CHECK_VLLM = r"""
import json, pathlib, sys
import vllm, vllm.envs
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
services = json.loads(sys.argv[1])
parser = make_arg_parser(FlexibleArgumentParser())
root = pathlib.Path(vllm.__file__).parent / "entrypoints"
report = {"health_route": any('get("/health"' in p.read_text() for p in root.rglob("*.py"))}
for name, svc in services.items():
    model, *flags = svc["command"]
    args = parser.parse_args(["--model", model, *flags])  # exits 2 on an unknown flag
    report[name] = {
        "served": args.served_model_name, "max_model_len": args.max_model_len,
        "port": args.port, "unknown_env": sorted(
            k for k in svc["env"] if k.startswith("VLLM_")
            and k not in vllm.envs.environment_variables),
    }
print(json.dumps(report))
"""


def test_vllm_accepts_the_servers_flags_and_variables(gpu: dict[str, Any],
                                                      vllm_python: Path) -> None:
    services = {name: {"command": gpu["services"][name]["command"],
                       "env": env_of(gpu["services"][name])} for name in VLLM_SERVICES}
    out = subprocess.run([str(vllm_python), "-c", CHECK_VLLM, json.dumps(services)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["health_route"]
    assert report["vllm-policy"] == {"served": ["LongVideo-R1-Qwen3"], "max_model_len": 32768,
                                     "port": 8000, "unknown_env": []}
    assert report["vllm-vlm"]["served"] == ["Qwen3-VL-32B-Instruct"]
    assert report["vllm-vlm"]["unknown_env"] == []


def test_the_image_holds_every_command_the_compose_file_runs(gpu: dict[str, Any]) -> None:
    image = "localhost/vidnav:latest"
    if shutil.which("podman") is None or subprocess.run(
            ["podman", "image", "exists", image]).returncode != 0:
        pytest.skip(f"{image} is not built here (tests/deploy/test_compose_stack.py builds it)")
    programs = {gpu["services"][name]["command"][0] for name in VIDNAV_SERVICES}
    programs |= {"vidnav-healthcheck", "tini", "ffmpeg", "ffprobe", "celery"}
    script = "; ".join(f"command -v {p} >/dev/null || echo missing {p}" for p in sorted(programs))
    script += "; cc --version >/dev/null 2>&1 && echo compiler present; id -u"
    out = subprocess.run(["podman", "run", "--rm", "--entrypoint", "sh", image, "-c", script],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert [line for line in lines if line.startswith("missing")] == []
    assert "compiler present" not in lines
    assert lines[-2] != "0", "the image runs as root"
