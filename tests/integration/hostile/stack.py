"""The stack the fault tests drive: the API app on a runtime with Postgres, Redis, ffmpeg and
the in-process task queue (the same service functions the Celery workers run), its three
model roles at the scripted OpenAI-compatible server, and one tenant."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from app.api.app import create_app
from app.bootstrap import build_runtime
from app.bootstrap.inline_queue import InlineQueue
from app.services.runtime import Runtime
from app.settings import Settings
from tests.support.scripted_server import ScriptedServer

POLICY, CAPTIONER, VIDEO_QA = "policy-m", "captioner-m", "videoqa-m"
ROUNDS = 4  # the question's max_rounds: every fault must end within it
TIMEOUT_S = 2.0  # model calls; a busy CI machine must not time out the well-behaved ones
RETRIES = 1  # client retries per call
ATTEMPTS = 2  # task attempts per job (task_max_retries = 1)
API_SECRET = "sk-model-secret-3c9f0a7e"
FINAL = ("succeeded", "no_answer", "failed", "cancelled")



def asked(body: dict[str, Any]) -> str:
    """The question a policy request is about (the first line of its first user part)."""
    for message in body.get("messages", []):
        if message.get("role") == "user" and isinstance(message.get("content"), list):
            return str(message["content"][0].get("text", "")).split("\n", 1)[0]
    return ""


@dataclass
class Rig:
    client: httpx.AsyncClient
    server: ScriptedServer
    runtime: Runtime
    headers: dict[str, str]
    clip: bytes
    video_id: str = ""

    async def ask(self, question: str = "What is shown?", rounds: int = ROUNDS,
                  video_id: str | None = None) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/videos/{video_id or self.video_id}/questions", headers=self.headers,
            json={"question": question, "budgets": {"max_rounds": rounds}})
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    async def fresh_video(self) -> str:
        """Another upload of the clip with a few bytes after it: new content, so none of
        its captions are cached yet."""
        uploaded = await self.upload(self.clip + uuid.uuid4().bytes)
        assert uploaded.status_code == 201, uploaded.text
        video_id: str = uploaded.json()["id"]
        assert (await self.settled(video_id))["status"] == "ready"
        return video_id

    async def upload(self, data: bytes, filename: str = "clip.mp4") -> httpx.Response:
        return await self.client.post("/v1/videos", headers=self.headers,
                                      files={"file": (filename, data, "video/mp4")})

    async def settled(self, video_id: str, timeout: float = 60) -> dict[str, Any]:
        """The video once ingested: ``ready`` or ``failed``."""
        deadline = time.monotonic() + timeout
        while True:
            video = (await self.client.get(f"/v1/videos/{video_id}", headers=self.headers)
                     ).json()
            if video["status"] in ("ready", "failed"):
                return video  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"video still {video['status']}"
            await asyncio.sleep(0.05)

    async def finished(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = (await self.client.get(f"/v1/jobs/{job_id}", headers=self.headers)).json()
            if job["status"] in FINAL:
                return job  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"job still {job['status']} after {timeout} s"
            await asyncio.sleep(0.1)

    async def trace(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/jobs/{job_id}/trace", headers=self.headers)
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    def calls(self, model: str, question: str | None = None) -> int:
        """Chat calls to ``model`` (about ``question`` only, for the policy)."""
        if question is None:
            return self.server.calls(model)
        return sum(1 for r in self.server.chat_requests(model) if asked(r.body) == question)


async def rig(integration_settings: Settings, scripted_server: ScriptedServer, make_tenant,
              small_video: bytes) -> AsyncIterator[Rig]:
    url = scripted_server.base_url
    settings = integration_settings.model_copy(update={
        "profile": "remote", "policy_base_url": url, "captioner_base_url": url,
        "videoqa_base_url": url, "policy_model": POLICY, "captioner_model": CAPTIONER,
        "videoqa_model": VIDEO_QA, "policy_api_key": SecretStr(API_SECRET),
        "model_timeout_s": TIMEOUT_S, "model_retries": RETRIES,
        "task_max_retries": ATTEMPTS - 1, "task_retry_backoff_s": 0.05, "navigate_wait_s": 0.1,
        "caption_mode": "lazy", "transcribe": False, "high_frames": 4, "medium_frames": 4,
        "low_frames": 2, "videoqa_frames": 2, "gc_freeze": False,
    })
    queue = InlineQueue()
    runtime = build_runtime(settings, queue=queue)
    queue.bind(runtime)
    app = create_app(runtime, auth_cache_ttl_s=0.0)
    tenant = make_tenant("faults")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://vidnav.test", timeout=60) as client:
            rig = Rig(client, scripted_server, runtime, tenant.headers, small_video)
            rig.video_id = await rig.fresh_video()
            yield rig
    finally:
        runtime.close()
