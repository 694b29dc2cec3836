"""``vidnav eval needle`` / ``report`` / ``run`` from the command line: files made, bad
input refused with exit code 2 (no model, no database needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.media.videogen import ffmpeg_lavfi

REPO = Path(__file__).resolve().parents[3]


def _vidnav(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDNAV_")}
    env["VIDNAV_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run([sys.executable, "-m", "app.cli", "eval", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_needle_then_bad_runs_and_reports(tmp_path: Path) -> None:
    filler = ffmpeg_lavfi(tmp_path / "grey.mp4", "-f", "lavfi", "-i",
                          "color=c=gray:s=160x90:r=10:d=12", "-c:v", "libx264")
    made = _vidnav(tmp_path, "needle", "--out", str(tmp_path / "n"), "--cards", "2",
                   "--filler", str(filler), "--length", "20", "--length", "30")
    assert made.returncode == 0, made.stderr
    rows = json.loads((tmp_path / "n" / "cgbench.json").read_text())
    assert [r["duration"] for r in rows] == [20.0, 30.0]
    assert sorted(p.name for p in (tmp_path / "n" / "videos").iterdir()) == [
        "needle_000.mp4", "needle_001.mp4"]
    nothing = _vidnav(tmp_path, "needle", "--out", str(tmp_path / "m"), "--filler",
                      str(filler), "--length", "20")
    assert nothing.returncode == 2 and "invalid_eval_item" in nothing.stderr
    unknown = _vidnav(tmp_path, "run", "nosuchbench", str(tmp_path / "n" / "cgbench.json"),
                      "--out", str(tmp_path / "r.jsonl"))
    assert unknown.returncode == 2 and "unknown_benchmark" in unknown.stderr
    empty = _vidnav(tmp_path, "report", str(tmp_path / "r.jsonl"))
    assert empty.returncode == 2 and "empty_run" in empty.stderr
    export = _vidnav(tmp_path, "export", str(tmp_path / "r.jsonl"))
    assert export.returncode == 2 and "nothing_to_export" in export.stderr
