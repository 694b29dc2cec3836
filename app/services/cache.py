"""The caption cache in front of ``caption_nodes``: Redis in the full stack, memory otherwise.

A key names one caption exactly: content sha256 + caption version + node key, where the
caption version digests the captioner's config version and the video's subtitles. A changed
captioner or new subtitles therefore make new keys and stale captions are never served. The
cache is only a copy: Postgres is the record, so losing the cache loses nothing.

The cache also carries the cross-process half of single-flight: a short ``SET NX PX`` lock
per key, released only by the holder's token.
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

KEY_PREFIX = "vidnav:caption:"
LOCK_PREFIX = "vidnav:caption-lock:"

# Deletes the lock only when it still holds our token: a holder whose lock expired must not
# release the lock another worker has taken since.
_UNLOCK_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


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
    """Key -> caption, plus the per-key lock single-flight uses across processes."""

    inflight: dict[str, asyncio.Future[Any]]

    def get(self, key: str) -> CachedCaption | None: ...

    def put(self, key: str, value: CachedCaption) -> None: ...

    def try_lock(self, key: str, ttl_s: float) -> str | None:
        """Take the generation lock of ``key``; a token when taken, None when held elsewhere."""
        ...

    def extend_lock(self, key: str, token: str, ttl_s: float) -> bool: ...

    def unlock(self, key: str, token: str) -> None: ...

    def is_locked(self, key: str) -> bool: ...

    def clear(self) -> None: ...


class RedisCaptionCache:
    """Captions in Redis (no expiry: a caption never goes stale under its key)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self._unlock = client.register_script(_UNLOCK_SCRIPT)
        self._extend = client.register_script(
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
        )

    def get(self, key: str) -> CachedCaption | None:
        raw = self.client.get(KEY_PREFIX + key)
        return None if raw is None else CachedCaption.from_json(raw)  # type: ignore[arg-type]

    def put(self, key: str, value: CachedCaption) -> None:
        self.client.set(KEY_PREFIX + key, value.to_json())

    def try_lock(self, key: str, ttl_s: float) -> str | None:
        token = uuid.uuid4().hex
        taken = self.client.set(LOCK_PREFIX + key, token, nx=True, px=max(1, int(ttl_s * 1000)))
        return token if taken else None

    def extend_lock(self, key: str, token: str, ttl_s: float) -> bool:
        return bool(self._extend(keys=[LOCK_PREFIX + key], args=[token, int(ttl_s * 1000)]))

    def unlock(self, key: str, token: str) -> None:
        self._unlock(keys=[LOCK_PREFIX + key], args=[token])

    def is_locked(self, key: str) -> bool:
        return bool(self.client.exists(LOCK_PREFIX + key))

    def clear(self) -> None:
        """Drop every cached caption (not the locks); used by tests and operators."""
        for prefix in (KEY_PREFIX,):
            batch = list(self.client.scan_iter(match=prefix + "*", count=500))
            while batch:
                self.client.delete(*batch[:500])
                batch = batch[500:]


class MemoryCaptionCache:
    """Captions in this process only (the embedded default); locks are process-local."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self._values: dict[str, CachedCaption] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._mutex = threading.Lock()

    def get(self, key: str) -> CachedCaption | None:
        with self._mutex:
            return self._values.get(key)

    def put(self, key: str, value: CachedCaption) -> None:
        with self._mutex:
            if len(self._values) >= self.max_entries and key not in self._values:
                # The database keeps every caption; dropping the oldest entry is harmless.
                self._values.pop(next(iter(self._values)))
            self._values[key] = value

    def try_lock(self, key: str, ttl_s: float) -> str | None:
        now = time.monotonic()
        with self._mutex:
            held = self._locks.get(key)
            if held is not None and held[1] > now:
                return None
            token = uuid.uuid4().hex
            self._locks[key] = (token, now + ttl_s)
            return token

    def extend_lock(self, key: str, token: str, ttl_s: float) -> bool:
        with self._mutex:
            held = self._locks.get(key)
            if held is None or held[0] != token:
                return False
            self._locks[key] = (token, time.monotonic() + ttl_s)
            return True

    def unlock(self, key: str, token: str) -> None:
        with self._mutex:
            held = self._locks.get(key)
            if held is not None and held[0] == token:
                del self._locks[key]

    def is_locked(self, key: str) -> bool:
        with self._mutex:
            held = self._locks.get(key)
            return held is not None and held[1] > time.monotonic()

    def clear(self) -> None:
        with self._mutex:
            self._values.clear()
