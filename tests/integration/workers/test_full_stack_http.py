"""The full stack over HTTP: a uvicorn API process and a Celery worker process on Postgres
and Redis, with the models behind a scripted OpenAI-compatible server.

A client uploads a video, asks a question, follows the job's server-sent events to the end,
and reads the trace: what a dashboard does, with nothing in process but the client.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db.session import session_scope
from app.services.tenants import create_tenant
from tests.integration.workers.conftest import (
    CAPTIONER_MODEL,
    POLICY_MODEL,
    REPO_ROOT,
    Stack,
    make_video,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcess:
    """``uvicorn app.api.app:create_app --factory`` with the stack's environment."""

    def __init__(self, stack: Stack) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = stack.tmp_path / "api.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.api.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=REPO_ROOT, env=stack.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"API exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"API did not come up:\n{self.log()}")
            time.sleep(0.3)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def api(make_stack) -> Iterator[tuple[Stack, ApiProcess, str]]:
    stack = make_stack()
    with session_scope(stack.sessions) as session:
        _tenant, key = create_tenant(session, "full-stack")
    stack.start_worker(concurrency=2)
    process = ApiProcess(stack)
    yield stack, process, key
    process.stop()


def _events(response: httpx.Response) -> Iterator[dict]:
    """Parse a server-sent event stream into dicts with ``event``, ``id`` and ``data``."""
    event: dict = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event[field] = json.loads(value) if field == "data" else value


def test_upload_ask_and_follow_a_job_over_http(api: tuple[Stack, ApiProcess, str],
                                               tmp_path: Path) -> None:
    stack, server, key = api
    headers = {"Authorization": f"Bearer {key}"}
    video_path = make_video(120)
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        with video_path.open("rb") as fh:
            created = client.post("/v1/videos", files={"file": ("clip.mp4", fh, "video/mp4")},
                                  data={"caption_mode": "online"})
        assert created.status_code == 201, created.text
        video_id = created.json()["id"]

        question = {"question": "What is shown?",
                    "options": ["A box", "A cat", "A car", "A tree"]}
        # Posted at once: the question waits for the high-level captions by itself.
        asked = client.post(f"/v1/videos/{video_id}/questions",
                            json=question,
                            headers={"Idempotency-Key": "q-1"})
        assert asked.status_code == 202, asked.text
        job_id = asked.json()["id"]
        again = client.post(f"/v1/videos/{video_id}/questions",
                            json=question,
                            headers={"Idempotency-Key": "q-1"})
        assert again.json()["id"] == job_id

        rounds: list[int] = []
        result = None
        with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=120) as stream:
            assert stream.status_code == 200
            for event in _events(stream):
                if event.get("event") == "round":
                    rounds.append(event["data"]["index"])
                elif event.get("event") == "result":
                    result = event["data"]
                    break
        assert result is not None, server.log() + stack.logs()

        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        trace = client.get(f"/v1/jobs/{job_id}/trace").json()
        trace_rounds = [step["index"] for step in trace["rounds"]]
        # Every round arrived live, in order, and matches what was stored.
        assert rounds == trace_rounds == list(range(len(trace_rounds)))
        assert trace["rounds"][-1]["kind"] == "answer"
        assert job["answer"] == trace["rounds"][-1]["round"]["answer"] == result["answer"]
        kinds = [step["kind"] for step in trace["rounds"]]
        assert "get_caption" in kinds

        video = client.get(f"/v1/videos/{video_id}").json()
        assert video["status"] == "ready"
    # The policy was asked once per round; captions were made by the worker, once each.
    assert stack.calls(POLICY_MODEL) == len(trace_rounds)
    assert stack.calls(CAPTIONER_MODEL) == len(stack.caption_rows(video["sha256"]))
