"""Node thumbnails: one small picture per tree leaf, tiled into a sprite at ingest.

A medium or high node shows the leaf at its middle, so the sprite holds ``width**3``
tiles and a layout maps every node key to its tile. Both files live in the video's
folder (``videos_dir/<id>/thumbnails``), are written atomically, and go when the video is
deleted. A video ingested before thumbnails existed gets them on first request.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.tree import HIGH, LOW, MEDIUM, TreeConfig, VideoGeometry, node_key
from app.db.models import Video
from app.errors import VidnavError
from app.media.frames import FrameReader
from app.media.probe import VideoProbe
from app.media.thumbnails import compose_sprite
from app.services.captions import probe_from_dict
from app.settings import Settings

logger = logging.getLogger(__name__)

TILE_MAX_SIDE = 128
SPRITE_COLUMNS = 16
LAYOUT_VERSION = 1
SPRITE_NAME = "sprite.jpg"
LAYOUT_NAME = "layout.json"


@dataclass(frozen=True, slots=True)
class Sprite:
    """A video's thumbnail sprite on disk and where each node's tile is in it."""

    path: Path
    layout: dict[str, Any]  # tile_width, tile_height, columns, count, nodes {key: tile}


def thumbnails_dir(settings: Settings, video_id: uuid.UUID) -> Path:
    return settings.videos_dir / str(video_id) / "thumbnails"


def leaf_frames(geometry: VideoGeometry) -> list[int]:
    """The frame each leaf is pictured by: the middle of its frames (or its anchor frame
    when the leaf is empty)."""
    frames = []
    for leaf in geometry.iter_nodes(LOW):
        start, stop = geometry.frame_range(leaf)
        frames.append((start + stop - 1) // 2 if stop > start else geometry.anchor_frame(leaf))
    return frames


def sprite_layout(geometry: VideoGeometry, tile: tuple[int, int], columns: int
                  ) -> dict[str, Any]:
    """Tile positions: leaves in time order; a higher node takes the leaf at its middle."""
    tiles = {node_key(leaf): i for i, leaf in enumerate(geometry.iter_nodes(LOW))}
    nodes = dict(tiles)
    for level in (HIGH, MEDIUM):
        for node in geometry.iter_nodes(level):
            start, end = geometry.seconds(node)
            nodes[node_key(node)] = tiles[node_key(geometry.node_at((start + end) / 2, LOW))]
    return {"version": LAYOUT_VERSION, "tile_width": tile[0], "tile_height": tile[1],
            "columns": min(columns, len(tiles)), "count": len(tiles), "nodes": nodes}


def generate_thumbnails(settings: Settings, tree_config: TreeConfig, video_id: uuid.UUID,
                        path: str | os.PathLike[str], probe: VideoProbe) -> Sprite:
    """Decode one frame per leaf, tile them and store sprite and layout (replacing any)."""
    geometry = VideoGeometry(probe.num_frames, probe.fps, tree_config)
    reader = FrameReader(path, probe, timeout_s=settings.ffmpeg_timeout_s)
    try:
        images = reader.read(leaf_frames(geometry), TILE_MAX_SIDE)
    finally:
        reader.close()
    height, width = images[0].shape[:2]
    layout = sprite_layout(geometry, (width, height), SPRITE_COLUMNS)
    data = compose_sprite(images, layout["columns"])
    folder = thumbnails_dir(settings, video_id)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / SPRITE_NAME, data)
    _write_atomically(folder / LAYOUT_NAME, json.dumps(layout).encode())
    return Sprite(folder / SPRITE_NAME, layout)


def ensure_thumbnails(settings: Settings, tree_config: TreeConfig, video_id: uuid.UUID,
                      path: str | os.PathLike[str], probe: VideoProbe) -> Sprite | None:
    """The ingest step: make the sprite unless it is there. Thumbnails are a convenience,
    so a failure is logged and the video goes on without them."""
    geometry = VideoGeometry(probe.num_frames, probe.fps, tree_config)
    existing = stored_sprite(settings, video_id, geometry)
    if existing is not None:
        return existing
    try:
        return generate_thumbnails(settings, tree_config, video_id, path, probe)
    except (VidnavError, OSError, ValueError) as exc:
        logger.warning("thumbnails of video %s not made: %s", video_id, exc)
        return None


def stored_sprite(settings: Settings, video_id: uuid.UUID, geometry: VideoGeometry
                  ) -> Sprite | None:
    """The sprite on disk, if it is complete and matches this tree."""
    folder = thumbnails_dir(settings, video_id)
    try:
        layout = json.loads((folder / LAYOUT_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    sprite = folder / SPRITE_NAME
    if (not isinstance(layout, dict) or layout.get("version") != LAYOUT_VERSION
            or layout.get("count") != geometry.width ** 3 or not sprite.is_file()):
        return None
    return Sprite(sprite, layout)


def video_sprite(settings: Settings, tree_config: TreeConfig, video: Video) -> Sprite | None:
    """A probed video's sprite: stored, else made now; None while the video has no
    probe (not ingested yet) or when its frames cannot be read."""
    if not video.probe or not video.num_frames or not video.fps:
        return None
    geometry = VideoGeometry(video.num_frames, video.fps, tree_config)
    existing = stored_sprite(settings, video.id, geometry)
    if existing is not None:
        return existing
    probe = dataclasses.replace(probe_from_dict(video.probe), path=video.storage_path)
    return ensure_thumbnails(settings, tree_config, video.id, video.storage_path, probe)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
