"""Hostile files for the upload endpoint, made at test time from a real clip and ffmpeg.

Each ``Specimen`` says what a careful service does with it: ``refuse`` (a 4xx with one of
``codes``) or ``either`` (a harmless oddity: accepted with sane metadata, or refused with
a 4xx). Nothing here may ever get a 5xx or leave a row or a file behind when refused.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Expect = Literal["refuse", "either"]


@dataclass(frozen=True)
class Specimen:
    name: str
    filename: str
    data: bytes
    expect: Expect
    codes: frozenset[str] = frozenset()  # for "refuse": the error codes that are right
    statuses: frozenset[int] = frozenset({400, 413, 415})


def _ffmpeg(path: Path, *args: str) -> bytes:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(path)], check=True,
                   capture_output=True, timeout=120)
    return path.read_bytes()


def _y4m(width: int, height: int, rate: str, frames: int) -> bytes:
    """A raw YUV4MPEG2 stream; its header declares whatever it likes."""
    header = f"YUV4MPEG2 W{width} H{height} F{rate} Ip A1:1 C420jpeg\n".encode()
    frame = b"FRAME\n" + bytes(min(width * height * 3 // 2, 4096))
    return header + frame * frames


def _patched_box(data: bytes, box: bytes, field_offset: int, value: int) -> bytes:
    """``data`` with the 32-bit big-endian field at ``field_offset`` into ``box`` set."""
    out = bytearray(data)
    at = out.find(box)
    assert at > 0, box
    out[at + field_offset:at + field_offset + 4] = struct.pack(">I", value)
    return bytes(out)


def build_specimens(folder: Path, clip: bytes) -> list[Specimen]:
    """Every hostile upload, built once per session in ``folder`` from the real ``clip``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "clip.mp4"
    source.write_bytes(clip)
    faststart = _ffmpeg(folder / "fast.mp4", "-i", str(source), "-c", "copy",
                        "-movflags", "+faststart")
    png = _ffmpeg(folder / "still.png", "-f", "lavfi", "-i", "testsrc2=s=64x48:d=0.04",
                  "-frames:v", "1")
    jpeg = _ffmpeg(folder / "still.jpg", "-f", "lavfi", "-i", "testsrc2=s=64x48:d=0.04",
                   "-frames:v", "1")
    audio = _ffmpeg(folder / "voice.m4a", "-f", "lavfi", "-i", "sine=frequency=300:duration=2",
                    "-c:a", "aac")
    # Two frames five hours apart (a valid, very sparse video) and two frames seven hours
    # apart (longer than the six-hour limit, declared by its timestamps alone).
    gap_5h = _ffmpeg(folder / "gap5h.mkv", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=1:d=2",
                     "-vf", "setpts=N*18000/TB", "-fps_mode", "passthrough",
                     "-c:v", "libx264", "-preset", "ultrafast")
    gap_7h = _ffmpeg(folder / "gap7h.mkv", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=1:d=2",
                     "-vf", "setpts=N*25200/TB", "-fps_mode", "passthrough",
                     "-c:v", "libx264", "-preset", "ultrafast")
    # Two MPEG-TS files back to back: the clock jumps back to the start half-way.
    ts = _ffmpeg(folder / "clip.ts", "-i", str(source), "-c", "copy")
    backwards = ts + ts
    negative = _ffmpeg(folder / "negative.mp4", "-i", str(source), "-c", "copy",
                       "-output_ts_offset", "-3")
    elf = Path(sys.executable).resolve().read_bytes()[:65536]
    not_media = frozenset({"not_media", "no_video_stream", "unreadable_codec", "unsafe_input"})
    refuse = "refuse"
    return [
        # --- not video at all ---------------------------------------------------------------
        Specimen("text", "notes.mp4", b"meeting notes\n" * 500, refuse, not_media),
        Specimen("pdf", "report.mp4", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
                 refuse, not_media),
        Specimen("elf binary", "run.mp4", elf, refuse, not_media),
        Specimen("png renamed", "holiday.mp4", png, refuse, not_media),
        Specimen("jpeg renamed", "holiday.mov", jpeg, refuse, not_media),
        Specimen("audio only", "voice.mp4", audio, refuse, frozenset({"no_video_stream"})),
        Specimen("svg with script", "x.mp4",
                 b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                 refuse, not_media),
        Specimen("zip", "x.mp4", b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18),
                 refuse, not_media),
        # --- truncated and empty --------------------------------------------------------------
        Specimen("zero bytes", "empty.mp4", b"", refuse, frozenset({"not_media"})),
        Specimen("first 100 bytes", "head.mp4", clip[:100], refuse, not_media),
        Specimen("cut in half (index at the end)", "half.mp4", clip[: len(clip) // 2], refuse,
                 not_media),
        Specimen("faststart cut at 60%", "cut.mp4", faststart[: int(len(faststart) * 0.6)],
                 refuse, frozenset({"truncated"})),
        # --- polyglots --------------------------------------------------------------------------
        Specimen("HLS playlist bytes", "x.mp4",
                 b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n"
                 b"#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data\n#EXT-X-ENDLIST\n",
                 refuse, not_media),
        Specimen("HLS header before a real mp4", "x.mp4", b"#EXTM3U\n" + clip, "either",
                 not_media),
        Specimen("concat list", "x.mp4", b"ffconcat version 1.0\nfile '/etc/passwd'\n"
                 b"file 'subfile,,start,0,end,0,,:/etc/shadow'\n", refuse, not_media),
        Specimen("SDP (network streams)", "x.mp4",
                 b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
                 b"m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n", refuse, not_media),
        Specimen("PNG header before a real mp4", "x.mp4", png + clip, "either", not_media),
        Specimen("real mp4 with a zip appended", "x.mp4",
                 clip + b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18), "either"),
        Specimen("HTML then mp4", "x.mp4", b"<html><script>alert(1)</script></html>" + clip,
                 "either", not_media),
        # --- huge declared dimensions and durations --------------------------------------------
        Specimen("100000x100000 declared", "big.y4m", _y4m(100000, 100000, "25:1", 1), refuse,
                 frozenset({"dimensions_too_large"})),
        Specimen("10000x10000 declared", "big.y4m", _y4m(10000, 10000, "25:1", 1), refuse,
                 frozenset({"dimensions_too_large"})),
        Specimen("container duration of 49 days", "long.mp4",
                 _patched_box(clip, b"mvhd", 20, 0xFFFFFFF0), "either"),
        Specimen("seven hours between two frames", "gap.mkv", gap_7h, refuse,
                 frozenset({"video_too_long"})),
        # --- frame-rate and timestamp oddities ---------------------------------------------------
        Specimen("1,000,000 fps declared", "fast.y4m", _y4m(64, 48, "1000000:1", 3), "either",
                 not_media | {"unknown_duration"}),
        Specimen("0 fps declared", "zero.y4m", _y4m(64, 48, "0:1", 3), "either",
                 not_media | {"unknown_duration"}),
        Specimen("frame rate 1/0", "inf.y4m", _y4m(64, 48, "1:0", 3), "either",
                 not_media | {"unknown_duration"}),
        Specimen("sample durations of 2^31", "slow.mp4",
                 _patched_box(clip, b"stts", 16, 0x7FFFFFFF), "either",
                 not_media | {"unknown_duration", "video_too_long"}),
        Specimen("sample count of 2^31", "many.mp4",
                 _patched_box(clip, b"stts", 12, 0x7FFFFFFF), "either",
                 not_media | {"unknown_duration", "video_too_long", "truncated"}),
        Specimen("five hours between two frames", "gap.mkv", gap_5h, "either",
                 not_media | {"unknown_duration"}),
        Specimen("timestamps running backwards", "back.ts", backwards, "either",
                 not_media | {"unknown_duration"}),
        Specimen("negative start time", "neg.mp4", negative, "either", not_media),
    ]
