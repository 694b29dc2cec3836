"""Pytest fixtures shared across tiers: the scripted model server, in a thread or a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.scripted_server import ScriptedServer

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A scripted OpenAI-compatible server in a background thread, fresh for each test."""
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()


class ScriptedServerProcess:
    """A scripted server running as its own process (for worker processes to reach it)."""

    def __init__(self, *args: str) -> None:
        # stderr goes to a file: a pipe nobody reads could fill up and stall the server.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.scripted_server", "--port", "0", *args],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("scripted-server listening on "):
            self.process.kill()
            self.process.wait(timeout=5)
            err = self.stderr()
            self.stop()
            raise RuntimeError(f"scripted server did not start: {line!r} {err}")
        self.url = line.removeprefix("scripted-server listening on ")
        self.base_url = f"{self.url}/v1"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=5) as response:
            return dict(json.load(response))

    def control(self, action: str, **params: Any) -> None:
        """Script the running server, e.g. ``control("fail_always", model="m")``."""
        request = urllib.request.Request(
            f"{self.url}/_control", data=json.dumps({"action": action, **params}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def stderr(self) -> str:
        """What the server process wrote to stderr so far (for failure messages)."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()


@pytest.fixture
def scripted_server_process() -> Iterator[ScriptedServerProcess]:
    """A scripted server in a subprocess with the deterministic role behaviours."""
    server = ScriptedServerProcess()
    try:
        yield server
    finally:
        server.stop()
