"""The in-process deployment: the same services ``vidnav ask`` goes through.

Each video is registered and prepared once (its ``.srt`` attached first when the benchmark
reads subtitles); the questions on it then run concurrently as jobs on the runtime's queue.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from app.core.ports import NodeId
from app.core.trace import TraceRound
from app.core.tree import node_key
from app.db.models import CaptionNode
from app.db.session import session_scope
from app.services.captions import load_video_context
from app.services.captions.context import VideoContext
from app.services.evaluation.items import BenchItem
from app.services.evaluation.records import Answered
from app.services.local_questions import (
    collect_result,
    local_tenant_id,
    prepare_video,
    register_local_video,
    run_question,
)
from app.services.runtime import Runtime
from app.services.subtitles import add_subtitles, list_subtitles


def caption_seconds(runtime: Runtime, ctx: VideoContext, nodes: Sequence[NodeId]) -> float:
    """What generating these nodes' captions cost (seconds of the captioner, as stored)."""
    keys = [node_key(n) for n in nodes]
    with session_scope(runtime.session_factory) as session:
        rows = session.scalars(select(CaptionNode.model_seconds).where(
            CaptionNode.content_sha256 == ctx.sha256, CaptionNode.config_version == ctx.version,
            CaptionNode.node_key.in_(keys)))
        return round(sum(float(s or 0.0) for s in rows), 4)


class LocalDeployment:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._videos: dict[Path, tuple[uuid.UUID, float]] = {}
        self._tenant: uuid.UUID | None = None

    @property
    def tenant_id(self) -> uuid.UUID:
        """The local tenant the questions are asked for (created on first use)."""
        with self._lock:
            if self._tenant is None:
                self._tenant = local_tenant_id(self.runtime)
            return self._tenant

    def prepare(self, item: BenchItem) -> tuple[uuid.UUID, float]:
        """The video's id, and the seconds preparing it cost (paid by its first question)."""
        with self._lock:  # one video prepared at a time: registering is not concurrent-safe
            if self._tenant is None:
                self._tenant = local_tenant_id(self.runtime)
            if item.video in self._videos:
                return self._videos[item.video][0], 0.0
            video_id = register_local_video(self.runtime, self._tenant, item.video)
            if item.subtitles is not None:
                self._attach(video_id, item.subtitles)
            started = time.perf_counter()
            prepare_video(self.runtime, video_id)
            spent = time.perf_counter() - started
            self._videos[item.video] = (video_id, spent)
            return video_id, spent

    def _attach(self, video_id: uuid.UUID, srt: Path) -> None:
        assert self._tenant is not None
        with session_scope(self.runtime.session_factory) as session:
            if not list_subtitles(session, self._tenant, video_id):
                add_subtitles(session, self._tenant, video_id, srt.read_bytes(), srt.name)

    def answer(self, item: BenchItem, max_rounds: int | None) -> Answered:
        video_id, prepare_s = self.prepare(item)
        assert self._tenant is not None
        job_id, seconds = run_question(self.runtime, self._tenant, video_id, item.question,
                                       list(item.options), max_rounds)
        result = collect_result(self.runtime, video_id, job_id, {})
        return Answered(answer=result.answer, status=result.status, rounds=result.recorded,
                        summary=result.summary, wall_s=seconds, prepare_s=prepare_s,
                        error=result.error,
                        caption_seconds_read=self._read_cost(video_id, result.recorded))

    def _read_cost(self, video_id: uuid.UUID, rounds: list[TraceRound]) -> float:
        """Generation seconds of the captions this navigation read: the high level and
        every get_caption served."""
        ctx = load_video_context(self.runtime, video_id)
        nodes = [*ctx.geometry.nodes(1),
                 *(tuple(r.node) for r in rounds if r.served and r.kind == "get_caption"
                   and r.node)]
        return caption_seconds(self.runtime, ctx, nodes)
