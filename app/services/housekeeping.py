"""Files nothing owns: what a process killed mid-upload leaves on disk.

An upload streams into ``data_dir/uploads/<random>.part`` and, once probed, moves to
``videos/<id>/`` just before its row commits; a process killed in between leaves the part
file, or a folder with no row. ``sweep_stale_uploads`` removes those untouched for
``VIDNAV_UPLOAD_STALE_S`` (a live upload writes its part file continuously, and a folder
whose row is being committed is seconds old). The reconciler runs it with each pass.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Video
from app.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Swept:
    part_files: list[Path] = field(default_factory=list)
    orphan_folders: list[Path] = field(default_factory=list)


def _stale(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def sweep_stale_uploads(settings: Settings, sessions: sessionmaker[Session]) -> Swept:
    """Remove part files and row-less video folders older than ``upload_stale_s``."""
    swept = Swept()
    cutoff = time.time() - settings.upload_stale_s
    uploads = settings.data_dir / "uploads"
    if uploads.is_dir():
        for part in uploads.glob("*.part"):
            if _stale(part, cutoff):
                part.unlink(missing_ok=True)
                swept.part_files.append(part)
    folders: dict[uuid.UUID, Path] = {}
    if settings.videos_dir.is_dir():
        for folder in settings.videos_dir.iterdir():
            try:
                video_id = uuid.UUID(folder.name)
            except ValueError:
                continue
            if folder.is_dir() and _stale(folder, cutoff):
                folders[video_id] = folder
    if folders:
        with sessions() as session:
            known = set(session.scalars(select(Video.id).where(Video.id.in_(list(folders)))))
        for video_id, folder in folders.items():
            if video_id not in known:
                shutil.rmtree(folder, ignore_errors=True)
                swept.orphan_folders.append(folder)
    if swept.part_files or swept.orphan_folders:
        logger.warning("removed %d stale partial uploads and %d video folders without a row",
                       len(swept.part_files), len(swept.orphan_folders))
    return swept
