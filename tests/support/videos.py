"""Generated test-pattern videos, cached under ``.cache/test-videos`` between runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

VIDEO_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "test-videos"


def make_video(seconds: int, *, fps: int = 2, size: str = "160x90") -> Path:
    """A generated test-pattern video with a moving box (cached between runs: it only
    depends on its parameters)."""
    VIDEO_CACHE.mkdir(parents=True, exist_ok=True)
    path = VIDEO_CACHE / f"testsrc-{seconds}s-{fps}fps-{size}.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
             "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
             "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps * 2),
             "-pix_fmt", "yuv420p", str(tmp)],
            check=True, capture_output=True, timeout=300,
        )
        tmp.rename(path)
    return path
