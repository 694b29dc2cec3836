"""A video's bytes (with HTTP range requests, for seeking), its node thumbnails, and a
job's self-contained HTML export; the dashboard serves the same through its cookie."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy.orm import Session

from app.api.deps import ApiState, State, Tenant, UoW
from app.api.errors import error_responses
from app.api.schemas import ThumbnailsPublic
from app.errors import NotFound
from app.services import thumbnails, videos
from app.services.job_export import export_job_html

router = APIRouter(tags=["videos"])

AUTH_ERRORS = (401, 422, 429, 500)
# Browsers play these; anything else is served as bytes to download.
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
               ".webm": "video/webm", ".mkv": "video/x-matroska", ".ogv": "video/ogg"}
_NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def video_file(state: ApiState, tenant_id: uuid.UUID, video_id: uuid.UUID) -> FileResponse:
    """The tenant's video file; ``Range`` requests get 206 partial content (Starlette's
    ``FileResponse``: single and multiple ranges, ``If-Range``, 416 past the end)."""
    with state.runtime.session_factory() as session:
        video = videos.get_video(session, tenant_id, video_id)
        path = Path(video.storage_path)
    if not path.is_file():
        raise NotFound("the video's file is gone", code="video_file_missing",
                       details={"video_id": str(video_id)})
    return FileResponse(path, media_type=VIDEO_TYPES.get(path.suffix.lower(),
                                                         "application/octet-stream"),
                        headers={**_NOSNIFF, "Cache-Control": "private, max-age=3600"})


def _sprite(state: ApiState, tenant_id: uuid.UUID, video_id: uuid.UUID
            ) -> thumbnails.Sprite:
    runtime = state.runtime
    with runtime.session_factory() as session:
        video = videos.get_video(session, tenant_id, video_id)
        sprite = thumbnails.video_sprite(runtime.settings, runtime.tree_config, video)
    if sprite is None:
        raise NotFound("the video has no thumbnails yet (it is not ingested, or its frames "
                       "could not be read)", code="thumbnails_not_ready",
                       details={"video_id": str(video_id)})
    return sprite


def thumbnail_layout(state: ApiState, tenant_id: uuid.UUID, video_id: uuid.UUID,
                     sprite_url: str) -> dict[str, Any]:
    """Where each node's tile is in the sprite (made now if the video has none yet)."""
    return {**_sprite(state, tenant_id, video_id).layout, "sprite": sprite_url}


def sprite_file(state: ApiState, tenant_id: uuid.UUID, video_id: uuid.UUID) -> FileResponse:
    return FileResponse(_sprite(state, tenant_id, video_id).path, media_type="image/jpeg",
                        headers={**_NOSNIFF, "Cache-Control": "private, max-age=3600"})


def export_response(state: ApiState, session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID
                    ) -> HTMLResponse:
    runtime = state.runtime
    page = export_job_html(session, runtime.settings, runtime.tree_config, tenant_id, job_id)
    return HTMLResponse(page, headers={
        **_NOSNIFF, "Content-Disposition": f'attachment; filename="vidnav-job-{job_id}.html"',
        "Cache-Control": "no-store"})


_VIDEO_BYTES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole file", "content": {"video/mp4": {}}},
    206: {"description": "The requested byte range(s) (`Range: bytes=...`)"},
    416: {"description": "The range lies outside the file"},
}


@router.get("/v1/videos/{video_id}/content", summary="The video's bytes (range requests)",
            response_class=FileResponse,
            responses={**_VIDEO_BYTES, **error_responses(404, *AUTH_ERRORS)})
def get_video_content(video_id: uuid.UUID, tenant: Tenant, state: State) -> Response:
    return video_file(state, tenant.tenant_id, video_id)


@router.get("/v1/videos/{video_id}/thumbnails", summary="The node thumbnails' layout",
            response_model=ThumbnailsPublic, responses=error_responses(404, *AUTH_ERRORS))
def get_thumbnails(video_id: uuid.UUID, tenant: Tenant, state: State) -> dict[str, Any]:
    """One sprite of ``width**3`` tiles (a picture per leaf, in time order, ``columns`` per
    row, each ``tile_width`` x ``tile_height``); ``nodes`` gives each node's tile (a higher
    node shows the leaf at its middle). Made at ingest."""
    return thumbnail_layout(state, tenant.tenant_id, video_id,
                            f"/v1/videos/{video_id}/thumbnails.jpg")


@router.get("/v1/videos/{video_id}/thumbnails.jpg", summary="The node thumbnails' sprite",
            response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}},
                       **error_responses(404, *AUTH_ERRORS)})
def get_thumbnail_sprite(video_id: uuid.UUID, tenant: Tenant, state: State) -> Response:
    return sprite_file(state, tenant.tenant_id, video_id)


# response_class=Response, not HTMLResponse: FastAPI documents the error responses in the
# route class's media type, and errors here are JSON like everywhere else.
@router.get("/v1/jobs/{job_id}/export", summary="The job as one self-contained HTML page",
            tags=["jobs"], response_class=Response,
            responses={200: {"content": {"text/html": {"schema": {"type": "string"}}},
                             "description": "An HTML page (a download)"},
                       **error_responses(404, *AUTH_ERRORS)})
def export_job(job_id: uuid.UUID, tenant: Tenant, uow: UoW, state: State) -> Response:
    """The job page without the player: timeline with thumbnails, rounds, answer, cost and
    score, everything inlined; it loads nothing from the network."""
    return export_response(state, uow.session, tenant.tenant_id, job_id)
