"""Questions answered by real Celery workers against a scripted policy, captioner and
video_qa: caption reuse across questions, crash recovery, outages, cancellation, events."""

from __future__ import annotations

import collections
import threading
import uuid
from typing import Any

from sqlalchemy import select, update

from app.db.models import CaptionNode, Job
from tests.integration.workers.conftest import (
    CAPTIONER_MODEL,
    POLICY_MODEL,
    VIDEOQA_MODEL,
    Stack,
    make_video,
    wait_for,
)


def _ready_video(stack: Stack, mode: str = "online") -> uuid.UUID:
    video_id = stack.upload(make_video(120), mode)
    stack.wait_video(video_id)
    return video_id


def test_ten_questions_generate_each_caption_once(make_stack) -> None:
    stack = make_stack()
    stack.start_worker(concurrency=4)
    video_id = _ready_video(stack)
    sha = stack.video(video_id).sha256
    assert stack.calls(CAPTIONER_MODEL) == 4  # the high level, captioned ahead

    questions = [f"What happens around second {10 * i}?" for i in range(9)]
    questions.append("Which shape moves?\nA. circle\nB. square")
    job_ids = [stack.ask(video_id, q) for q in questions]
    jobs = [stack.wait_job(job_id, timeout=180) for job_id in job_ids]

    assert [j.status for j in jobs] == ["succeeded"] * 10, stack.logs()
    assert all(j.answer for j in jobs)
    rows = stack.caption_rows(sha)
    keys = [r.node_key for r in rows]
    assert len(keys) == len(set(keys))
    by_level = collections.Counter(r.level for r in rows)
    assert by_level[1] == 4 and by_level[2] >= 1 and by_level[3] >= 1
    # Every caption any question needed was generated exactly once.
    assert stack.calls(CAPTIONER_MODEL) == len(rows)
    # The scripted policy: get_caption medium, get_caption low, video_qa, answer.
    assert stack.calls(POLICY_MODEL) == 4 * 10
    assert stack.calls(VIDEOQA_MODEL) == 10
    for job in jobs:
        assert stack.trace_rounds(job.id) == [0, 1, 2, 3]
        assert job.progress_round == 4
        assert job.summary is not None and job.summary["outcome"] == "answered"
        assert job.summary["captions_cached"] >= 4
    generated = sum(j.summary["captions_generated"] for j in jobs)
    assert generated == len(rows) - 4


def test_sigkilled_navigation_is_finished_by_a_restarted_worker(make_stack) -> None:
    stack = make_stack(server_args=("--latency-ms", "700"))
    stack.start_worker(queues="ingest,caption", concurrency=1, name="captions")
    video_id = _ready_video(stack, mode="lazy")
    navigator = stack.start_worker(queues="navigate", concurrency=1, name="doomed")
    job_id = stack.ask(video_id, "What happens around second 50?")

    wait_for(lambda: stack.job(job_id).progress_round >= 1, timeout=60,
             what="the navigation to be under way")
    navigator.kill()
    job = stack.job(job_id)
    assert job.status == "running" and job.progress_round < 4

    stack.start_worker(queues="navigate", concurrency=1, name="successor")
    job = stack.wait_job(job_id, timeout=120)

    assert job.status == "succeeded", stack.logs()
    assert job.attempts == 2
    assert stack.trace_rounds(job_id) == [0, 1, 2, 3]
    rows = stack.caption_rows(stack.video(video_id).sha256)
    keys = [r.node_key for r in rows]
    assert len(keys) == len(set(keys))
    # The rerun served the captions the killed run had made from the cache.
    assert job.summary is not None and job.summary["captions_cached"] >= 4


def test_model_server_down_then_back_retries_and_finishes(make_stack) -> None:
    stack = make_stack(task_max_retries=6)
    stack.start_worker(concurrency=2)
    video_id = _ready_video(stack)

    stack.server.control("down_for", seconds=3)
    wait_for(lambda: not _reachable(stack), timeout=5, what="the model server to go down")
    job_id = stack.ask(video_id, "What happens around second 30?")
    job = stack.wait_job(job_id, timeout=120)

    assert job.status == "succeeded", f"{job.error_code}: {job.error}\n{stack.logs()}"
    assert job.attempts >= 2
    assert stack.trace_rounds(job_id) == [0, 1, 2, 3]


def _reachable(stack: Stack) -> bool:
    try:
        stack.server.stats()
    except OSError:
        return False
    return True


def test_failing_captioner_fails_the_job_after_bounded_retries(make_stack) -> None:
    stack = make_stack(task_max_retries=2)
    stack.start_worker(concurrency=1)
    video_id = _ready_video(stack, mode="lazy")
    stack.server.control("fail_always", model=CAPTIONER_MODEL)

    job = stack.wait_job(stack.ask(video_id, "What happens?"), timeout=90)

    assert job.status == "failed"
    assert job.error_code == "model_unavailable"
    assert stack.server.base_url in (job.error or "") and CAPTIONER_MODEL in (job.error or "")
    assert "gave up after 3 attempts" in (job.error or "")
    assert job.attempts == 3
    # Each attempt asks for the high captions: (client retries + 1) calls per node at most.
    assert 0 < stack.calls(CAPTIONER_MODEL) <= 3 * 4 * 2
    with stack.sessions() as session:
        assert session.scalars(select(CaptionNode.id)).first() is None


def test_cancel_is_honoured_between_rounds_and_events_are_published(make_stack) -> None:
    stack = make_stack(server_args=("--latency-ms", "300"))
    stack.start_worker(concurrency=1)
    video_id = _ready_video(stack)
    job_id = uuid.uuid4()
    events: list[dict[str, Any]] = []
    subscribed = threading.Event()

    async def collect() -> None:
        async with stack.runtime.events.subscribe(job_id) as stream:
            subscribed.set()
            async for event in stream:
                events.append(event)
                if event["type"] == "result":
                    return

    collecting = stack.runtime.background.submit(collect())
    assert subscribed.wait(10)
    with stack.sessions() as session:
        session.add(Job(id=job_id, tenant_id=stack.tenant_id, video_id=video_id,
                        question="What happens around second 70?"))
        session.commit()
    stack.runtime.queue.enqueue_navigate(job_id)
    wait_for(lambda: stack.job(job_id).progress_round >= 1, timeout=60, what="round 1")
    with stack.sessions() as session:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
        session.commit()

    job = stack.wait_job(job_id, timeout=60)
    collecting.result(timeout=30)

    assert job.status == "cancelled"
    assert 1 <= job.progress_round < 4
    rounds = [e["round"]["index"] for e in events if e["type"] == "round"]
    assert rounds == stack.trace_rounds(job_id) == list(range(job.progress_round))
    assert events[0] == {"type": "status", "status": "running", "attempt": 1}
    assert events[-1]["type"] == "result" and events[-1]["status"] == "cancelled"


def test_question_on_a_video_still_captioning_waits_for_it(make_stack) -> None:
    stack = make_stack(server_args=("--latency-ms", "100"), captioner_concurrency=2)
    stack.start_worker(concurrency=2)
    video_id = stack.upload(make_video(120), "eager")
    job_id = stack.ask(video_id, "What happens around second 20?")

    job = stack.wait_job(job_id, timeout=180)

    video = stack.video(video_id)
    assert video.status == "ready" and video.captions_done == 84
    assert job.status == "succeeded"
    assert job.started_at is not None and job.summary is not None
    # Eager captioned every node ahead, so the navigation generated nothing itself.
    assert job.summary["captions_generated"] == 0
    assert stack.calls(CAPTIONER_MODEL) == 84
