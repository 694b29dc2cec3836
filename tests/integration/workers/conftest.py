"""Worker fixtures: real Celery worker processes on Redis + Postgres, a scripted model server
in its own process, generated videos, and plain factories for tenants, videos and jobs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.bootstrap import build_runtime
from app.db.models import FINISHED_JOB_STATUSES, CaptionNode, Job, Tenant, TraceStep, Video
from app.services.runtime import Runtime
from app.settings import Settings
from tests.integration.conftest import TEST_REDIS_URL
from tests.support.fixtures import ScriptedServerProcess
from tests.support.videos import make_video  # noqa: F401  (tests import it from here)

REPO_ROOT = Path(__file__).resolve().parents[3]
POLICY_MODEL = "policy-model"
CAPTIONER_MODEL = "captioner-model"
VIDEOQA_MODEL = "videoqa-model"


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class CeleryWorker:
    """A ``celery -A workers.celery_app worker`` process group (main process + pool)."""

    def __init__(self, env: dict[str, str], log_path: Path, *, queues: str,
                 concurrency: int, name: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
             "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h", "-l", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=60, what=f"worker {name} to start")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log()}")
        return " ready." in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole group, as a machine or OOM-killer would: nothing is acked."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


@dataclass
class Stack:
    """Everything a worker test drives: settings, the test's runtime (to enqueue and read
    rows), the scripted model server and the workers it started."""

    settings: Settings
    env: dict[str, str]
    runtime: Runtime
    server: ScriptedServerProcess
    tenant_id: uuid.UUID
    tmp_path: Path
    workers: list[CeleryWorker]

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.runtime.session_factory

    def start_worker(self, queues: str = "ingest,caption,navigate", concurrency: int = 2,
                     name: str | None = None) -> CeleryWorker:
        label = name or f"w{len(self.workers)}"
        worker = CeleryWorker(self.env, self.tmp_path / f"{label}.log", queues=queues,
                              concurrency=concurrency, name=label)
        self.workers.append(worker)
        return worker

    def new_tenant(self) -> uuid.UUID:
        with self.sessions() as session:
            tenant = Tenant(name=f"workers-{uuid.uuid4().hex[:8]}")
            session.add(tenant)
            session.commit()
            return tenant.id

    def add_video(self, path: Path, mode: str, tenant_id: uuid.UUID | None = None
                  ) -> uuid.UUID:
        """A committed ``uploaded`` video row, as the upload endpoint leaves it."""
        data = path.read_bytes()
        with self.sessions() as session:
            video = Video(
                tenant_id=tenant_id or self.tenant_id, sha256=hashlib.sha256(data).hexdigest(),
                original_name=path.name, size_bytes=len(data), storage_path=str(path),
                caption_mode=mode,
            )
            session.add(video)
            session.commit()
            return video.id

    def upload(self, path: Path, mode: str, tenant_id: uuid.UUID | None = None) -> uuid.UUID:
        video_id = self.add_video(path, mode, tenant_id)
        self.runtime.queue.enqueue_ingest(video_id)
        return video_id

    def ask(self, video_id: uuid.UUID, question: str, options: list[str] | None = None
            ) -> uuid.UUID:
        with self.sessions() as session:
            job = Job(tenant_id=self.tenant_id, video_id=video_id, question=question,
                      options=options)
            session.add(job)
            session.commit()
            job_id = job.id
        self.runtime.queue.enqueue_navigate(job_id)
        return job_id

    def video(self, video_id: uuid.UUID) -> Video:
        with self.sessions() as session:
            video = session.get(Video, video_id)
            assert video is not None
            return video

    def job(self, job_id: uuid.UUID) -> Job:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def wait_video(self, video_id: uuid.UUID, statuses: tuple[str, ...] = ("ready",),
                   timeout: float = 120) -> Video:
        def settled() -> Video | None:
            video = self.video(video_id)
            if video.status in statuses:
                return video
            if video.status == "failed" and "failed" not in statuses:
                pytest.fail(f"video failed: {video.error_code}: {video.error}\n{self.logs()}")
            return None

        return wait_for(settled, timeout=timeout, what=f"video {statuses}")  # type: ignore[no-any-return]

    def wait_job(self, job_id: uuid.UUID, timeout: float = 120) -> Job:

        def settled() -> Job | None:
            job = self.job(job_id)
            return job if job.status in FINISHED_JOB_STATUSES else None

        deadline = time.monotonic() + timeout
        while (job := settled()) is None:
            if time.monotonic() > deadline:
                job = self.job(job_id)
                pytest.fail(f"job {job_id} still {job.status} (round {job.progress_round}) "
                            f"after {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.2)
        return job

    def caption_rows(self, sha256: str) -> list[CaptionNode]:
        with self.sessions() as session:
            return list(session.scalars(
                select(CaptionNode).where(CaptionNode.content_sha256 == sha256)))

    def trace_rounds(self, job_id: uuid.UUID) -> list[int]:
        with self.sessions() as session:
            return list(session.scalars(
                select(TraceStep.round_index).where(TraceStep.job_id == job_id)
                .order_by(TraceStep.round_index)))

    def count_rows(self, model: type[Any]) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    def calls(self, model: str) -> int:
        return int(self.server.stats()["calls"].get(model, 0))

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()[-4000:]}" for w in self.workers)


def stack_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDNAV_")}
    env.update(settings_env)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


@pytest.fixture
def make_stack(integration_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Build a stack with settings overrides; workers are started by the test."""
    made: list[Stack] = []

    def make(*, server_args: tuple[str, ...] = (), **overrides: Any) -> Stack:
        server = ScriptedServerProcess(
            "--policy-model", POLICY_MODEL, "--captioner-model", CAPTIONER_MODEL,
            "--videoqa-model", VIDEOQA_MODEL, *server_args)
        values: dict[str, Any] = {
            "database_url": integration_settings.database_url,
            "redis_url": TEST_REDIS_URL,
            "data_dir": str(tmp_path / "data"),
            "profile": "remote",
            "policy_base_url": server.base_url, "policy_model": POLICY_MODEL,
            "captioner_base_url": server.base_url, "captioner_model": CAPTIONER_MODEL,
            "videoqa_base_url": server.base_url, "videoqa_model": VIDEOQA_MODEL,
            "model_retries": 1,
            "model_timeout_s": 20,
            "celery_visibility_timeout_s": 4,
            "task_max_retries": 3,
            "task_retry_backoff_s": 0.5,
            "task_retry_backoff_max_s": 4,
            "navigate_wait_s": 0.5,
            "caption_lock_ttl_s": 6,
            "transcribe": False,
            "high_frames": 16, "medium_frames": 8, "low_frames": 4, "videoqa_frames": 4,
        }
        values.update(overrides)
        env = {f"VIDNAV_{k.upper()}": str(v) for k, v in values.items()}
        settings = Settings(**values)
        runtime = build_runtime(settings)
        stack = Stack(settings=settings, env=stack_env(env), runtime=runtime, server=server,
                      tenant_id=uuid.UUID(int=0), tmp_path=tmp_path, workers=[])
        stack.tenant_id = stack.new_tenant()
        made.append(stack)
        return stack

    yield make
    for stack in made:
        for worker in stack.workers:
            worker.stop()
        stack.runtime.close()
        stack.server.stop()
        stack.server._stderr.close()
