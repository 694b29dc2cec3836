"""Thumbnail sprites: many small pictures of a video tiled into one JPEG.

One image per tree leaf, in time order, left to right and top to bottom; a page shows a
node's picture by offsetting the sprite to its tile, so a whole timeline costs one request.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from app.media.ffmpeg import media_error

SPRITE_QUALITY = 75


def compose_sprite(tiles: Sequence[np.ndarray], columns: int, *,
                   quality: int = SPRITE_QUALITY) -> bytes:
    """A JPEG of ``tiles`` (RGB uint8, all the same size) in rows of ``columns``; the last
    row is padded with black."""
    if not tiles:
        raise media_error("invalid_frame_request", "a sprite needs at least one tile")
    if columns < 1:
        raise media_error("invalid_frame_request", f"columns must be positive, not {columns}")
    height, width = tiles[0].shape[:2]
    for tile in tiles:
        if tile.dtype != np.uint8 or tile.shape != (height, width, 3):
            raise media_error("invalid_frame_request",
                              f"sprite tiles must be {height}x{width} RGB uint8, "
                              f"got {tile.dtype} {tile.shape}")
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    sheet = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        row, col = divmod(i, columns)
        sheet[row * height:(row + 1) * height, col * width:(col + 1) * width] = tile
    buffer = io.BytesIO()
    Image.fromarray(sheet, mode="RGB").save(buffer, format="JPEG", quality=quality,
                                            optimize=True)
    return buffer.getvalue()
