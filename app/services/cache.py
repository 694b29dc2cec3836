"""The caption cache in front of ``caption_nodes``: Redis in the full stack, memory otherwise.

A key names one caption exactly: content sha256 + caption version + node key, where the
caption version digests the captioner's config version and the video's subtitles. A changed
captioner or new subtitles therefore make new keys and stale captions are never served. The
cache is only a copy: Postgres is the record, so losing the cache loses nothing.

The cache also carries the cross-process half of single-flight: a short ``SET NX PX`` lock
per key, released only by the holder's token. The lock's release and extend are redis-py's
own ``Lock`` scripts; the ``Lock`` class itself is not used because each of its calls is a
round trip of its own, while here taking the lock rides with reading the caption, and
releasing it with writing the caption (one round trip each, per node of a caption batch).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio
from redis.asyncio.lock import Lock

KEY_PREFIX = "vidnav:caption:"
LOCK_PREFIX = "vidnav:caption-lock:"

# Both act only while the lock still holds our token: a holder whose lock expired must not
# release (or prolong) the lock another worker has taken since.
_UNLOCK_SCRIPT = Lock.LUA_RELEASE_SCRIPT  # KEYS: lock; ARGV: token
_EXTEND_SCRIPT = Lock.LUA_EXTEND_SCRIPT  # KEYS: lock; ARGV: token, ms, "1" (replace the TTL)


@dataclass(frozen=True, slots=True)
class CachedCaption:
    """What the cache holds for a node: enough to serve it without the database."""

    caption: str
    frame_times: tuple[float, ...]

    def to_json(self) -> str:
        return json.dumps({"caption": self.caption, "frame_times": list(self.frame_times)})

    @classmethod
    def from_json(cls, raw: str | bytes) -> CachedCaption:
        data = json.loads(raw)
        return cls(caption=str(data["caption"]),
                   frame_times=tuple(float(t) for t in data["frame_times"]))


def caption_version(captioner_config_version: str, subtitle_digest: str) -> str:
    """The version captions of one video are stored under (64 hex chars)."""
    return hashlib.sha256(f"{captioner_config_version}\n{subtitle_digest}".encode()).hexdigest()


def subtitle_digest(lines: list[Any]) -> str:
    """A digest of a video's subtitle lines ([[start, end, text], ...]); '' for none."""
    if not lines:
        return ""
    canonical = json.dumps([[float(a), float(b), str(t)] for a, b, t in lines],
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_key(content_sha256: str, version: str, node_key: str) -> str:
    return f"{content_sha256}:{version}:{node_key}"


class CaptionCache(Protocol):
    """Key -> caption, plus the per-key lock single-flight uses across processes.

    Asynchronous: the caption service calls it from the runtime's event loop, which must
    not stall on a Redis round trip while sixteen captioner calls are in flight.
    """

    inflight: dict[str, asyncio.Future[Any]]

    async def get(self, key: str) -> CachedCaption | None: ...

    async def put(self, key: str, value: CachedCaption) -> None: ...

    async def lock_or_get(self, key: str, ttl_s: float
                          ) -> tuple[str | None, CachedCaption | None]:
        """Take the generation lock of ``key`` (a token, or None when another holds it)
        and read the cached caption, in one round trip."""
        ...

    async def extend_lock(self, key: str, token: str, ttl_s: float) -> bool: ...

    async def put_and_unlock(self, key: str, value: CachedCaption | None, token: str
                             ) -> None:
        """Cache ``value`` (unless None) and release our lock, in one round trip."""
        ...

    async def is_locked(self, key: str) -> bool: ...

    async def aclose(self) -> None: ...


class RedisCaptionCache:
    """Captions in Redis (no expiry: a caption never goes stale under its key).

    The asyncio client is made on first use, inside the event loop it then belongs to.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self._client: redis.asyncio.Redis | None = None

    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None:
            self._client = redis.asyncio.Redis.from_url(self.url, health_check_interval=30)
            self._unlock = self._client.register_script(_UNLOCK_SCRIPT)
            self._extend = self._client.register_script(_EXTEND_SCRIPT)
        return self._client

    async def get(self, key: str) -> CachedCaption | None:
        raw = await self._redis().get(KEY_PREFIX + key)
        return None if raw is None else CachedCaption.from_json(raw)

    async def put(self, key: str, value: CachedCaption) -> None:
        await self._redis().set(KEY_PREFIX + key, value.to_json())

    async def lock_or_get(self, key: str, ttl_s: float
                          ) -> tuple[str | None, CachedCaption | None]:
        token = uuid.uuid4().hex
        async with self._redis().pipeline(transaction=False) as pipe:
            pipe.set(LOCK_PREFIX + key, token, nx=True, px=max(1, int(ttl_s * 1000)))
            pipe.get(KEY_PREFIX + key)
            taken, raw = await pipe.execute()
        cached = None if raw is None else CachedCaption.from_json(raw)
        return (token if taken else None), cached

    async def extend_lock(self, key: str, token: str, ttl_s: float) -> bool:
        self._redis()
        return bool(await self._extend(keys=[LOCK_PREFIX + key],
                                       args=[token, max(1, int(ttl_s * 1000)), "1"]))

    async def put_and_unlock(self, key: str, value: CachedCaption | None, token: str
                             ) -> None:
        client = self._redis()
        async with client.pipeline(transaction=False) as pipe:
            if value is not None:
                pipe.set(KEY_PREFIX + key, value.to_json())
            await self._unlock(keys=[LOCK_PREFIX + key], args=[token], client=pipe)
            await pipe.execute()

    async def is_locked(self, key: str) -> bool:
        return bool(await self._redis().exists(LOCK_PREFIX + key))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class MemoryCaptionCache:
    """Captions in this process only (the embedded default); locks are process-local."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self._values: dict[str, CachedCaption] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._mutex = threading.Lock()

    async def get(self, key: str) -> CachedCaption | None:
        with self._mutex:
            return self._values.get(key)

    async def put(self, key: str, value: CachedCaption) -> None:
        self._put(key, value)

    def _put(self, key: str, value: CachedCaption) -> None:
        with self._mutex:
            if len(self._values) >= self.max_entries and key not in self._values:
                # The database keeps every caption; dropping the oldest entry is harmless.
                self._values.pop(next(iter(self._values)))
            self._values[key] = value

    async def lock_or_get(self, key: str, ttl_s: float
                          ) -> tuple[str | None, CachedCaption | None]:
        now = time.monotonic()
        with self._mutex:
            cached = self._values.get(key)
            held = self._locks.get(key)
            if held is not None and held[1] > now:
                return None, cached
            token = uuid.uuid4().hex
            self._locks[key] = (token, now + ttl_s)
            return token, cached

    async def extend_lock(self, key: str, token: str, ttl_s: float) -> bool:
        with self._mutex:
            held = self._locks.get(key)
            if held is None or held[0] != token:
                return False
            self._locks[key] = (token, time.monotonic() + ttl_s)
            return True

    async def put_and_unlock(self, key: str, value: CachedCaption | None, token: str
                             ) -> None:
        if value is not None:
            self._put(key, value)
        with self._mutex:
            held = self._locks.get(key)
            if held is not None and held[0] == token:
                del self._locks[key]

    async def is_locked(self, key: str) -> bool:
        with self._mutex:
            held = self._locks.get(key)
            return held is not None and held[1] > time.monotonic()

    async def aclose(self) -> None:
        with self._mutex:
            self._values.clear()
