"""Making videos out of videos (for evaluation benchmarks): pieces of local files and
generated title cards, scaled to one size and frame rate and joined in one ffmpeg run.

Only vidnav's own benchmark generator calls this, on files its user named; the inputs
still go through ``input_args`` (the ``file`` protocol and the container whitelist).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.media.ffmpeg import find_ffmpeg, input_args, media_error, run_tool

_SAFE_TEXT = re.compile(r"^[A-Za-z0-9 ,.?!-]*$")
AUDIO_RATE = 16000


@dataclass(frozen=True, slots=True)
class Piece:
    """``seconds`` of ``source`` from ``start`` (with or without sound); or, with no
    source, a black card showing ``text``."""

    seconds: float
    source: Path | None = None
    start: float = 0.0
    has_audio: bool = True
    text: str = ""


def compose(pieces: Sequence[Piece], dest: Path, *, width: int = 320, height: int = 180,
            fps: float = 10.0, timeout_s: float = 1800.0) -> None:
    """Write ``dest`` (H.264 + AAC mono) as the pieces played one after another."""
    if not pieces:
        raise media_error("nothing_to_compose", "no pieces to put together")
    args: list[str] = [str(find_ffmpeg()), "-hide_banner", "-nostdin", "-y", "-v", "error"]
    chains: list[str] = []
    labels: list[str] = []
    index = 0
    for k, piece in enumerate(pieces):
        seconds = f"{piece.seconds:.3f}"
        if piece.source is None:
            if not _SAFE_TEXT.match(piece.text):
                raise media_error("bad_card_text", "card text: letters, digits, spaces and "
                                  ",.?!- only")
            args += ["-f", "lavfi", "-t", seconds, "-i",
                     f"color=c=black:s={width}x{height}:r={fps:g}"]
            lines = [line for line in piece.text.split("  ") if line] or [" "]
            draw = ",".join(
                f"drawtext=text='{line}':fontcolor=white:fontsize={max(12, height // 9)}:"
                f"x=(w-text_w)/2:y=(h-text_h)/2+{(i - (len(lines) - 1) / 2) * height / 6:.0f}"
                for i, line in enumerate(lines))
            video = f"[{index}:v]{draw},"
            index += 1
            audio_input = None
        else:
            args += ["-t", seconds, *input_args(piece.source, seek_s=piece.start)]
            video = f"[{index}:v]"
            audio_input = index if piece.has_audio else None
            index += 1
        if audio_input is None:
            args += ["-f", "lavfi", "-t", seconds, "-i",
                     f"anullsrc=r={AUDIO_RATE}:cl=mono"]
            audio_input = index
            index += 1
        chains.append(
            f"{video}scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,fps={fps:g},format=yuv420p,setsar=1,"
            f"setpts=PTS-STARTPTS[v{k}]")
        chains.append(f"[{audio_input}:a]aresample={AUDIO_RATE},aformat=channel_layouts=mono,"
                      f"apad,atrim=0:{seconds},asetpts=PTS-STARTPTS[a{k}]")
        labels.append(f"[v{k}][a{k}]")
    graph = ";".join(chains) + ";" + "".join(labels) + f"concat=n={len(pieces)}:v=1:a=1[v][a]"
    dest.parent.mkdir(parents=True, exist_ok=True)
    args += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
             "-preset", "ultrafast", "-crf", "30", "-c:a", "aac", "-b:a", "48k",
             "-movflags", "+faststart", str(dest)]
    result = run_tool(args, timeout_s=timeout_s, max_stdout=1 << 16, what="composing a video")
    if result.returncode != 0:
        raise media_error("compose_failed", f"ffmpeg could not compose {dest.name}: "
                          f"{result.stderr.strip()[-400:]}")
