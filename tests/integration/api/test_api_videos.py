"""Videos over the API: streaming upload, duplicates, limits, probe errors, tenancy, delete."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.core.tree import width_for_duration
from app.db.models import CaptionNode, Job, Subtitle, Video
from tests.integration.api.conftest import app_for, client_of, with_settings

BOUNDARY = "vidnavtestboundary"


def multipart_parts(data: bytes, filename: str = "clip.mp4",
                    fields: dict[str, str] | None = None) -> tuple[bytes, bytes, bytes]:
    """(head, file bytes, tail) of a multipart body with one file part."""
    head = b""
    for name, value in (fields or {}).items():
        head += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    head += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
             f"filename=\"{filename}\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
    return head, data, f"\r\n--{BOUNDARY}--\r\n".encode()


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def upload(client: httpx.AsyncClient, headers: dict[str, str], data: bytes,
                 filename: str = "clip.mp4", **fields: str) -> httpx.Response:
    return await client.post("/v1/videos", headers=headers,
                             files={"file": (filename, data, "video/mp4")}, data=fields or None)


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


async def test_upload_stores_probes_and_enqueues_ingest(client, tenant, small_video, runtime,
                                                        queue, rows, redis_client):
    response = await upload(client, tenant.headers, small_video, caption_mode="eager")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "uploaded"
    assert body["sha256"] == hashlib.sha256(small_video).hexdigest()
    assert body["size_bytes"] == len(small_video)
    assert body["original_name"] == "clip.mp4"
    assert body["caption_mode"] == "eager"
    assert (body["width"], body["height"]) == (160, 120)
    assert body["duration_s"] == pytest.approx(4.0, abs=0.2)
    assert body["num_frames"] == 40
    assert body["tree_width"] >= runtime.settings.min_width
    [video] = rows(Video)
    stored = Path(video.storage_path)
    assert stored == runtime.settings.videos_dir / body["id"] / "source.mp4"
    assert stored.read_bytes() == small_video
    assert files_under(runtime.settings.data_dir / "uploads") == []
    assert queue.calls == [("ingest", uuid.UUID(body["id"]))]
    assert redis_client.hlen(f"vidnav:uploads:{tenant.id}") == 0  # no longer in flight
    # Rate-limit headers ride on every authenticated response.
    assert int(response.headers["RateLimit-Limit"]) == runtime.settings.rate_limit_per_minute
    assert "RateLimit-Remaining" in response.headers


async def test_duplicate_upload_returns_existing_video(client, tenant, small_video, queue, rows,
                                                       runtime):
    first = await upload(client, tenant.headers, small_video)
    again = await upload(client, tenant.headers, small_video, filename="renamed.mp4")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["original_name"] == "clip.mp4"
    assert len(rows(Video)) == 1
    assert len(files_under(runtime.settings.videos_dir)) == 1
    assert files_under(runtime.settings.data_dir / "uploads") == []
    assert [c[0] for c in queue.calls] == ["ingest"]


async def test_same_bytes_for_another_tenant_is_their_own_video(client, tenant, other_tenant,
                                                                small_video, rows):
    mine = await upload(client, tenant.headers, small_video)
    theirs = await upload(client, other_tenant.headers, small_video)
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert len(rows(Video)) == 2


async def test_oversized_upload_is_cut_off_mid_stream(tenant, runtime, rows, queue):
    limit = 256 * 1024
    limited = with_settings(runtime, max_upload_bytes=limit)
    head, _, tail = multipart_parts(b"")
    chunk = os.urandom(64 * 1024)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield head
        for _ in range(200):  # 12.5 MiB if it were all read
            sent += len(chunk)
            yield chunk
        yield tail

    # No Content-Length: the server must notice while streaming, not from a header.
    async with client_of(app_for(limited)) as client:
        response = await client.post("/v1/videos", headers={**tenant.headers, **MULTIPART},
                                     content=body())
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "upload_too_large"
    assert error["details"]["limit_bytes"] == limit
    assert sent < 4 * 1024 * 1024, "the server kept reading after the limit"
    assert rows(Video) == []
    assert files_under(runtime.settings.data_dir) == []
    assert queue.calls == []


async def test_declared_oversized_upload_is_refused_before_reading(tenant, runtime):
    head, data, tail = multipart_parts(os.urandom(3 * 1024 * 1024))
    async with client_of(app_for(with_settings(runtime, max_upload_bytes=1000))) as client:
        response = await client.post("/v1/videos", headers={**tenant.headers, **MULTIPART},
                                     content=head + data + tail)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"


async def test_upload_beyond_tenant_quota_is_refused(client, make_tenant, small_video,
                                                     other_video, rows, runtime):
    small = make_tenant("small", upload_quota_bytes=len(small_video) + 100)
    assert (await upload(client, small.headers, small_video)).status_code == 201
    response = await upload(client, small.headers, other_video)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_quota_exceeded"
    assert len(rows(Video)) == 1
    assert files_under(runtime.settings.data_dir / "uploads") == []


async def test_not_a_video_is_a_typed_error_and_leaves_nothing(client, tenant, rows, runtime):
    response = await upload(client, tenant.headers, b"definitely not a video" * 100, "x.mp4")
    assert response.status_code in (400, 415), response.text
    assert response.json()["error"]["code"] in ("not_media", "no_video_stream",
                                                "unreadable_codec")
    assert rows(Video) == []
    assert files_under(runtime.settings.data_dir) == []


async def test_bad_upload_requests(client, tenant):
    not_multipart = await client.post("/v1/videos", headers=tenant.headers, content=b"abc")
    assert not_multipart.status_code == 415
    assert not_multipart.json()["error"]["code"] == "unsupported_media_type"
    no_file = await client.post("/v1/videos", headers=tenant.headers, data={"x": "1"},
                                files={"other": ("a.txt", b"a")})
    assert no_file.status_code == 400
    assert no_file.json()["error"]["code"] == "missing_file"
    bad_mode = await client.post("/v1/videos", headers=tenant.headers,
                                 files={"file": ("a.mp4", b"abc")}, data={"caption_mode": "x"})
    assert bad_mode.status_code == 400
    assert bad_mode.json()["error"]["code"] == "invalid_caption_mode"


async def test_upload_real_ten_minute_video(client, tenant, runtime, rows):
    from scripts.fetch_videos import fetch_video

    path = fetch_video("bbb")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    async def body() -> AsyncIterator[bytes]:
        head, _, tail = multipart_parts(b"", filename="bbb.mp4")
        yield head
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                yield block
        yield tail

    response = await client.post("/v1/videos", headers={**tenant.headers, **MULTIPART},
                                 content=body())
    assert response.status_code == 201, response.text
    video = response.json()
    assert video["sha256"] == digest
    assert video["duration_s"] == pytest.approx(600, abs=15)
    assert video["tree_width"] == width_for_duration(video["duration_s"], runtime.tree_config)
    detail = (await client.get(f"/v1/videos/{video['id']}", headers=tenant.headers)).json()
    assert len(detail["tree"]["nodes"]) == video["tree_width"]
    assert detail["tree"]["nodes"][0]["start_s"] == 0
    assert detail["tree"]["nodes"][-1]["end_s"] == pytest.approx(video["duration_s"], abs=1)
    assert detail["probe"]["codec"] == "h264"
    [row] = rows(Video)
    assert hashlib.sha256(Path(row.storage_path).read_bytes()).hexdigest() == digest


async def test_list_get_and_paginate_videos(client, tenant, other_tenant, small_video,
                                            other_video):
    a = (await upload(client, tenant.headers, small_video)).json()
    b = (await upload(client, tenant.headers, other_video)).json()
    await upload(client, other_tenant.headers, small_video)
    page1 = (await client.get("/v1/videos?limit=1", headers=tenant.headers)).json()
    page2 = (await client.get(f"/v1/videos?limit=1&offset={page1['next_offset']}",
                              headers=tenant.headers)).json()
    assert [v["id"] for v in page1["items"] + page2["items"]] == [b["id"], a["id"]]
    assert page2["next_offset"] is None
    only_uploaded = (await client.get("/v1/videos?status=ready", headers=tenant.headers)).json()
    assert only_uploaded["items"] == []
    detail = (await client.get(f"/v1/videos/{a['id']}", headers=tenant.headers)).json()
    assert detail["captions"] == {"done": 0, "total": 0}
    assert detail["tree"]["width"] == a["tree_width"]
    assert [n["caption"] for n in detail["tree"]["nodes"]] == [None] * a["tree_width"]


async def test_tree_shows_top_level_captions_once_generated(client, tenant, small_video, runtime):
    video = (await upload(client, tenant.headers, small_video)).json()
    with runtime.session_factory() as session:
        row = session.get(Video, uuid.UUID(video["id"]))
        row.captioner_version = "cap-v1"
        session.add(CaptionNode(content_sha256=row.sha256, config_version="cap-v1",
                                node_key="1", level=1, first_frame=0, last_frame=9,
                                frame_times=[0.0], caption="a test pattern"))
        session.commit()
    detail = (await client.get(f"/v1/videos/{video['id']}", headers=tenant.headers)).json()
    assert detail["tree"]["nodes"][0]["caption"] == "a test pattern"
    assert detail["tree"]["nodes"][1]["caption"] is None


async def test_other_tenants_videos_are_not_found(client, tenant, other_tenant, small_video):
    video = (await upload(client, tenant.headers, small_video)).json()
    h = other_tenant.headers
    vid = video["id"]
    for response in (
        await client.get(f"/v1/videos/{vid}", headers=h),
        await client.delete(f"/v1/videos/{vid}", headers=h),
        await client.post(f"/v1/videos/{vid}/questions", headers=h, json={"question": "q?"}),
        await client.post(f"/v1/videos/{vid}/subtitles", headers=h,
                          files={"file": ("a.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n")}),
        await client.get(f"/v1/videos/{vid}/subtitles", headers=h),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "video_not_found"
    assert (await client.get("/v1/videos", headers=h)).json()["items"] == []
    assert (await client.get(f"/v1/videos/{vid}", headers=tenant.headers)).status_code == 200


async def test_delete_removes_files_rows_and_captions(client, tenant, small_video, runtime, rows):
    video = (await upload(client, tenant.headers, small_video)).json()
    question = await client.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                                 json={"question": "what?"})
    assert question.status_code == 202
    with runtime.session_factory() as session:
        session.add(CaptionNode(content_sha256=video["sha256"], config_version="v",
                                node_key="1", level=1, first_frame=0, last_frame=9,
                                frame_times=[0.0], caption="c"))
        session.commit()
    response = await client.delete(f"/v1/videos/{video['id']}", headers=tenant.headers)
    assert response.status_code == 204
    assert (await client.get(f"/v1/videos/{video['id']}", headers=tenant.headers)).status_code \
        == 404
    assert rows(Video) == [] and rows(Job) == [] and rows(CaptionNode) == []
    assert not (runtime.settings.videos_dir / video["id"]).exists()


async def test_delete_keeps_captions_shared_with_another_video(client, tenant, other_tenant,
                                                               small_video, runtime, rows):
    mine = (await upload(client, tenant.headers, small_video)).json()
    await upload(client, other_tenant.headers, small_video)
    with runtime.session_factory() as session:
        session.add(CaptionNode(content_sha256=mine["sha256"], config_version="v",
                                node_key="1", level=1, first_frame=0, last_frame=9,
                                frame_times=[0.0], caption="c"))
        session.commit()
    assert (await client.delete(f"/v1/videos/{mine['id']}", headers=tenant.headers)
            ).status_code == 204
    assert len(rows(CaptionNode)) == 1


SRT = b"""1
00:00:00,500 --> 00:00:01,500
Hello there.

