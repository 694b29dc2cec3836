"""Plain factory functions for rows the tests and benchmarks need."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Tenant, Video


def add_uploaded_video(sessions: sessionmaker[Session], path: Path, mode: str, *,
                       tenant_name: str | None = None) -> uuid.UUID:
    """A new tenant and a committed ``uploaded`` video row of ``path``, as an upload leaves it."""
    data = path.read_bytes()
    with sessions() as session:
        tenant = Tenant(name=tenant_name or f"tenant-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
        session.flush()
        video = Video(tenant_id=tenant.id, sha256=hashlib.sha256(data).hexdigest(),
                      original_name=path.name, size_bytes=len(data), storage_path=str(path),
                      caption_mode=mode)
        session.add(video)
        session.commit()
        return video.id
