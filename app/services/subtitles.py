"""Subtitles uploaded for a video (SRT or WebVTT), stored as timed lines."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Subtitle
from app.errors import InvalidInput
from app.services.videos import get_video


def add_subtitles(
    session: Session, tenant_id: uuid.UUID, video_id: uuid.UUID, data: bytes,
    name_or_format: str, *, language: str | None = None,
) -> Subtitle:
    """Parse and attach a subtitle file; bad files raise MediaError ``bad_subtitles``."""
    from app.media.subtitles import parse_subtitles

    video = get_video(session, tenant_id, video_id)
    if language is not None and not (1 <= len(language) <= 20):
        raise InvalidInput("language must have 1 to 20 characters", code="invalid_language")
    lines = parse_subtitles(data, name_or_format)
    if not lines:
        raise InvalidInput("the subtitle file holds no cues", code="bad_subtitles")
    fmt = name_or_format.lower().rsplit(".", 1)[-1]
    row = Subtitle(
        video_id=video.id, source="upload", format="vtt" if fmt in ("vtt", "webvtt") else "srt",
        language=language,
        # Postgres JSON cannot hold NUL; a subtitle line never needs one.
        lines=[[line.start, line.end, line.text.replace("\x00", "")] for line in lines],
    )
    session.add(row)
    session.flush()
    return row


def list_subtitles(session: Session, tenant_id: uuid.UUID, video_id: uuid.UUID) -> list[Subtitle]:
    video = get_video(session, tenant_id, video_id)
    return list(session.scalars(
        select(Subtitle).where(Subtitle.video_id == video.id).order_by(Subtitle.created_at)
    ))