2
00:00:02,000 --> 00:00:03,250
General Kenobi.
"""

VTT = b"WEBVTT\n\n00:00.500 --> 00:01.500\nHello\n"


async def test_subtitles_upload_and_list(client, tenant, small_video, rows):
    video = (await upload(client, tenant.headers, small_video)).json()
    url = f"/v1/videos/{video['id']}/subtitles"
    srt = await client.post(url, headers=tenant.headers, files={"file": ("a.srt", SRT)},
                            data={"language": "en"})
    assert srt.status_code == 201, srt.text
    assert (srt.json()["format"], srt.json()["line_count"], srt.json()["language"]) == \
        ("srt", 2, "en")
    vtt = await client.post(url, headers=tenant.headers, files={"file": ("noext", VTT)},
                            data={"format": "vtt"})
    assert vtt.status_code == 201, vtt.text
    listed = (await client.get(url, headers=tenant.headers)).json()
    assert [s["format"] for s in listed] == ["srt", "vtt"]
    stored = sorted(rows(Subtitle), key=lambda s: s.format)
    assert stored[0].lines == [[0.5, 1.5, "Hello there."], [2.0, 3.25, "General Kenobi."]]
    bad = await client.post(url, headers=tenant.headers, files={"file": ("a.vtt", b"nope")})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "bad_subtitles"
    unsupported = await client.post(url, headers=tenant.headers,
                                    files={"file": ("a.ass", b"[Script Info]")})
    assert unsupported.status_code == 415


async def test_concurrent_uploads_share_the_quota(client, make_tenant, redis_client, rows):
    import asyncio

    mib = 1024 * 1024
    small = make_tenant("busy", upload_quota_bytes=3 * mib)
    a_waiting, a_go = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        head, _, tail = multipart_parts(b"", filename="a.mp4")
        yield head
        for _ in range(2):
            yield os.urandom(mib)
        a_waiting.set()  # both MiB have been read and counted by now
        await a_go.wait()
        yield tail

    async def fast_body() -> AsyncIterator[bytes]:
        head, _, tail = multipart_parts(b"", filename="b.mp4")
        yield head
        for _ in range(2):
            yield os.urandom(mib)
        yield tail

    headers = {**small.headers, **MULTIPART}
    first = asyncio.create_task(client.post("/v1/videos", headers=headers, content=slow_body()))
    await asyncio.wait_for(a_waiting.wait(), timeout=10)
    key = f"vidnav:uploads:{small.id}"
    assert sum(int(v) for v in redis_client.hvals(key)) == 2 * mib
    second = await client.post("/v1/videos", headers=headers, content=fast_body())
    assert second.status_code == 413, second.text
    assert second.json()["error"]["code"] == "upload_quota_exceeded"
    assert second.json()["error"]["details"]["in_flight_bytes"] == 2 * mib
    a_go.set()
    assert (await first).status_code == 400  # random bytes: refused by the probe, not the quota
    assert redis_client.hlen(key) == 0  # both reservations released
    assert rows(Video) == []


async def test_upload_broken_off_by_the_client_leaves_nothing(client, tenant, runtime, rows,
                                                               redis_client):
    class ClientGone(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        head, _, _ = multipart_parts(b"")
        yield head
        for _ in range(3):
            yield os.urandom(1024 * 1024)
        raise ClientGone  # the connection drops mid-file

    with pytest.raises(ClientGone):
        await client.post("/v1/videos", headers={**tenant.headers, **MULTIPART}, content=body())
    assert files_under(runtime.settings.data_dir) == []
    assert rows(Video) == []
    assert redis_client.hlen(f"vidnav:uploads:{tenant.id}") == 0
