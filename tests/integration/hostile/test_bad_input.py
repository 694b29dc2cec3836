"""Bad input through the API: hostile video files, multipart framing, file names, JSON bodies,
questions and subtitle files. Each gets a clear 4xx in the error shape, names no server path
and leaves no row, file or upload reservation behind; the few harmless oddities a careful
service may accept are accepted with sane metadata."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from app.db.models import Video
from app.media.subtitles import MAX_CUE_CHARS, MAX_CUES, MAX_CUES_AT_ONCE, MAX_SUBTITLE_BYTES
from tests.integration.hostile.conftest import Leftovers, assert_no_server_path, assert_refused
from tests.integration.hostile.specimens import Specimen

BOUNDARY = b"hostile-boundary-7f3a"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}"}


def part(data: bytes, *, name: bytes = b"file", filename: bytes | None = b"clip.mp4",
         headers: bytes = b"Content-Type: video/mp4\r\n") -> bytes:
    disposition = b'Content-Disposition: form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return b"--" + BOUNDARY + b"\r\n" + disposition + b"\r\n" + headers + b"\r\n" + data + b"\r\n"


END = b"--" + BOUNDARY + b"--\r\n"


async def post_raw(client: httpx.AsyncClient, headers: dict[str, str], body: bytes,
                   content_type: dict[str, str] | None = None) -> httpx.Response:
    return await client.post("/v1/videos", headers={**headers, **(content_type or MULTIPART)},
                             content=body)


def sane(video: dict[str, object], max_duration_s: float) -> bool:
    """Metadata a navigation can work with."""
    duration, fps, frames = video["duration_s"], video["fps"], video["num_frames"]
    return (isinstance(duration, float) and math.isfinite(duration)
            and 0 < duration <= max_duration_s and isinstance(fps, float)
            and math.isfinite(fps) and fps > 0 and isinstance(frames, int) and frames >= 1
            and isinstance(video["tree_width"], int) and 1 <= video["tree_width"] <= 16)


async def test_hostile_video_files_are_refused_or_harmless(
    client, tenant, runtime, leftovers: Leftovers, specimens: list[Specimen], tally,
) -> None:
    problems: list[str] = []
    accepted: list[str] = []
    max_duration = runtime.settings.max_video_duration_s
    for specimen in specimens:
        before = leftovers.footprint()
        response = await client.post(
            "/v1/videos", headers=tenant.headers,
            files={"file": (specimen.filename, specimen.data, "video/mp4")})
        if response.status_code in (200, 201) and specimen.expect == "either":
            tally.add("inputs_tried")
            tally.add("inputs_accepted")
            video = response.json()
            assert_no_server_path(response.text, runtime, tally)
            if not sane(video, max_duration):
                problems.append(f"{specimen.name}: accepted with metadata {video}")
            accepted.append(specimen.name)
            deleted = await client.delete(f"/v1/videos/{video['id']}", headers=tenant.headers)
            assert deleted.status_code == 204
            leftovers.assert_unchanged(before, tally, f"{specimen.name} (deleted)")
            continue
        try:
            assert_refused(response, runtime, tally, statuses=specimen.statuses,
                           codes=specimen.codes or None)
            leftovers.assert_unchanged(before, tally, specimen.name)
        except AssertionError as exc:
            problems.append(f"{specimen.name}: {exc}")
    assert not problems, "\n".join(problems)
    # The oddities that are valid videos really are accepted (the check is not vacuous).
    assert {"real mp4 with a zip appended", "negative start time"} <= set(accepted), accepted


async def test_probe_errors_name_no_server_path(client, tenant, runtime, tally) -> None:
    """ffmpeg names its input in its complaints; the answer must not (it once read
    ``file:<data dir>/uploads/<name>.part: Invalid data found…``)."""
    for data in (os.urandom(5000), b"", b"\x00\x00\x00\x18ftypmp42" + os.urandom(300)):
        response = await client.post("/v1/videos", headers=tenant.headers,
                                     files={"file": ("noise.mp4", data, "video/mp4")})
        error = assert_refused(response, runtime, tally, statuses={400},
                               codes={"not_media"})
        assert "uploads" not in response.text and ".part" not in response.text
        assert error["message"].startswith(("the file is not a readable video",
                                            "the video file is empty"))


async def test_video_detail_names_no_server_path(client, tenant, runtime, small_video,
                                                  tally) -> None:
    uploaded = await client.post("/v1/videos", headers=tenant.headers,
                                 files={"file": ("clip.mp4", small_video, "video/mp4")})
    assert uploaded.status_code == 201
    detail = await client.get(f"/v1/videos/{uploaded.json()['id']}", headers=tenant.headers)
    assert detail.status_code == 200
    probe = detail.json()["probe"]
    assert probe["codec"] == "h264" and "path" not in probe
    assert_no_server_path(detail.text, runtime, tally)


async def test_malformed_multipart_bodies(client, tenant, runtime, small_video, other_video,
                                          leftovers: Leftovers, tally) -> None:
    h = tenant.headers
    cases: list[tuple[str, bytes, dict[str, str] | None, set[str]]] = [
        ("no boundary parameter", part(small_video) + END,
         {"Content-Type": "multipart/form-data"}, {"invalid_multipart"}),
        ("empty boundary", part(small_video) + END,
         {"Content-Type": "multipart/form-data; boundary="}, {"invalid_multipart"}),
        ("other boundary in the body", part(small_video).replace(BOUNDARY, b"other") + END,
         None, {"invalid_multipart", "missing_file"}),
        ("no closing boundary", part(small_video)[:-2], None, {"invalid_multipart"}),
        ("body stops inside the file", part(small_video)[: len(small_video) // 2], None,
         {"invalid_multipart"}),
        ("random bytes", os.urandom(4096), None, {"invalid_multipart", "missing_file"}),
        ("no parts", END, None, {"missing_file"}),
        ("two file parts", part(small_video) + part(other_video) + END, None,
         {"invalid_multipart"}),
        ("file part without a name", part(small_video, filename=None, name=b"") + END, None,
         {"missing_file", "invalid_multipart"}),
        ("part without Content-Disposition",
         b"--" + BOUNDARY + b"\r\nContent-Type: video/mp4\r\n\r\n" + small_video + b"\r\n" + END,
         None, {"missing_file", "invalid_multipart"}),
        ("file name that is not UTF-8", part(small_video, filename=b"\xff\xfe\x80.mp4") + END,
         None, {"invalid_multipart"}),
        ("unterminated part header", b"--" + BOUNDARY + b"\r\nContent-Disposition: form-da",
         None, {"invalid_multipart", "missing_file"}),
        ("JSON instead of a form", b'{"file": "x"}', {"Content-Type": "application/json"},
         {"unsupported_media_type"}),
        ("plain text", small_video, {"Content-Type": "text/plain"}, {"unsupported_media_type"}),
        ("multipart/mixed", part(small_video) + END,
         {"Content-Type": f"multipart/mixed; boundary={BOUNDARY.decode()}"},
         {"unsupported_media_type"}),
        ("no content type", part(small_video) + END, {"Content-Type": ""},
         {"unsupported_media_type"}),
        ("caption mode not UTF-8", part(b"\xff\xfe", name=b"caption_mode", filename=None,
                                        headers=b"") + part(small_video) + END, None,
         {"invalid_caption_mode"}),
    ]
    for name, body, content_type, codes in cases:
        before = leftovers.footprint()
        response = await post_raw(client, h, body, content_type)
        assert_refused(response, runtime, tally, codes=codes)
        leftovers.assert_unchanged(before, tally, name)


async def test_hostile_file_names_are_only_names(client, tenant, runtime, small_video,
                                                 leftovers: Leftovers, tally) -> None:
    """The client's file name is shown, never used as a path: traversal, control characters,
    format strings and huge names all end as a bounded printable label."""
    names = [b"../../../../etc/passwd.mp4", b"..\\..\\windows\\win.ini.mp4",
             b"/absolute/clip.mp4", b"clip\x1b[31mred\x07.mp4", b"a\tb\x0bc.mp4",
             b"img%03d.png", b"concat:a.mp4|b.mp4", b"file:/etc/passwd", b"x" * 100_000,
             "вид\u202eeo.mp4".encode(), b"clip.mp4\x00.exe", b".mp4", b"\xc3\xa9t\xc3\xa9.MP4"]
    videos_dir = runtime.settings.videos_dir.resolve()
    for raw in names:
        before = leftovers.footprint()
        response = await post_raw(client, tenant.headers, part(small_video, filename=raw) + END)
        tally.add("inputs_tried")
        assert response.status_code == 201, (raw[:50], response.text[:300])
        tally.add("inputs_accepted")
        video = response.json()
        label = video["original_name"]
        assert 1 <= len(label) <= 500 and all(ch.isprintable() for ch in label), label[:80]
        with runtime.session_factory() as session:
            row = session.get(Video, uuid.UUID(video["id"]))
            assert row is not None
            stored = Path(row.storage_path).resolve()
        assert stored.parent == videos_dir / video["id"]
        assert stored.name.startswith("source.") and stored.read_bytes() == small_video
        assert (await client.delete(f"/v1/videos/{video['id']}", headers=tenant.headers)
                ).status_code == 204
        leftovers.assert_unchanged(before, tally, repr(raw[:40]))


async def test_bad_questions(client, tenant, video, runtime, leftovers: Leftovers, tally) -> None:
    url = f"/v1/videos/{video['id']}/questions"
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, str], bytes, set[int]]] = [
        ("100 KB question", json_type, b'{"question": "' + b"why " * 25_000 + b'"}', {422}),
        ("1,000 options", json_type, b'{"question": "q", "options": ['
         + b",".join(b'"o%d"' % i for i in range(1000)) + b"]}", {422}),
        ("an option of 5,000 characters", json_type,
         b'{"question": "q", "options": ["a", "' + b"b" * 5000 + b'"]}', {422}),
        ("an option over two lines", json_type, b'{"question": "q", "options": ["a\\nb", "c"]}',
         {400}),
        ("a blank option", json_type, b'{"question": "q", "options": [" ", "c"]}', {422}),
        ("invalid UTF-8", json_type, b'{"question": "\xff\xfe\xfd"}', {400, 422}),
        ("lone surrogate escape", json_type, b'{"question": "\\ud800"}', {400, 422}),
        ("NUL in the question", json_type, b'{"question": "a\\u0000b"}', {422}),
        ("not JSON", json_type, b"{question: ", {422}),
        ("JSON nested 100,000 deep", json_type, b"[" * 100_000 + b"]" * 100_000, {400, 422}),
        ("a 5,000-digit number", json_type,
         b'{"question": "q", "budgets": {"max_rounds": ' + b"9" * 5000 + b"}}", {400, 422}),
        ("NaN budget", json_type, b'{"question": "q", "budgets": {"max_rounds": NaN}}', {422}),
        ("budget of 10^9 rounds", json_type,
         b'{"question": "q", "budgets": {"max_rounds": 1000000000}}', {422}),
        ("unknown field", json_type, b'{"question": "q", "run_as": "admin"}', {422}),
        ("a list, not an object", json_type, b'["q"]', {422}),
        ("text/plain", {"Content-Type": "text/plain"}, b'{"question": "q"}', {422}),
        ("a form", {"Content-Type": "application/x-www-form-urlencoded"}, b"question=q", {422}),
        ("no body", json_type, b"", {422}),
        ("callback to a file URL", json_type,
         b'{"question": "q", "callback_url": "file:///etc/passwd"}', {422}),
        ("callback to the metadata service", json_type,
         b'{"question": "q", "callback_url": "http://169.254.169.254/latest"}', {400}),
        ("Idempotency-Key with a newline", {**json_type, "Idempotency-Key": "a b"},
         b'{"question": "q"}', {422}),
    ]
    for name, headers, body, statuses in cases:
        before = leftovers.footprint()
        response = await client.post(url, headers={**tenant.headers, **headers}, content=body)
        try:
            assert_refused(response, runtime, tally, statuses=statuses)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
        leftovers.assert_unchanged(before, tally, name)


async def test_oversized_bodies_are_cut_off_unread(client, tenant, video, runtime,
                                                   leftovers: Leftovers, tally) -> None:
    """A JSON body or subtitle file past its route's limit gets a 413 as soon as it passes
    the limit, before the server has read (or parsed) the rest."""
    sent = 0

    def body(head: bytes, filler: bytes, tail: bytes, repeat: int) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            sent = 0
            yield head
            for _ in range(repeat):
                sent += len(filler)
                yield filler
            yield tail
        return chunks()

    before = leftovers.footprint()
    filler = b"a" * 65536
    response = await client.post(  # 64 MiB of question, with no Content-Length to go by
        f"/v1/videos/{video['id']}/questions",
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=body(b'{"question": "', filler, b'"}', 1024))
    error = assert_refused(response, runtime, tally, statuses={413},
                           codes={"request_too_large"})
    assert error["details"]["limit_bytes"] < 1 << 20
    assert sent < 4 << 20, f"the server read {sent} bytes of a body over its limit"

    subtitles = f"/v1/videos/{video['id']}/subtitles"
    head = part(b"", filename=b"a.srt", headers=b"")[:-2]
    cue = b"1\n00:00:01,000 --> 00:00:02,000\nhello\n\n" * 1600
    response = await client.post(subtitles, headers={**tenant.headers, **MULTIPART},
                                 content=body(head, cue, b"\r\n" + END, 2000))  # ~100 MiB
    assert_refused(response, runtime, tally, statuses={413}, codes={"request_too_large"})
    assert sent < MAX_SUBTITLE_BYTES + (8 << 20), f"the server read {sent} bytes"

    declared = await client.post(  # a declared length over the limit: refused unread
        f"/v1/videos/{video['id']}/questions",
        headers={**tenant.headers, "Content-Type": "application/json"},
        content=b'{"question": "' + b"a" * (2 << 20) + b'"}')
    assert_refused(declared, runtime, tally, statuses={413}, codes={"request_too_large"})
    leftovers.assert_unchanged(before, tally, "oversized bodies")


def srt(cues: list[tuple[float, float, str]]) -> bytes:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        hours, minutes, seconds = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60
        return f"{hours:02d}:{minutes:02d}:{seconds:02d},{ms % 1000:03d}"
    return "".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{text}\n\n"
                   for i, (a, b, text) in enumerate(cues, 1)).encode()


async def test_bad_subtitle_files(client, tenant, video, runtime, leftovers: Leftovers,
                                  tally) -> None:
    url = f"/v1/videos/{video['id']}/subtitles"
    many = srt([(i * 0.5, i * 0.5 + 0.4, "hi") for i in range(MAX_CUES + 1)])
    cases: list[tuple[str, str, bytes, dict[str, str], set[int], set[str]]] = [
        ("binary", "a.srt", os.urandom(4096) + b"\x00", {}, {400}, {"bad_subtitles"}),
        ("empty", "a.srt", b"", {}, {400}, {"bad_subtitles"}),
        ("only a WebVTT header", "a.vtt", b"WEBVTT\n\n", {}, {400}, {"bad_subtitles"}),
        ("WebVTT without its header", "a.vtt", b"00:01.000 --> 00:02.000\nhi\n", {}, {400},
         {"bad_subtitles"}),
        ("times running backwards", "a.srt", b"1\n00:00:05,000 --> 00:00:02,000\nhi\n", {},
         {400}, {"bad_subtitles"}),
        ("minute 75", "a.srt", b"1\n00:75:00,000 --> 00:76:00,000\nhi\n", {}, {400},
         {"bad_subtitles"}),
        ("NUL in a cue", "a.srt", b"1\n00:00:01,000 --> 00:00:02,000\nh\x00i\n" + b"x" * 5000,
         {}, {400}, {"bad_subtitles"}),
        ("a cue of 100,000 characters", "a.srt", srt([(1, 2, "w" * 100_000)]), {}, {413},
         {"bad_subtitles"}),
        (f"{MAX_CUES + 1} cues", "a.srt", many, {}, {413}, {"bad_subtitles"}),
        (f"{MAX_CUES_AT_ONCE + 1} cues on screen at once", "a.srt",
         srt([(1.0, 3.0, f"line {i}") for i in range(MAX_CUES_AT_ONCE + 1)]), {}, {400},
         {"bad_subtitles"}),
        ("an ASS file", "a.ass", b"[Script Info]\nTitle: x\n", {}, {415}, {"bad_subtitles"}),
        ("no extension, no format", "subtitles", b"1\n00:00:01,000 --> 00:00:02,000\nhi\n", {},
         {415}, {"bad_subtitles"}),
        ("format field not a format", "a.srt", b"1\n00:00:01,000 --> 00:00:02,000\nhi\n",
         {"format": "../../srt"}, {422}, {"validation_error"}),
        ("language tag with markup", "a.srt", b"1\n00:00:01,000 --> 00:00:02,000\nhi\n",
         {"language": "<script>"}, {422}, {"validation_error"}),
    ]
    for name, filename, data, fields, statuses, codes in cases:
        assert len(data) < MAX_SUBTITLE_BYTES, name
        before = leftovers.footprint()
        response = await client.post(url, headers=tenant.headers, files={"file": (filename, data)},
                                     data=fields or None)
        try:
            assert_refused(response, runtime, tally, statuses=statuses, codes=codes)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
        leftovers.assert_unchanged(before, tally, name)
    assert MAX_CUE_CHARS < 100_000
    # And a real file in an old encoding is still welcome.
    ok = await client.post(url, headers=tenant.headers, files={
        "file": ("a.srt", "1\n00:00:01,000 --> 00:00:02,000\nCaf\u00e9\n".encode("cp1252"))})
    assert ok.status_code == 201 and ok.json()["line_count"] == 1


async def test_polyglots_come_back_as_video_or_bytes_never_as_a_page(client, tenant, runtime,
                                                                     small_video, tally) -> None:
    """A valid video with HTML or a zip around it may be stored; served back, it is a video
    or a download, never something a browser renders."""
    html = b"<html><script>alert(document.cookie)</script></html>"
    for name, data in (("page.html", small_video + html), ("image.svg", small_video + b"PK"),
                       ("clip.mp4", small_video + html + b"x")):
        uploaded = await client.post("/v1/videos", headers=tenant.headers,
                                     files={"file": (name, data, "text/html")})
        tally.add("inputs_tried")
        assert uploaded.status_code == 201, uploaded.text
        tally.add("inputs_accepted")
        served = await client.get(f"/v1/videos/{uploaded.json()['id']}/content",
                                  headers=tenant.headers)
        assert served.status_code == 200 and served.content == data
        kind = served.headers["content-type"]
        assert kind.startswith(("video/", "application/octet-stream")), (name, kind)
        assert served.headers["x-content-type-options"] == "nosniff"
        assert_no_server_path(served.headers.get("content-disposition", ""), runtime, tally)
