"""Server-sent events for a job: persisted rounds first, then live ones, then the result.

The stream subscribes to the event bus before reading the database, so no round can fall
between the two; bus events only wake the stream, which reads rounds from the database
(the source of truth) and skips indexes it has sent, so replayed and live rounds never
repeat. A periodic poll covers a bus that drops messages. When a redelivered job starts
over (its ``attempts`` changes after rounds were sent), a ``restarted`` event tells the
client to drop what it has, and the new attempt's rounds follow from index 0.

Events are framed by sse-starlette (``ServerSentEvent``). Its ``EventSourceResponse`` is
not used: it pings on a timer of its own, while this stream sends a keep-alive only after
``heartbeat_s`` without anything else, from the same loop that replays and follows rounds.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread
from sse_starlette.event import ServerSentEvent

from app.api.schemas import JobPublic, TraceRoundPublic
from app.db.models import FINISHED_JOB_STATUSES, Job, TraceStep
from app.services import jobs
from app.services.runtime import Runtime


def format_event(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    """One event: ``id`` (when given), ``event`` and compact JSON ``data`` lines."""
    return ServerSentEvent(
        json.dumps(data, separators=(",", ":")), event=event,
        id=None if event_id is None else str(event_id), sep="\n",
    ).encode().decode()


KEEP_ALIVE = ServerSentEvent(comment="keep-alive", sep="\n").encode().decode()


async def job_events(
    runtime: Runtime, tenant_id: uuid.UUID, job_id: uuid.UUID, *, after: int = -1,
    heartbeat_s: float = 15.0, poll_s: float = 1.0,
) -> AsyncIterator[str]:
    """The SSE text of a job's rounds with index > ``after``, then its ``result`` event."""

    def load(last: int) -> tuple[list[TraceStep], Job | None]:
        with runtime.session_factory() as session:
            job = session.get(Job, job_id)
            if job is None or job.tenant_id != tenant_id:
                return [], None
            return list(jobs.trace_steps(session, job_id, after=last)), job

    last = after
    last_sent = time.monotonic()
    attempt: int | None = None
    async with runtime.events.subscribe(job_id) as subscription:
        while True:
            steps, job = await to_thread.run_sync(load, last)
            if job is not None and attempt is not None and job.attempts != attempt and last >= 0:
                # A redelivered job starts over and replaces its rounds: say so, then resend.
                attempt = job.attempts
                yield format_event("restarted", {"attempt": job.attempts})
                last = -1
                continue
            if job is not None:
                attempt = job.attempts
            for step in steps:
                yield format_event("round", TraceRoundPublic.of(step).model_dump(mode="json"),
                                   step.round_index)
                last = step.round_index
                last_sent = time.monotonic()
            if job is None:
                yield format_event("error", {"error": {
                    "code": "job_not_found", "message": "the job was deleted", "details": {}}})
                return
            if job.status in FINISHED_JOB_STATUSES:
                yield format_event("result", JobPublic.of(job).model_dump(mode="json"))
                return
            try:
                await asyncio.wait_for(anext(subscription), timeout=poll_s)
            except TimeoutError:
                if time.monotonic() - last_sent >= heartbeat_s:
                    yield KEEP_ALIVE
                    last_sent = time.monotonic()
