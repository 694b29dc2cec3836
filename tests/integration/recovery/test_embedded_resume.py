"""The embedded default (SQLite, the in-process queue): ``vidnav serve`` stopped with work
queued and running resumes it at its next start."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from app.bootstrap import open_runtime
from app.db.base import utcnow
from app.db.models import Job, Video
from app.settings import Settings
from tests.integration.workers.conftest import make_video
from tests.support.factories import add_uploaded_video
from tests.support.scripted_server import ScriptedServer


def test_serve_resumes_what_the_last_process_left_queued_or_running(
        tmp_path: Path, scripted_server: ScriptedServer) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", profile="remote", transcribe=False,
        policy_base_url=scripted_server.base_url, captioner_base_url=scripted_server.base_url,
        videoqa_base_url=scripted_server.base_url, model_retries=0, navigate_wait_s=0.2,
        high_frames=8, medium_frames=8, low_frames=4, videoqa_frames=4,
        reconcile_interval_s=30,  # only the start-up pass acts within this test
    )
    assert settings.embedded
    # The state a killed `vidnav serve` leaves: an upload not yet ingested, a question
    # queued in memory and one mid-run (its lease still looks alive).
    with open_runtime(settings) as first:
        video_id = add_uploaded_video(first.session_factory, make_video(60), "online")
        with first.session_factory() as session:
            video = session.get(Video, video_id)
            assert video is not None
            queued = Job(tenant_id=video.tenant_id, video_id=video_id, question="What moves?")
            running = Job(tenant_id=video.tenant_id, video_id=video_id, question="Colours?",
                          status="running", attempts=1,
                          lease_expires_at=utcnow() + timedelta(seconds=300))
            session.add_all([queued, running])
            session.commit()
            job_ids: list[uuid.UUID] = [queued.id, running.id]

    with open_runtime(settings, reconcile=True) as runtime:
        deadline = time.monotonic() + 60
        while True:
            with runtime.session_factory() as session:
                jobs = [session.get(Job, job_id) for job_id in job_ids]
                if all(j is not None and j.finished_at is not None for j in jobs):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"jobs not resumed: {[j and j.status for j in jobs]}")
            time.sleep(0.1)
    assert [j.status for j in jobs if j] == ["succeeded", "succeeded"]
    assert jobs[1] is not None and jobs[1].attempts == 2  # the dead run, then the resumed one
