"""The embedded default serving the REST API with the CPU profile, end to end over HTTP.

``vidnav serve`` runs as its own process on loopback (SQLite, tasks in process, CPU
models); the test uploads the real narrated clip, asks about what is said in it, and
checks the answer and that the trace visits the moment it is said (about 102 s in:
"It only takes a minute and it's totally free").
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.fetch_videos import fetch_video
from tests.e2e.cpu_support import REPO, overlaps, said_at, vidnav, vidnav_env
from tests.support.scripted_server import ScriptedServer

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(base URL, API key, data dir) of a ``vidnav serve`` process on the embedded default."""
    data_dir = tmp_path_factory.mktemp("vidnav-serve")
    created = vidnav(data_dir, "tenants", "create", "e2e")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    port = free_port()
    log = (data_dir / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level",
         "warning"], cwd=REPO, env=vidnav_env(data_dir), stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (data_dir / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "vidnav serve did not come up"
            time.sleep(0.5)
        yield base, key, data_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def wait_for(client: httpx.Client, url: str, done: tuple[str, ...], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(url).raise_for_status().json()
        if body["status"] in done:
            return body
        assert time.monotonic() < deadline, f"still {body['status']} after {timeout} s: {body}"
        time.sleep(1.0)


def test_serve_answers_a_question_about_what_is_said(server: tuple[str, str, Path]) -> None:
    base, key, data_dir = server
    narrated = fetch_video("narrated")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                      timeout=60) as client:
        with narrated.open("rb") as fh:
            uploaded = client.post("/v1/videos", files={"file": (narrated.name, fh, "video/mp4")})
        assert uploaded.status_code == 201, uploaded.text
        video = uploaded.json()
        assert video["caption_mode"] == "eager"  # the CPU profile's default
        ready = wait_for(client, f"/v1/videos/{video['id']}", ("ready", "failed"), 900)
        assert ready["status"] == "ready", ready
        asked = client.post(f"/v1/videos/{video['id']}/questions", json={
            "question": "How long does it take to get a license?",
            "options": ["About an hour", "A week", "A minute", "A day"],
        })
        assert asked.status_code == 202, asked.text
        job = wait_for(client, f"/v1/jobs/{asked.json()['id']}",
                       ("succeeded", "no_answer", "failed", "cancelled"), 300)
        assert job["status"] == "succeeded", job
        assert job["answer"] == "C"
        trace = client.get(f"/v1/jobs/{job['id']}/trace").raise_for_status().json()
    span = said_at(data_dir, "only takes a minute")
    rounds = trace["rounds"]
    assert rounds[-1]["kind"] == "answer"
    leaves = [r for r in rounds if r["kind"] == "video_qa"]
    assert leaves and any(overlaps(r["start_s"], r["end_s"], span) for r in leaves)
    assert "minute" in leaves[0]["round"]["observation"]
    # The policy explains its choice with retrieval scores in the think part.
    assert "Option support" in rounds[-1]["round"]["think"]


def test_a_remote_captioner_beside_the_cpu_policy_and_video_qa(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """Per-role mixing: captions from an OpenAI-compatible server (the scripted one,
    which writes prose with the subtitles it is given), the CPU navigator and video_qa."""
    from app.bootstrap import open_runtime
    from app.models.cpu.policy import RetrievalPolicy
    from app.models.cpu.video_qa import CPUFrameQA
    from app.models.openai_vision import OpenAICaptioner
    from app.services import local_questions as local
    from app.settings import Settings

    settings = Settings(data_dir=tmp_path, captioner_base_url=scripted_server.base_url,
                        captioner_model="scripted-vlm", database_url=None, redis_url=None,
                        profile=None, policy_base_url=None, videoqa_base_url=None,
                        caption_mode="online", transcribe=None)
    assert settings.should_transcribe  # the CPU video_qa reads speech from the transcript
    narrated = fetch_video("narrated")
    with open_runtime(settings) as runtime:
        assert isinstance(runtime.captioner, OpenAICaptioner)
        assert isinstance(runtime.policy, RetrievalPolicy)
        assert isinstance(runtime.frame_qa, CPUFrameQA)
        result = local.ask_local(runtime, narrated, "How long does it take to get a license?",
                                 ["About an hour", "A week", "A minute", "A day"], None)
    assert result.status == "succeeded" and result.answer == "C", result.trace
    assert scripted_server.calls(role="captioner") >= 6  # 4 high ahead, then on demand
    assert scripted_server.calls(role="video_qa") == 0 and scripted_server.calls(role="policy") == 0
    span = said_at(tmp_path, "only takes a minute")
    looked = [s for s in result.trace if s["kind"] in ("get_caption", "video_qa")]
    assert any(overlaps(s["start"], s["end"], span) for s in looked if len(s["node"]) == 3)
