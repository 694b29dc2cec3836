"""Small generated videos whose frames show their own index (12 bits as a 4x3 block grid).

The pattern survives lossy coding and heavy downscaling, so a test can decode any frame
it gets back and check it is the frame it asked for.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

GRID_COLS = 4
GRID_ROWS = 3
BITS = GRID_COLS * GRID_ROWS


def index_image(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose block grid spells ``index`` in binary (white = 1)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            row, col = divmod(bit, GRID_COLS)
            y0, y1 = row * height // GRID_ROWS, (row + 1) * height // GRID_ROWS
            x0, x1 = col * width // GRID_COLS, (col + 1) * width // GRID_COLS
            image[y0:y1, x0:x1] = 255
    return image


def read_index(image: np.ndarray) -> int:
    """The index a frame from ``index_image`` shows (sampled at each block's centre)."""
    height, width = image.shape[:2]
    gray = image.mean(axis=2)
    value = 0
    for bit in range(BITS):
        row, col = divmod(bit, GRID_COLS)
        y = int((row + 0.5) * height / GRID_ROWS)
        x = int((col + 0.5) * width / GRID_COLS)
        if gray[y, x] > 128:
            value |= 1 << bit
    return value


def make_indexed_video(
    path: Path, *, num_frames: int, fps: float = 25.0, size: tuple[int, int] = (160, 120),
    codec: Sequence[str] = ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                            "-g", "25", "-bf", "2", "-pix_fmt", "yuv420p"),
    pts_expr: str | None = None, audio: bool = False, extra: Sequence[str] = (),
) -> Path:
    """Encode ``num_frames`` index frames with ffmpeg; ``pts_expr`` (a setpts expression)
    makes variable frame rates; ``extra`` goes before the output name."""
    width, height = size
    frames = b"".join(index_image(i, width, height).tobytes() for i in range(num_frames))
    args = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "pipe:0"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={num_frames / fps:.3f}",
                 "-c:a", "aac", "-shortest"]
    if pts_expr:
        args += ["-vf", f"setpts={pts_expr}", "-fps_mode", "passthrough"]
    args += [*codec, *extra, str(path)]
    subprocess.run(args, input=frames, check=True, capture_output=True, timeout=120)
    return path


def ffmpeg_lavfi(path: Path, *inputs_and_options: str) -> Path:
    """Run ``ffmpeg -y <args> path`` for one-off fixtures (audio-only files, images)."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs_and_options, str(path)],
                   check=True, capture_output=True, timeout=120)
    return path
