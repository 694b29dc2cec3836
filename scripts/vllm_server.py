"""Start, wait for and stop a CPU vLLM OpenAI server serving the converted SmolLM2.

Stdlib only, so it runs from the main venv (tests) or any shell; vLLM itself runs from
`.venv-vllm` (see `scripts/setup_vllm_cpu.sh`). Tuned for a small shared CPU box.

Shell use:
    python scripts/vllm_server.py start      # prints JSON (url, pid, log) once ready
    python scripts/vllm_server.py stop       # stops the server started above
    python scripts/vllm_server.py serve      # foreground until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
MODEL_DIR = REPO_ROOT / ".cache" / "models" / "smollm2-135m-instruct"
RUN_DIR = REPO_ROOT / ".cache" / "vllm"
STATE_FILE = RUN_DIR / "server.json"
SERVED_MODEL_NAME = "smollm2-135m-instruct"

# Readiness polls go to loopback; an HTTP(S)_PROXY from the environment must not catch them.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class VLLMServerError(RuntimeError):
    """The server could not be started, did not become ready, or is missing prerequisites."""


def missing_prerequisites(
    venv_python: Path = VENV_PYTHON, model_dir: Path = MODEL_DIR
) -> str | None:
    """Say what is missing to run the server, or None when it can be started."""
    if not venv_python.is_file():
        return f"{venv_python} not found: run scripts/setup_vllm_cpu.sh"
    if not (model_dir / "config.json").is_file():
        return f"no converted model in {model_dir}: run scripts/setup_vllm_cpu.sh"
    return None


def free_loopback_port() -> int:
    """Ask the kernel for an unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class VLLMServer:
    """One vLLM OpenAI-compatible server subprocess in its own process group."""

    model_dir: Path = MODEL_DIR
    venv_python: Path = VENV_PYTHON
    port: int | None = None
    served_model_name: str = SERVED_MODEL_NAME
    max_model_len: int = 4096
    max_num_seqs: int = 4
    # GiB for the KV cache: 4096 tokens x 4 seqs of a 135M model fit easily in 1.
    kv_cache_gib: int = 1
    # float32 runs on any x86 CPU; bfloat16 is faster only with AVX512-BF16/AMX.
    dtype: str = "float32"
    # One thread: on a box shared with other work, OpenMP spin-waits of a second thread
    # slowed decoding several-fold in measurements here.
    threads: int = 1
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (ending in /v1)."""
        if self.port is None:
            raise VLLMServerError("server has no port yet: call start()")
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        """The argv that launches the server."""
        if self.port is None:
            raise VLLMServerError("server has no port yet: call start()")
        return [
            str(self.venv_python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            self.dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--max-num-seqs",
            str(self.max_num_seqs),
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        """The child's environment: the parent's plus small-CPU settings for vLLM."""
        env = dict(os.environ)
        env.update(
            {
                "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
                # Pinning threads to cores other processes also use only adds contention.
                "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                "OMP_NUM_THREADS": str(self.threads),
                "VLLM_NO_USAGE_STATS": "1",
                "VLLM_DO_NOT_TRACK": "1",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
                # vidnav's reply grammar bounds the think text to 1,200 characters; xgrammar
                # takes 3 to 7 s to compile that bound on a busy 2-core machine (once per tree
                # width, then cached), and vLLM's default 5 s limit fails the request and
                # takes the engine down with it.
                "VLLM_REGEX_COMPILATION_TIMEOUT_S": "120",
            }
        )
        # A VIRTUAL_ENV of the caller's venv would confuse tools vLLM shells out to.
        env.pop("VIRTUAL_ENV", None)
        return env

    def start(self) -> None:
        """Launch the server subprocess (does not wait for readiness)."""
        if self.process is not None:
            raise VLLMServerError("server already started")
        problem = missing_prerequisites(self.venv_python, self.model_dir)
        if problem:
            raise VLLMServerError(problem)
        if self.port is None:
            self.port = free_loopback_port()
        if self.log_path is None:
            self.log_path = RUN_DIR / f"server-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                cwd=str(REPO_ROOT),
                start_new_session=True,  # own process group: stop() reaps engine children too
            )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_ready(self, timeout: float = 600.0, poll: float = 2.0) -> float:
        """Block until /v1/models lists the model; return seconds waited.

        The first start compiles kernels and warms up, which takes minutes on a small CPU.
        """
        if self.process is None:
            raise VLLMServerError("server not started")
        started = time.monotonic()
        url = f"{self.base_url}/models"
        while True:
            code = self.process.poll()
            if code is not None:
                raise VLLMServerError(
                    f"vLLM exited with code {code} before becoming ready; log {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            try:
                with _NO_PROXY.open(url, timeout=5) as response:
                    payload = json.loads(response.read())
                names = [entry.get("id") for entry in payload.get("data", [])]
                if self.served_model_name in names:
                    return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            if time.monotonic() - started > timeout:
                self.stop()
                raise VLLMServerError(
                    f"vLLM not ready after {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(poll)

    def stop(self, grace: float = 30.0) -> None:
        """Terminate the whole process group, escalating to SIGKILL after `grace` seconds."""
        if self.process is None:
            return
        stop_process_group(self.process.pid, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        self.process = None

    def __enter__(self) -> VLLMServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def process_group_alive(pgid: int) -> bool:
    """True while any process of the group `pgid` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(pgid: int, grace: float = 30.0) -> None:
    """SIGTERM a process group, wait up to `grace` seconds, then SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        # Reap our own child if it is the group leader, so it does not linger as a zombie.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        if not process_group_alive(pgid):
            return
        time.sleep(0.5)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _cmd_start(args: argparse.Namespace) -> int:
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        if process_group_alive(int(state["pid"])):
            print(json.dumps(state))
            return 0
    server = _server_from_args(args)
    server.start()
    assert server.process is not None
    try:
        waited = server.wait_ready(timeout=args.timeout)
    except VLLMServerError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    state = {
        "pid": server.process.pid,
        "port": server.port,
        "base_url": server.base_url,
        "model": server.served_model_name,
        "log": str(server.log_path),
        "ready_seconds": round(waited, 1),
    }
    STATE_FILE.write_text(json.dumps(state))
    print(json.dumps(state))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    if not STATE_FILE.exists():
        print("no server recorded in " + str(STATE_FILE), file=sys.stderr)
        return 1
    state = json.loads(STATE_FILE.read_text())
    stop_process_group(int(state["pid"]), grace=args.grace)
    STATE_FILE.unlink()
    print(json.dumps({"stopped": state["pid"]}))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    server = _server_from_args(args)
    server.start()
    try:
        waited = server.wait_ready(timeout=args.timeout)
        print(json.dumps({"base_url": server.base_url, "ready_seconds": round(waited, 1)}))
        sys.stdout.flush()
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        pass
    except VLLMServerError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        server.stop()
    return 0


def _server_from_args(args: argparse.Namespace) -> VLLMServer:
    return VLLMServer(
        model_dir=args.model_dir,
        port=args.port,
        max_model_len=args.max_model_len,
        dtype=args.dtype,
        kv_cache_gib=args.kv_cache_gib,
        threads=args.threads,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU vLLM server helper for SmolLM2")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, default=None)
        p.add_argument("--model-dir", type=Path, default=MODEL_DIR)
        p.add_argument("--max-model-len", type=int, default=4096)
        p.add_argument("--dtype", default="float32")
        p.add_argument("--kv-cache-gib", type=int, default=1)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--timeout", type=float, default=600.0)
    stop = sub.add_parser("stop")
    stop.add_argument("--grace", type=float, default=30.0)
    args = parser.parse_args(argv)
    handlers = {"start": _cmd_start, "stop": _cmd_stop, "serve": _cmd_serve}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
