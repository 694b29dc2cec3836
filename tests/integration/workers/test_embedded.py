"""The embedded default: SQLite, the in-process queue, memory cache and in-process events,
running the same service functions as the Celery workers."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.bootstrap import build_runtime
from app.bootstrap.inline_queue import InlineQueue
from app.db import migrate
from app.db.models import CaptionNode, Job, TraceStep, Video
from app.services.runtime import Runtime
from app.settings import Settings
from tests.integration.workers.conftest import make_video
from tests.support.factories import add_uploaded_video
from tests.support.scripted_server import ScriptedServer


@pytest.fixture
def embedded(tmp_path: Path, scripted_server: ScriptedServer) -> Iterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path / "data", profile="remote", transcribe=False,
        policy_base_url=scripted_server.base_url, captioner_base_url=scripted_server.base_url,
        videoqa_base_url=scripted_server.base_url, model_retries=0,
        task_max_retries=1, task_retry_backoff_s=0.1, navigate_wait_s=0.2,
        high_frames=8, medium_frames=8, low_frames=4, videoqa_frames=4,
    )
    assert settings.embedded
    migrate.upgrade(settings)
    runtime = build_runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


def _add_video(runtime: Runtime, path: Path, mode: str) -> uuid.UUID:
    return add_uploaded_video(runtime.session_factory, path, mode, tenant_name="embedded")


def _wait(runtime: Runtime, model: type[Any], row_id: uuid.UUID, statuses: tuple[str, ...],
          timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with runtime.session_factory() as session:
            row = session.get(model, row_id)
            if row is not None and row.status in statuses:
                return row
        if time.monotonic() > deadline:
            pytest.fail(f"{model.__name__} {row_id} still {row and row.status}")
        time.sleep(0.05)


def test_embedded_runtime_captions_and_answers_in_process(
    embedded: Runtime, scripted_server: ScriptedServer
) -> None:
    assert isinstance(embedded.queue, InlineQueue)
    assert embedded.redis is None
    video_id = _add_video(embedded, make_video(120), "online")
    embedded.queue.enqueue_ingest(video_id)
    # Asked before the video is ready: the in-process queue waits for it.
    with embedded.session_factory() as session:
        tenant_id = session.scalar(select(Video.tenant_id).where(Video.id == video_id))
        jobs = [Job(tenant_id=tenant_id, video_id=video_id, question=f"What is at {i}0 s?")
                for i in range(3)]
        session.add_all(jobs)
        session.commit()
        job_ids = [j.id for j in jobs]
    events: list[dict[str, Any]] = []
    subscribed = threading.Event()

    async def collect() -> None:
        async with embedded.events.subscribe(job_ids[0]) as stream:
            subscribed.set()
            async for event in stream:
                events.append(event)
                if event["type"] == "result":
                    return

    collecting = embedded.background.submit(collect())
    assert subscribed.wait(5)
    for job_id in job_ids:
        embedded.queue.enqueue_navigate(job_id)

    finished = ("succeeded", "failed", "no_answer")
    done = [_wait(embedded, Job, job_id, finished) for job_id in job_ids]
    collecting.result(timeout=10)

    assert [j.status for j in done] == ["succeeded"] * 3, [j.error for j in done]
    video = _wait(embedded, Video, video_id, ("ready",))
    assert video.captions_done == video.captions_total == 4
    with embedded.session_factory() as session:
        rows = session.scalars(select(CaptionNode)).all()
        steps = session.scalars(select(TraceStep.round_index)
                                .where(TraceStep.job_id == job_ids[0])
                                .order_by(TraceStep.round_index)).all()
    keys = [r.node_key for r in rows]
    assert len(keys) == len(set(keys))
    assert scripted_server.calls(role="captioner") == len(rows)
    assert collections.Counter(r.level for r in rows)[1] == 4
    assert list(steps) == [0, 1, 2, 3]
    assert [e["round"]["index"] for e in events if e["type"] == "round"] == [0, 1, 2, 3]
    assert events[-1]["type"] == "result" and events[-1]["status"] == "succeeded"


def test_embedded_failing_captioner_fails_the_video(
    embedded: Runtime, scripted_server: ScriptedServer
) -> None:
    scripted_server.fail_always()
    video_id = _add_video(embedded, make_video(120), "online")
    embedded.queue.enqueue_ingest(video_id)

    video = _wait(embedded, Video, video_id, ("failed",))

    assert video.error_code == "model_unavailable"
    assert scripted_server.base_url in video.error
    # Two task attempts (task_max_retries=1), one call per node in flight each.
    assert 0 < scripted_server.calls(role="captioner") <= 2 * 4
