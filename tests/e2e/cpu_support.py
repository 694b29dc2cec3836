"""Helpers for the CPU-profile end-to-end tests: the ``vidnav`` command in a fresh data
directory, and where the stored transcript says something."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def vidnav_env(data_dir: Path) -> dict[str, str]:
    """The environment of a newcomer's machine: embedded default, CPU profile, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDNAV_")}
    env.update(VIDNAV_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    return env


def vidnav(data_dir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the ``vidnav`` command as a user would."""
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO,
                          env=vidnav_env(data_dir), capture_output=True, text=True,
                          timeout=timeout, check=False)


def said_at(data_dir: Path, words: str) -> tuple[float, float]:
    """(start, end) of the stored transcript line containing ``words`` (read from SQLite)."""
    with sqlite3.connect(f"file:{data_dir / 'vidnav.db'}?mode=ro", uri=True) as db:
        rows = db.execute("select source, lines from subtitles").fetchall()
    for source, lines in rows:
        assert source == "transcript"
        for start, end, text in json.loads(lines):
            if words.lower() in text.lower():
                return float(start), float(end)
    raise AssertionError(f"nobody says {words!r} in the stored transcript")


def overlaps(step_start: float | None, step_end: float | None, span: tuple[float, float]
             ) -> bool:
    if step_start is None or step_end is None:
        return False
    return step_start <= span[1] and span[0] <= step_end
