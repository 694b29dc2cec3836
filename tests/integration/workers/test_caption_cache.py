"""The caption cache and single-flight against real Redis and Postgres, in-process: keys follow
the captioner config and the subtitles, concurrent misses make one call, locks are owned."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from app.bootstrap import build_runtime
from app.db.models import CaptionNode, Subtitle, Video
from app.services.cache import CachedCaption, MemoryCaptionCache, RedisCaptionCache
from app.services.captions import CaptionService, load_video_context, probe_from_dict
from app.services.ingest import ingest_video
from app.services.runtime import Runtime
from tests.integration.conftest import TEST_REDIS_URL
from tests.integration.workers.conftest import CAPTIONER_MODEL, Stack, make_video


def _lazy_video(stack: Stack, runtime: Runtime) -> uuid.UUID:
    """A probed lazy-mode video (nothing captioned ahead, so nothing is enqueued), ingested
    in this process."""
    video_id = stack.add_video(make_video(120), "lazy")
    ingest_video(runtime, video_id)
    return video_id


def test_concurrent_misses_make_one_captioner_call(make_stack) -> None:
    stack = make_stack(server_args=("--latency-ms", "300"))
    runtime = stack.runtime
    video_id = _lazy_video(stack, runtime)
    ctx = load_video_context(runtime, video_id)

    async def ask_many() -> list:
        services = [CaptionService(runtime, ctx) for _ in range(8)]
        return await asyncio.gather(*(s.get_caption((3, 2)) for s in services))

    results = runtime.run(ask_many())

    assert stack.calls(CAPTIONER_MODEL) == 1
    assert len({r.caption for r in results}) == 1
    assert sum(not r.cached for r in results) == 1
    assert len(stack.caption_rows(ctx.sha256)) == 1


def test_two_processes_share_one_generation(make_stack) -> None:
    """Two runtimes (as two worker processes would be) miss the same node at once."""
    stack = make_stack(server_args=("--latency-ms", "300"))
    second = build_runtime(stack.settings)
    try:
        video_id = _lazy_video(stack, stack.runtime)
        first_ctx = load_video_context(stack.runtime, video_id)
        second_ctx = load_video_context(second, video_id)
        one = stack.runtime.background.submit(
            CaptionService(stack.runtime, first_ctx).get_caption((1,)))
        two = second.background.submit(CaptionService(second, second_ctx).get_caption((1,)))
        results = [one.result(timeout=30), two.result(timeout=30)]
    finally:
        second.close()

    assert stack.calls(CAPTIONER_MODEL) == 1
    assert results[0].caption == results[1].caption
    assert sorted(r.cached for r in results) == [False, True]


def test_captioner_config_or_subtitle_change_makes_new_keys(make_stack) -> None:
    stack = make_stack()
    video_id = _lazy_video(stack, stack.runtime)
    ctx = load_video_context(stack.runtime, video_id)
    first = stack.runtime.run(CaptionService(stack.runtime, ctx).get_caption((2,)))
    assert not first.cached

    # The same deployment asks again: served, no call.
    again = stack.runtime.run(CaptionService(stack.runtime, ctx).get_caption((2,)))
    assert again.cached and again.caption == first.caption

    # Another captioner model: a new caption version, a new caption.
    changed = build_runtime(stack.settings.model_copy(update={"captioner_model": "other-vl"}))
    try:
        changed_ctx = load_video_context(changed, video_id)
        assert changed_ctx.version != ctx.version
        fresh = changed.run(CaptionService(changed, changed_ctx).get_caption((2,)))
    finally:
        changed.close()
    assert not fresh.cached

    # New subtitles: a new version again, and the caption is written with them.
    with stack.sessions() as session:
        session.add(Subtitle(video_id=video_id, source="upload", format="srt",
                             lines=[[0.0, 200.0, "hello there"]]))
        session.commit()
    sub_ctx = load_video_context(stack.runtime, video_id)
    assert sub_ctx.version not in (ctx.version, changed_ctx.version)
    with_subs = stack.runtime.run(CaptionService(stack.runtime, sub_ctx).get_caption((2,)))
    assert not with_subs.cached and "hello there" in with_subs.caption

    rows = stack.caption_rows(ctx.sha256)
    assert sorted(r.config_version for r in rows) == sorted(
        [ctx.version, changed_ctx.version, sub_ctx.version])
    with stack.sessions() as session:
        stored = session.scalar(select(Video.captioner_version).where(Video.id == video_id))
    assert stored == sub_ctx.version
    assert stack.calls(CAPTIONER_MODEL) == 2  # "other-vl" calls are counted apart


def test_redis_lock_is_released_only_by_its_holder(make_stack) -> None:
    stack = make_stack()

    async def scenario() -> None:
        cache = RedisCaptionCache(TEST_REDIS_URL)
        try:
            token, hit = await cache.lock_or_get("k", ttl_s=0.3)
            assert token is not None and hit is None
            assert (await cache.lock_or_get("k", ttl_s=5))[0] is None
            await asyncio.sleep(0.4)  # the holder stalled past its ttl
            second, _ = await cache.lock_or_get("k", ttl_s=5)
            assert second is not None
            await cache.put_and_unlock("k", None, token)  # the stale holder lets go
            assert await cache.is_locked("k")  # ... without freeing the new holder's lock
            assert not await cache.extend_lock("k", token, 5)
            assert await cache.extend_lock("k", second, 5)
            await cache.put_and_unlock("k", CachedCaption("c", (1.0,)), second)
            assert not await cache.is_locked("k")
            assert await cache.get("k") == CachedCaption("c", (1.0,))
            assert (await cache.lock_or_get("k", 5))[1] == CachedCaption("c", (1.0,))
        finally:
            await cache.aclose()

    stack.runtime.run(scenario())


def test_memory_cache_has_the_same_lock_semantics() -> None:
    async def scenario() -> None:
        cache = MemoryCaptionCache(max_entries=2)
        token, _ = await cache.lock_or_get("k", ttl_s=0.05)
        assert token is not None and (await cache.lock_or_get("k", 5))[0] is None
        await asyncio.sleep(0.06)
        second, _ = await cache.lock_or_get("k", 5)
        assert second is not None
        await cache.put_and_unlock("k", None, token)
        assert await cache.is_locked("k")
        await cache.put_and_unlock("k", CachedCaption("c", ()), second)
        assert not await cache.is_locked("k")
        for key in ("a", "b"):
            await cache.put(key, CachedCaption(key, ()))
        assert await cache.get("k") is None  # the oldest entry made room
        assert await cache.get("b") == CachedCaption("b", ())

    asyncio.run(scenario())


def test_stored_probe_round_trips(make_stack) -> None:
    stack = make_stack()
    video_id = _lazy_video(stack, stack.runtime)
    with stack.sessions() as session:
        video = session.get(Video, video_id)
        assert video is not None and video.probe is not None
        probe = probe_from_dict(video.probe)
    assert probe.to_dict() == video.probe
    assert (video.status, video.captions_total) == ("ready", 0)  # lazy: nothing ahead
    with stack.sessions() as session:
        assert session.scalars(select(CaptionNode.id)).first() is None
