"""Hostile-input, fault and access tests, on the API fixtures (real Postgres, Redis, ffmpeg),
with helpers that check what every refusal must hold: a 4xx in the one error shape, no
server path in the answer, and nothing left behind."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from app.db.models import Job, Subtitle, Video
from app.services.runtime import Runtime
from tests.integration.api import conftest as api_tier
from tests.integration.hostile import stack
from tests.integration.hostile.specimens import Specimen, build_specimens
from tests.support.hostile_report import Tally

REPO_ROOT = Path(__file__).resolve().parents[3]

# The API tier's fixtures (pytest finds fixtures by name in a conftest's namespace).
app = api_tier.app
client = api_tier.client
clip_dir = api_tier.clip_dir
live_server = api_tier.live_server
make_tenant = api_tier.make_tenant
other_tenant = api_tier.other_tenant
other_video = api_tier.other_video
queue = api_tier.queue
rows = api_tier.rows
runtime = api_tier.runtime
small_video = api_tier.small_video
tenant = api_tier.tenant
video = api_tier.video
# The API on the full service with scripted models (see stack.py).
rig = pytest.fixture(stack.rig)


def server_paths(runtime: Runtime) -> list[str]:
    """Strings that would tell a client where the server keeps its files."""
    data = runtime.settings.data_dir.resolve()
    return [str(data), str(data.parent), str(REPO_ROOT), "/tmp/", "/home/", "/root/", ".part"]


def assert_no_server_path(text: str, runtime: Runtime, tally: Tally | None = None) -> None:
    found = [marker for marker in server_paths(runtime) if marker in text]
    if tally is not None:
        tally.add("paths_revealed", len(found))
    assert not found, f"a response names a server path ({found}): {text[:500]}"


def assert_refused(response: httpx.Response, runtime: Runtime, tally: Tally, *,
                   statuses: frozenset[int] | set[int] | None = None,
                   codes: frozenset[str] | set[str] | None = None) -> dict[str, Any]:
    """A clear 4xx in the error shape, naming no server path; returns the error."""
    tally.add("inputs_tried")
    tally.add("server_errors", int(response.status_code >= 500))
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"].strip()
    assert isinstance(error["details"], dict)
    if codes:
        assert error["code"] in codes, (error, codes)
    assert_no_server_path(json.dumps(body), runtime, tally)
    tally.add("inputs_refused")
    return error  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Footprint:
    """What the service holds for tenants: rows, files under the data dir, reservations."""

    videos: int
    jobs: int
    subtitles: int
    files: frozenset[str]
    reservations: int


class Leftovers:
    """Takes footprints, so a test can check a refused input changed nothing."""

    def __init__(self, runtime: Runtime, redis_client: redis.Redis) -> None:
        self.runtime = runtime
        self.redis = redis_client

    def footprint(self) -> Footprint:
        with self.runtime.session_factory() as session:
            counts = [int(session.scalar(select(func.count()).select_from(model)) or 0)
                      for model in (Video, Job, Subtitle)]
        data = self.runtime.settings.data_dir
        files = frozenset(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()) \
            if data.exists() else frozenset()
        reservations = sum(self.redis.hlen(key) for key in self.redis.scan_iter("vidnav:uploads:*"))
        return Footprint(*counts, files=files, reservations=reservations)

    def assert_unchanged(self, before: Footprint, tally: Tally, what: str) -> None:
        after = self.footprint()
        tally.add("leftovers", int(after != before))
        assert after == before, f"{what} left something behind: {before} -> {after}"


@pytest.fixture
def leftovers(runtime: Runtime, redis_client: redis.Redis) -> Leftovers:
    return Leftovers(runtime, redis_client)


@pytest.fixture(scope="session")
def specimens(tmp_path_factory: pytest.TempPathFactory, small_video: bytes) -> list[Specimen]:
    return build_specimens(tmp_path_factory.mktemp("specimens"), small_video)
