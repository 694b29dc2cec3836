"""A long-video needle benchmark from any set of clips.

Each clip comes with its own questions (vidnav JSON lines: ``video`` the clip,
``question``, ``options``, ``answer``, optional ``clues`` in the clip's seconds). A long
video is made of filler (the filler videos played in turn) with one clip put in at a
random point; its questions are written CG-Bench-style (``cgbench.json``: ``video_uid``,
``qid``, ``question``, ``choices``, ``right_answer``, ``clue_intervals``, ``duration``),
the clue intervals shifted to where the clip landed (the whole clip when it named none).
``card_clips`` makes clips to hide: title cards with a word a question asks about.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.protocol import normalize_options
from app.errors import InvalidInput
from app.media.compose import Piece, compose
from app.media.probe import probe_video
from app.services.evaluation.items import LETTERS, BenchItem
from app.services.evaluation.readers import read_benchmark

WORDS = ("MANGO", "RIVER", "COPPER", "TULIP", "FALCON", "VIOLET", "BASALT", "CANYON",
         "EMBER", "GLACIER", "HARBOR", "JUNIPER", "LANTERN", "MEADOW", "ORCHID", "PEBBLE")


@dataclass(frozen=True)
class Clip:
    path: Path
    seconds: float
    has_audio: bool
    questions: tuple[BenchItem, ...]


def read_clips(question_files: list[Path]) -> list[Clip]:
    """The clips the question files name, each with its questions (checked first)."""
    by_video: dict[Path, list[BenchItem]] = defaultdict(list)
    for path in question_files:
        for item in read_benchmark("jsonl", path):
            by_video[item.video].append(item)
    clips = []
    for video, questions in by_video.items():
        probe = probe_video(video)
        clips.append(Clip(video, probe.duration_s, probe.has_audio, tuple(questions)))
    if not clips:
        raise InvalidInput("no clips with questions", code="invalid_eval_item")
    return clips


def card_clips(out_dir: Path, count: int, *, seconds: float = 12.0, seed: int = 0
               ) -> Path:
    """``count`` title-card clips ("The secret word is X") and their questions file."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in range(count):
        word = WORDS[n % len(WORDS)]
        clip = out_dir / f"card_{n:02d}.mp4"
        compose([Piece(seconds, text=f"The secret word is {word}")], clip)
        decoys = rng.sample([w for w in WORDS if w != word], 3)
        options = [word, *decoys]
        rng.shuffle(options)
        rows.append({"id": f"card_{n:02d}", "video": clip.name,
                     "question": "What is the secret word shown on screen?",
                     "options": [w.title() for w in options],
                     "answer": LETTERS[options.index(word)], "clues": [[0.0, seconds]],
                     "type": "needle"})
    questions = out_dir / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return questions


def build_needle(clips: list[Clip], fillers: list[Path], out_dir: Path, lengths: list[float],
                 *, seed: int = 0, width: int = 320, height: int = 180, fps: float = 10.0
                 ) -> Path:
    """One long video per length (seconds), clips hidden in turn; returns ``cgbench.json``."""
    if not fillers:
        raise InvalidInput("name at least one filler video", code="invalid_eval_item")
    if not lengths or min(lengths) <= 0:
        raise InvalidInput("lengths must be positive seconds", code="invalid_eval_item")
    filler_probes = [probe_video(path) for path in fillers]
    rng = random.Random(seed)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    cursor = [0, 0.0]  # which filler, and where in it the next filler piece starts
    for n, length in enumerate(lengths):
        clip = clips[n % len(clips)]
        padding = max(0.0, length - clip.seconds)
        offset = round(rng.uniform(0.0, padding), 1)
        pieces = [*_filler(filler_probes, cursor, offset),
                  Piece(clip.seconds, clip.path, has_audio=clip.has_audio),
                  *_filler(filler_probes, cursor, padding - offset)]
        uid = f"needle_{n:03d}"
        compose(pieces, out_dir / "videos" / f"{uid}.mp4", width=width, height=height, fps=fps)
        for k, item in enumerate(clip.questions):
            clues = item.clues or ((0.0, clip.seconds),)
            rows.append({
                "qid": f"{uid}_{k}", "video_uid": uid, "question": item.question,
                "choices": [o.split(". ", 1)[1] for o in normalize_options(item.options)],
                "right_answer": item.answer,
                "clue_intervals": [[round(offset + s, 3), round(offset + e, 3)]
                                   for s, e in clues],
                "duration": round(clip.seconds + padding, 3), "domain": "needle",
                "sub_category": item.task or clip.path.stem, "source_clip": clip.path.name,
            })
    path = out_dir / "cgbench.json"
    path.write_text(json.dumps(rows, indent=1), "utf-8")
    return path


def _filler(probes: list[Any], cursor: list[Any], seconds: float) -> list[Piece]:
    """``seconds`` of filler, continuing through the filler videos where the last ended."""
    pieces = []
    while seconds > 0.05:
        probe = probes[cursor[0]]
        left = probe.duration_s - cursor[1]
        if left <= 0.5:
            cursor[0], cursor[1] = (cursor[0] + 1) % len(probes), 0.0
            continue
        take = min(left, seconds)
        pieces.append(Piece(take, Path(probe.path), start=cursor[1], has_audio=probe.has_audio))
        cursor[1] += take
        seconds -= take
    return pieces
