"""The needle generator with real ffmpeg: a clip lands where its clue intervals say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.errors import InvalidInput
from app.media.frames import FrameReader
from app.media.probe import probe_video
from app.services.evaluation.needle import build_needle, card_clips, read_clips
from app.services.evaluation.readers import read_benchmark
from tests.integration.media.videogen import ffmpeg_lavfi


def _brightness(video: Path, second: float) -> float:
    probe = probe_video(video)
    index = min(probe.num_frames - 1, int(second * probe.fps))
    (image,) = FrameReader(video, probe).read([index], 160)
    return float(np.asarray(image).mean())


def test_clips_land_where_their_clues_say(tmp_path: Path) -> None:
    # Filler: 20 s of bright white with no sound; the clip: a 3 s black title card.
    filler = ffmpeg_lavfi(tmp_path / "white.mp4", "-f", "lavfi", "-i",
                          "color=c=white:s=160x90:r=10:d=20", "-c:v", "libx264")
    questions = card_clips(tmp_path / "clips", 1, seconds=3.0)
    bench = build_needle(read_clips([questions]), [filler], tmp_path / "bench", [15.0, 30.0],
                         seed=3, width=160, height=90)
    rows = json.loads(bench.read_text())
    assert [r["video_uid"] for r in rows] == ["needle_000", "needle_001"]
    for row in rows:
        (start, end), = row["clue_intervals"]
        assert end - start == pytest.approx(3.0)
        video = tmp_path / "bench" / "videos" / f"{row['video_uid']}.mp4"
        assert probe_video(video).duration_s == pytest.approx(row["duration"], abs=0.3)
        assert _brightness(video, (start + end) / 2) < 60  # the card: black, some text
        outside = start - 1.0 if start > 1.5 else end + 1.0
        assert _brightness(video, outside) > 200  # the filler: white
        assert row["right_answer"] in "ABCD" and len(row["choices"]) == 4
    (item, _) = read_benchmark("cgbench", bench, tmp_path / "bench" / "videos")
    assert item.question == "What is the secret word shown on screen?"
    assert item.clues == tuple(tuple(c) for c in rows[0]["clue_intervals"])
    with pytest.raises(InvalidInput):
        build_needle(read_clips([questions]), [], tmp_path / "x", [10.0])
