"""``/v1/jobs``: read, list (cursor pages), trace, live events, cancel, webhook deliveries."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import (
    BEARER_SECURITY,
    ApiState,
    State,
    Tenant,
    UoW,
    api_state,
    authenticate_request,
    read_only,
)
from app.api.errors import error_responses
from app.api.schemas import (
    JobList,
    JobPublic,
    TracePublic,
    TraceRoundPublic,
    WebhookDeliveryList,
    WebhookDeliveryPublic,
)
from app.api.sse import job_events
from app.db.models import JobStatus
from app.errors import NotFound
from app.services import jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

AUTH_ERRORS = (401, 422, 429, 500)
# One server-sent event (OpenAPI 3.1: the schema of an event stream describes each event).
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["round", "restarted", "result", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "round: a TraceRound; restarted: {attempt} (the job started "
                                "over: drop its rounds so far); result: a Job; error: an Error"},
        "id": {"type": "string", "description": "The round index (round events)"},
    },
}


@router.get("", response_model=JobList, summary="List jobs, newest first",
            responses=error_responses(400, *AUTH_ERRORS))
def list_jobs(
    tenant: Tenant, uow: UoW, status: JobStatus | None = None, video_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JobList:
    rows, next_cursor = jobs.list_jobs(uow.session, tenant.tenant_id, status=status,
                                       video_id=video_id, limit=limit, cursor=cursor)
    return JobList(items=[JobPublic.of(j) for j in rows], next_cursor=next_cursor)


async def job_body(request: Request, job_id: uuid.UUID) -> bytes:
    """The JSON body of ``GET /v1/jobs/{id}``, for the route below and for the fast path in
    ``app.api.fastpath`` that serves the same request without FastAPI's request machinery.

    What dashboards poll, so it resolves no dependencies (each costs CPU per request):
    authenticates itself, reads on the event loop where the database allows (from memory
    while the row is unchanged), and serialises the model once."""
    tenant = await authenticate_request(request)
    state = api_state(request)
    if state.job_reader is not None:
        body = await state.job_reader.get_job_body(tenant.tenant_id, job_id, _render_job)
        if body is None:
            raise NotFound("no such job", code="job_not_found", details={"job_id": str(job_id)})
        return body
    return await read_only(state, lambda session: JobPublic.of(
        jobs.get_job(session, tenant.tenant_id, job_id)).model_dump_json().encode())


@router.get("/{job_id}", response_model=JobPublic, summary="Get a job",
            responses=error_responses(404, 503, *AUTH_ERRORS), openapi_extra=BEARER_SECURITY)
async def get_job(job_id: uuid.UUID, request: Request) -> Response:
    return Response(await job_body(request, job_id), media_type="application/json")


def _render_job(row: dict[str, Any]) -> bytes:
    return JobPublic.of(SimpleNamespace(**row)).model_dump_json().encode()  # type: ignore[arg-type]


@router.get("/{job_id}/trace", response_model=TracePublic, summary="A job's rounds in order",
            responses=error_responses(404, *AUTH_ERRORS))
def get_trace(job_id: uuid.UUID, tenant: Tenant, uow: UoW) -> TracePublic:
    job = jobs.get_job(uow.session, tenant.tenant_id, job_id)
    steps = jobs.trace_steps(uow.session, job.id)
    return TracePublic(job_id=job.id, status=job.status,  # type: ignore[arg-type]
                       rounds=[TraceRoundPublic.of(s) for s in steps], summary=job.summary)


@router.get(
    "/{job_id}/events", summary="Live rounds and the result (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {"description": "`round` events (a TraceRound each, `id` = round index), then "
                             "one `result` event (a Job); `: keep-alive` comments between",
              "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}},
        **error_responses(404, *AUTH_ERRORS),
    },
)
def job_event_stream(
    job_id: uuid.UUID, tenant: Tenant, uow: UoW, state: State,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Rounds already done are replayed first; ``Last-Event-ID`` resumes after a round."""
    jobs.get_job(uow.session, tenant.tenant_id, job_id)
    return event_stream(state, tenant.tenant_id, job_id, last_event_id)


def event_stream(state: ApiState, tenant_id: uuid.UUID, job_id: uuid.UUID,
                 last_event_id: str | None) -> StreamingResponse:
    """The SSE response of a job the tenant was checked to own."""
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else -1
    stream = job_events(state.runtime, tenant_id, job_id, after=after,
                        heartbeat_s=state.sse_heartbeat_s, poll_s=state.sse_poll_s)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job",
             responses=error_responses(404, 409, *AUTH_ERRORS))
def cancel_job(job_id: uuid.UUID, tenant: Tenant, uow: UoW, state: State) -> JobPublic:
    """A queued job is cancelled at once; a running one stops after its current round."""
    job = jobs.cancel_job(uow.session, tenant.tenant_id, job_id)
    public = JobPublic.of(job)
    events = state.runtime.events
    uow.after_commit(lambda: events.publish(job_id, {"type": "status", "status": job.status}))
    if state.job_reader is not None:
        # Our own write: drop the cached body now rather than on its notification.
        uow.after_commit(lambda: state.job_reader.forget(job_id))  # type: ignore[union-attr]
    return public


@router.get("/{job_id}/webhooks", response_model=WebhookDeliveryList,
            summary="The job's webhook delivery log", responses=error_responses(404, *AUTH_ERRORS))
def list_webhook_deliveries(job_id: uuid.UUID, tenant: Tenant, uow: UoW) -> WebhookDeliveryList:
    job = jobs.get_job(uow.session, tenant.tenant_id, job_id)
    rows = jobs.webhook_deliveries(uow.session, job.id)
    return WebhookDeliveryList(items=[WebhookDeliveryPublic.of(r) for r in rows])
