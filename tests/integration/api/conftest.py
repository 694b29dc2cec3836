"""API test fixtures: a runtime on the test Postgres and Redis, the app, clients, tenants.

The queue only records what the API hands to workers: running workers is not what these
tests check (the workers' own tests do), while *when* and *what* the API enqueues is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from app.api.app import create_app
from app.bootstrap import build_runtime
from app.services.runtime import Runtime
from app.services.tenants import create_tenant
from app.settings import Settings
from tests.support.queues import RecordingQueue


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def runtime(integration_settings: Settings, queue: RecordingQueue) -> Iterator[Runtime]:
    built = build_runtime(integration_settings, queue=queue)
    yield built
    built.close()


def app_for(runtime: Runtime) -> FastAPI:
    # No auth cache in tests: a revoked key must fail on the next request.
    return create_app(runtime, sse_heartbeat_s=0.5, sse_poll_s=0.2, auth_cache_ttl_s=0.0)


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vidnav.test",
                                 timeout=60) as c:
        yield c


def with_settings(runtime: Runtime, **changes: Any) -> Runtime:
    """The test's runtime with some settings changed (same database, Redis and queue):
    serve it with ``client_of(app_for(...))``; the test's runtime closes what it shares."""
    return dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=changes))


@pytest.fixture
def app(runtime: Runtime) -> FastAPI:
    return app_for(runtime)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as c:
        yield c


@dataclass
class TenantInfo:
    id: uuid.UUID
    name: str
    key: str
    webhook_secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_tenant(runtime: Runtime) -> Iterator[object]:
    def make(name: str | None = None, **limits: int) -> TenantInfo:
        factory: sessionmaker[Session] = runtime.session_factory
        with factory() as session:
            tenant, key = create_tenant(session, name or f"t-{uuid.uuid4().hex[:8]}", **limits)
            session.commit()
            assert tenant.webhook_secret is not None
            return TenantInfo(tenant.id, tenant.name, key, tenant.webhook_secret)

    yield make


@pytest.fixture
def tenant(make_tenant) -> TenantInfo:  # type: ignore[no-untyped-def]
    return make_tenant("acme")


@pytest.fixture
def other_tenant(make_tenant) -> TenantInfo:  # type: ignore[no-untyped-def]
    return make_tenant("globex")


def _make_clip(path: Path, seconds: int, color: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size=160x120:rate=10:duration={seconds}", "-f", "lavfi", "-i",
         f"color=c={color}:size=16x16:rate=10:duration={seconds}", "-filter_complex",
         "[0][1]overlay=4:4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         str(path)],
        check=True, timeout=60,
    )
    return path


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def small_video(clip_dir: Path) -> bytes:
    """A real 4-second H.264 clip, small enough for many uploads."""
    return _make_clip(clip_dir / "small.mp4", 4, "red").read_bytes()


@pytest.fixture(scope="session")
def other_video(clip_dir: Path) -> bytes:
    return _make_clip(clip_dir / "other.mp4", 3, "blue").read_bytes()


@pytest.fixture
async def video(client, tenant, small_video):  # type: ignore[no-untyped-def]
    """The tenant's uploaded small clip (the API's JSON)."""
    response = await client.post("/v1/videos", headers=tenant.headers,
                                 files={"file": ("clip.mp4", small_video, "video/mp4")})
    assert response.status_code == 201
    return response.json()


@pytest.fixture
def rows(runtime: Runtime):  # type: ignore[no-untyped-def]
    """``rows(Model)``: every row of a table, read in a fresh session."""
    from sqlalchemy import select

    def read(model: type) -> list[object]:
        with runtime.session_factory() as session:
            return list(session.scalars(select(model)))

    return read


class LiveServer:
    """The app served by uvicorn on a loopback port in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])), daemon=True
        )

    def start(self) -> LiveServer:
        self._thread.start()
        for _ in range(200):
            if self._server.started:
                return self
            threading.Event().wait(0.02)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    yield server
    server.stop()

