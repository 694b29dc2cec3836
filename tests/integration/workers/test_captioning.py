"""Uploads captioned by real Celery workers in each caption mode, against a scripted
captioner; crash recovery and a captioner that never answers."""

from __future__ import annotations

import collections

import pytest
from sqlalchemy import select

from app.core.tree import VideoGeometry
from app.db.models import CaptionNode
from app.services.cache import KEY_PREFIX
from app.services.captions import CaptionService, load_video_context
from app.services.runtime import tree_config
from tests.integration.workers.conftest import CAPTIONER_MODEL, make_video, wait_for

# 120 s at 2 fps: width 4, so 4 high, 16 medium and 64 low nodes.
EXPECTED = {"eager": {1: 4, 2: 16, 3: 64}, "online": {1: 4}, "lazy": {}}


@pytest.mark.parametrize("mode", ["eager", "online", "lazy"])
def test_upload_is_captioned_in_each_mode(make_stack, mode: str) -> None:
    stack = make_stack()
    stack.start_worker(concurrency=2)
    video_id = stack.upload(make_video(120), mode)

    video = stack.wait_video(video_id)

    expected = EXPECTED[mode]
    assert video.tree_width == 4
    assert video.captions_total == sum(expected.values())
    assert video.captions_done == video.captions_total
    rows = stack.caption_rows(video.sha256)
    assert dict(collections.Counter(r.level for r in rows)) == expected
    assert all(r.config_version == video.captioner_version for r in rows)
    # One captioner call per row: nothing was captioned twice.
    assert stack.calls(CAPTIONER_MODEL) == len(rows)
    geometry = VideoGeometry(video.num_frames, video.fps, tree_config(stack.settings))
    for row in rows:
        node = tuple(int(p) for p in row.node_key.split(","))
        assert row.frame_times == geometry.frame_times(node)
        # The scripted captioner names the frame times it was shown.
        assert f"frames at {row.frame_times[0]}s" in row.caption


def test_sigkilled_caption_worker_is_finished_by_a_restarted_one(make_stack) -> None:
    stack = make_stack(server_args=("--latency-ms", "150"), captioner_concurrency=2)
    worker = stack.start_worker(queues="ingest,caption", concurrency=1, name="doomed")
    video_id = stack.upload(make_video(120), "eager")

    def some_done() -> bool:
        return stack.video(video_id).captions_done >= 10

    wait_for(some_done, timeout=60, what="captioning to be under way")
    worker.kill()
    done_at_kill = stack.video(video_id).captions_done
    assert done_at_kill < 84, "the kill came too late to interrupt captioning"

    stack.start_worker(queues="ingest,caption", concurrency=1, name="successor")
    video = stack.wait_video(video_id, timeout=120)

    rows = stack.caption_rows(video.sha256)
    keys = [r.node_key for r in rows]
    assert len(keys) == len(set(keys)) == 84
    assert video.captions_done == video.captions_total == 84
    # Work done before the kill was kept: at most the calls in flight were repeated.
    assert 84 <= stack.calls(CAPTIONER_MODEL) <= 84 + 2 * 2


def test_redis_flush_loses_no_caption(make_stack) -> None:
    stack = make_stack()
    stack.start_worker(concurrency=1)
    video_id = stack.upload(make_video(120), "online")
    video = stack.wait_video(video_id)
    calls = stack.calls(CAPTIONER_MODEL)
    redis_client = stack.runtime.redis
    assert redis_client is not None
    assert len(list(redis_client.scan_iter(match=KEY_PREFIX + "*"))) == 4
    redis_client.flushdb()

    # The caption service reads through to Postgres and puts the caption back in Redis.
    ctx = load_video_context(stack.runtime, video_id)
    result = stack.runtime.run(CaptionService(stack.runtime, ctx).get_caption((2,)))
    assert result.cached and result.caption.startswith("This clip")
    assert redis_client.exists(KEY_PREFIX + ctx.key((2,)))

    # Another tenant's upload of the same bytes reuses the stored captions.
    again = stack.upload(make_video(120), "online", tenant_id=stack.new_tenant())
    assert stack.wait_video(again).captions_done == 4

    assert stack.calls(CAPTIONER_MODEL) == calls
    with stack.sessions() as session:
        count = len(session.scalars(select(CaptionNode.id).where(
            CaptionNode.content_sha256 == video.sha256)).all())
    assert count == 4


def test_captioner_that_always_fails_fails_the_video_with_a_clear_error(make_stack) -> None:
    stack = make_stack(server_args=("--fail-model", CAPTIONER_MODEL), task_max_retries=2)
    stack.start_worker(concurrency=1)
    video_id = stack.upload(make_video(120), "online")

    video = stack.wait_video(video_id, statuses=("failed",), timeout=90)

    assert video.error_code == "model_unavailable"
    assert stack.server.base_url in (video.error or "")
    assert CAPTIONER_MODEL in (video.error or "")
    # Bounded: (task retries + 1) attempts x (client retries + 1) calls x at most the
    # nodes in flight per attempt.
    assert 0 < stack.calls(CAPTIONER_MODEL) <= 3 * 2 * 4
