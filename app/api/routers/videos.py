"""``/v1/videos``: upload (streaming), list, read, delete; subtitles; questions."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.api.deps import State, Tenant, UoW
from app.api.errors import error_responses
from app.api.schemas import (
    JobPublic,
    QuestionCreate,
    SubtitlePublic,
    TreePublic,
    VideoDetail,
    VideoList,
    VideoPublic,
)
from app.db.models import VideoStatus
from app.media.subtitles import MAX_SUBTITLE_BYTES
from app.services import jobs, subtitles, videos
from app.services.jobs import QuestionInput
from app.services.videos import UploadTooLarge
from app.settings import CAPTION_MODES

router = APIRouter(prefix="/v1/videos", tags=["videos"])

AUTH_ERRORS = (401, 422, 429, 500)
# Multipart framing around the file part is small; a declared length beyond the limit by
# more than this cannot fit and is refused before a byte is read.
MULTIPART_SLACK_BYTES = 1 << 20
# Request bodies of these routes for ``app.api.middleware.RequestBodyLimit`` (other routes
# take JSON of at most its default); the upload streams and limits its body itself.
BODY_LIMITS: tuple[tuple[str, re.Pattern[str], int | None], ...] = (
    ("POST", re.compile(r"/v1/videos/?"), None),
    ("POST", re.compile(r"/v1/videos/[^/]+/subtitles/?"),
     MAX_SUBTITLE_BYTES + MULTIPART_SLACK_BYTES),
)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": "The video file"},
                        "caption_mode": {"type": "string", "enum": list(CAPTION_MODES),
                                         "description": "When to caption (default: server's)"},
                    },
                }
            }
        },
    }
}


@router.post(
    "", status_code=201, response_model=VideoPublic, summary="Upload a video",
    responses={
        200: {"model": VideoPublic, "description": "The same content was uploaded before"},
        **error_responses(400, 413, 415, 503, 507, *AUTH_ERRORS),
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_video(request: Request, tenant: Tenant, uow: UoW, state: State) -> Response:
    """Stream a video to disk (hashing it on the way), probe it and queue its ingest.

    Uploading the same bytes again returns the existing video with 200.
    """
    runtime = state.runtime
    settings = runtime.settings

    def limit() -> videos.UploadLimit:
        with runtime.session_factory() as session:
            return videos.upload_limit(session, tenant.tenant_id, tenant.upload_quota_bytes,
                                       settings)

    upload_limit = await run_in_threadpool(limit)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and (
        int(declared) > upload_limit.max_bytes + MULTIPART_SLACK_BYTES
    ):
        raise UploadTooLarge(upload_limit.message, code=upload_limit.code,
                             details={"limit_bytes": upload_limit.max_bytes})
    # Concurrent uploads of one tenant (in any API process) share its quota as they stream.
    upload_id = uuid.uuid4().hex
    reservations = state.uploads

    def progress(size: int) -> None:
        upload_limit.check_in_flight(size, reservations.update(tenant.tenant_id, upload_id, size))

    def release() -> None:
        reservations.release(tenant.tenant_id, upload_id)

    try:
        received = await videos.receive_upload(
            request.stream(), request.headers.get("content-type"), settings.data_dir / "uploads",
            upload_limit, value_fields=("caption_mode",), on_progress=progress,
        )
    except BaseException:
        # Called inline, not awaited: on a client disconnect the task is being cancelled and
        # an await here would never run it (one quick Redis call).
        release()
        raise
    # Until the video row is committed (or rolled back), its bytes still count as in flight.
    uow.after_commit(release)
    uow.on_rollback(release)
    try:
        mode = videos.parse_caption_mode(received.fields.get("caption_mode"), settings)
    except BaseException:
        received.discard()
        raise
    video, created = await run_in_threadpool(
        videos.register_upload, uow.session, tenant.tenant_id, received, settings=settings,
        tree_config=runtime.tree_config, caption_mode=mode, on_rollback=uow.on_rollback,
    )
    if created:
        video_id = video.id
        uow.after_commit(lambda: runtime.queue.enqueue_ingest(video_id))
    body = VideoPublic.of(video).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if created else 200)


@router.get("", response_model=VideoList, summary="List videos",
            responses=error_responses(*AUTH_ERRORS))
def list_videos(
    tenant: Tenant, uow: UoW, status: VideoStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> VideoList:
    rows = videos.list_videos(uow.session, tenant.tenant_id, status=status, limit=limit + 1,
                              offset=offset)
    more = len(rows) > limit
    return VideoList(items=[VideoPublic.of(v) for v in rows[:limit]],
                     next_offset=offset + limit if more else None)


@router.get("/{video_id}", response_model=VideoDetail, summary="Get a video",
            responses=error_responses(404, *AUTH_ERRORS))
def get_video(video_id: uuid.UUID, tenant: Tenant, uow: UoW, state: State) -> VideoDetail:
    """Status, probe metadata, caption progress and the top level of the caption tree."""
    video = videos.get_video(uow.session, tenant.tenant_id, video_id)
    tree = videos.top_level_tree(uow.session, video, state.runtime.tree_config)
    return VideoDetail(**VideoPublic.of(video).model_dump(), probe=video.probe,
                       tree=TreePublic.model_validate(tree))


@router.delete("/{video_id}", status_code=204, summary="Delete a video",
               responses=error_responses(404, *AUTH_ERRORS))
def delete_video(video_id: uuid.UUID, tenant: Tenant, uow: UoW, state: State) -> Response:
    """Delete the video, its file, subtitles, jobs and (unless shared) its captions."""
    videos.delete_video(uow.session, tenant.tenant_id, video_id, state.runtime.settings,
                        uow.after_commit)
    reader = state.job_reader
    if reader is not None:
        # Its jobs are gone: drop cached job bodies now rather than on their notifications.
        uow.after_commit(reader.forget)
    return Response(status_code=204)


@router.post("/{video_id}/subtitles", status_code=201, response_model=SubtitlePublic,
             summary="Attach subtitles (SRT or WebVTT)",
             responses=error_responses(400, 404, 413, 415, *AUTH_ERRORS))
def add_subtitles(
    video_id: uuid.UUID, tenant: Tenant, uow: UoW,
    file: Annotated[UploadFile, File(description="An .srt or .vtt file")],
    language: Annotated[str | None, Form(pattern=r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8}){0,2}$",
                                         description="A language tag, e.g. en or pt-BR")] = None,
    format: Annotated[str | None, Form(pattern="^(srt|vtt|webvtt)$",
                                       description="Overrides the file name's extension")] = None,
) -> SubtitlePublic:
    data = file.file.read(MAX_SUBTITLE_BYTES + 1)
    row = subtitles.add_subtitles(
        uow.session, tenant.tenant_id, video_id, data, format or file.filename or "",
        language=language or None,
    )
    return SubtitlePublic.of(row)


@router.get("/{video_id}/subtitles", response_model=list[SubtitlePublic],
            summary="List a video's subtitles", responses=error_responses(404, *AUTH_ERRORS))
def list_subtitles(video_id: uuid.UUID, tenant: Tenant, uow: UoW) -> list[SubtitlePublic]:
    rows = subtitles.list_subtitles(uow.session, tenant.tenant_id, video_id)
    return [SubtitlePublic.of(r) for r in rows]


@router.post(
    "/{video_id}/questions", status_code=202, response_model=JobPublic,
    summary="Ask a question about a video",
    responses={
        200: {"model": JobPublic, "description": "A retry with the same Idempotency-Key"},
        **error_responses(400, 404, 409, 413, *AUTH_ERRORS),
    },
)
def ask_question(
    video_id: uuid.UUID, body: QuestionCreate, tenant: Tenant, uow: UoW, state: State,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200,
                                                  pattern=r"^[\x21-\x7e]+$")] = None,
) -> Response:
    """Queue a job answering the question; it waits for captions if the video is not ready."""
    runtime = state.runtime
    question = QuestionInput(
        question=body.question, options=tuple(body.options) if body.options else None,
        budgets=body.budgets.model_dump(exclude_none=True) if body.budgets else None,
        callback_url=str(body.callback_url) if body.callback_url else None,
        reference=body.reference.model_dump(mode="json") if body.reference else None,
    )
    job, created = jobs.create_job(uow.session, tenant.tenant_id, video_id, question,
                                   runtime.settings, idempotency_key=idempotency_key)
    if created:
        job_id = job.id
        uow.after_commit(lambda: runtime.queue.enqueue_navigate(job_id))
    return JSONResponse(JobPublic.of(job).model_dump(mode="json"),
                        status_code=202 if created else 200)
