"""One caption of one node: from the cache, else the database, else generated exactly once.

Single-flight at two levels: inside the process, concurrent misses of one key share one
generation (``app.singleflight``); across processes, a Redis ``SET NX PX`` lock per key
(``CaptionCache.lock_or_get``) lets one process generate while the others wait for its
caption to appear in the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable

from app.core.ports import CaptionResult, NodeId
from app.core.tree import node_key
from app.errors import ModelError, Unavailable, VidnavError
from app.models.base import NodeFrames
from app.services.cache import CachedCaption
from app.services.captions.context import VideoContext
from app.services.captions.storage import RowWriter, insert_rows, read_rows, row_values
from app.services.runtime import Runtime
from app.singleflight import shared

_POLL_S = 0.05

LoadFrames = Callable[[], Awaitable[NodeFrames]]


class CaptionerFailed(VidnavError):
    """The captioner could not caption a node (after the model client's own retries)."""

    code = "captioner_failed"
    kind = "unavailable"


async def obtain_caption(
    runtime: Runtime, ctx: VideoContext, node: NodeId, load_frames: LoadFrames, *,
    known_missing: bool = False, writer: RowWriter | None = None,
) -> CaptionResult:
    """The caption of ``node``: cache, then database, then generated exactly once.

    ``known_missing``: the caller has just seen no row for the node (a batch reads all its
    rows at once), so the database is not asked again before taking the lock. Callers who
    joined another's generation get its caption marked ``cached`` (they made no call)."""
    cache = runtime.caption_cache
    key = ctx.key(node)
    if not known_missing:
        hit = await cache.get(key)
        if hit is not None:
            return _served(node, hit)
        served = await _from_database(runtime, ctx, node, key)
        if served is not None:
            return served
    first = key not in cache.inflight
    generation = shared(cache.inflight, key,
                        lambda: _generate_once(runtime, ctx, node, key, load_frames, writer))
    result: CaptionResult = await asyncio.shield(generation)
    return result if first else dataclasses.replace(result, cached=True, usage=None)


def _served(node: NodeId, value: CachedCaption) -> CaptionResult:
    return CaptionResult(node=node, caption=value.caption, frame_times=value.frame_times,
                         cached=True)


async def _from_database(
    runtime: Runtime, ctx: VideoContext, node: NodeId, key: str
) -> CaptionResult | None:
    """The node's stored caption, put back in the cache (a Redis flush may have emptied it)."""
    rows = await asyncio.to_thread(read_rows, runtime, ctx, [node_key(node)])
    if not rows:
        return None
    await runtime.caption_cache.put(key, rows[node_key(node)])
    return _served(node, rows[node_key(node)])


async def _generate_once(
    runtime: Runtime, ctx: VideoContext, node: NodeId, key: str, load_frames: LoadFrames,
    writer: RowWriter | None,
) -> CaptionResult:
    """Generate under the cross-process lock, or wait for the process that holds it."""
    cache = runtime.caption_cache
    settings = runtime.settings
    deadline = time.monotonic() + settings.caption_wait_s
    while True:
        token, hit = await cache.lock_or_get(key, settings.caption_lock_ttl_s)
        if token is not None:
            stored: CachedCaption | None = hit
            try:
                if hit is not None:
                    # Made by another process between our miss and the lock: whoever
                    # makes a caption caches it, so the cache alone answers this.
                    return _served(node, hit)
                result = await _generate_locked(runtime, ctx, node, key, token, load_frames,
                                                writer)
                stored = CachedCaption(result.caption, result.frame_times)
                return result
            finally:
                await cache.put_and_unlock(key, stored, token)
        if hit is not None:
            return _served(node, hit)
        hit = await _wait_for_holder(runtime, node, key, deadline)
        if hit is not None:
            return _served(node, hit)
        served = await _from_database(runtime, ctx, node, key)
        if served is not None:
            return served
        # The holder gave up (failed or died) without a caption: try ourselves.


async def _wait_for_holder(runtime: Runtime, node: NodeId, key: str, deadline: float
                           ) -> CachedCaption | None:
    """Wait while another process holds the key's lock; its caption once cached, or None
    when the lock went without one."""
    cache = runtime.caption_cache
    while await cache.is_locked(key):
        if time.monotonic() > deadline:
            raise Unavailable(
                f"caption of node {node_key(node)} was not produced within "
                f"{runtime.settings.caption_wait_s:.0f} s by the worker generating it",
                code="caption_wait_timeout")
        await asyncio.sleep(_POLL_S)
        hit = await cache.get(key)
        if hit is not None:
            return hit
    return None


async def _generate_locked(
    runtime: Runtime, ctx: VideoContext, node: NodeId, key: str, token: str,
    load_frames: LoadFrames, writer: RowWriter | None,
) -> CaptionResult:
    """Caption the node while holding its lock (kept alive while the model works) and
    store the row; the caller caches the result and releases the lock."""
    cache = runtime.caption_cache
    ttl = runtime.settings.caption_lock_ttl_s

    async def keep_lock() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            await cache.extend_lock(key, token, ttl)

    keeper = asyncio.create_task(keep_lock())
    try:
        frames = await load_frames()
        try:
            output = await runtime.captioner.caption(frames)
        except ModelError as exc:
            raise CaptionerFailed(
                f"captioning node {node_key(node)} failed: {exc.message}",
                code=exc.code, details=exc.details) from exc
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    row = row_values(ctx, node, frames, output.text, output.raw_reply, output.usage)
    if writer is not None:
        stored = await writer.write(row)
    else:
        stored = (await asyncio.to_thread(insert_rows, runtime, ctx, [row]))[row["node_key"]]
    return CaptionResult(node=node, caption=stored.caption, frame_times=stored.frame_times,
                         cached=False, usage=output.usage, raw_reply=output.raw_reply)
