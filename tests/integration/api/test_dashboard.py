"""The dashboard over HTTP (real Postgres, Redis, ffmpeg): the key cookie and its limits,
forms that refuse other sites, tenant scoping, video bytes with ranges, thumbnails made at
ingest, and the self-contained job export."""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import timedelta
from html import unescape
from http.cookies import SimpleCookie

import numpy as np
import pytest
from PIL import Image

from app.core.ports import ModelUsage
from app.core.trace import TraceRound
from app.core.tree import VideoGeometry, node_key
from app.db.models import Job, TraceStep, Video, utcnow
from app.media.frames import FrameReader
from app.media.probe import probe_video
from app.services.ingest import ingest_video
from app.services.thumbnails import TILE_MAX_SIDE, leaf_frames, thumbnails_dir

SCRIPT_JSON = re.compile(r'<script type="application/json" id="vidnav-data">(.*?)</script>', re.S)


def cookie(tenant) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Cookie": f"vidnav_key={tenant.key}"}


def page_data(html: str) -> dict:
    match = SCRIPT_JSON.search(html)
    assert match, "no embedded data"
    return json.loads(match.group(1))


async def ask(client, tenant, video_id: str, **body) -> dict:  # type: ignore[no-untyped-def]
    response = await client.post(f"/v1/videos/{video_id}/questions", headers=tenant.headers,
                                 json={"question": "What is shown?", **body})
    assert response.status_code == 202, response.text
    return response.json()


def finish_with_rounds(runtime, job_id: str, geometry: VideoGeometry) -> list[TraceRound]:  # type: ignore[no-untyped-def]
    """Write a finished three-round navigation for the job, as the navigate task would."""
    leaf = (1, 1, 1)
    start, end = geometry.seconds(leaf)
    rounds = [
        TraceRound(index=0, kind="get_caption", raw_reply="r0", think="Look at (1,1).",
                   tool="get_caption((1,1))", tool_name="get_caption", node=[1, 1],
                   node_key="1,1", start=geometry.seconds((1, 1))[0],
                   end=geometry.seconds((1, 1))[1], observation="A red box.",
                   caption_cached=False, policy_usage=ModelUsage(0.5, 100, 10),
                   tool_usage=ModelUsage(1.5), wall_seconds=2.0),
        TraceRound(index=1, kind="video_qa", raw_reply="r1", think="Check the leaf.",
                   tool='video_qa((1,1,1), "what?")', tool_name="video_qa", node=list(leaf),
                   node_key="1,1,1", start=start, end=end, observation="Red.",
                   policy_usage=ModelUsage(0.25, 120, 12), tool_usage=ModelUsage(0.75),
                   wall_seconds=1.0),
        TraceRound(index=2, kind="answer", raw_reply="r2", think="Done.", answer="B",
                   policy_usage=ModelUsage(0.25, 130, 5), wall_seconds=0.3),
    ]
    with runtime.session_factory() as session:
        for rnd in rounds:
            session.add(TraceStep(job_id=uuid.UUID(job_id), round_index=rnd.index, kind=rnd.kind,
                                  node_key=rnd.node_key, start_s=rnd.start, end_s=rnd.end,
                                  payload=rnd.to_dict()))
        job = session.get(Job, uuid.UUID(job_id))
        job.status, job.answer, job.progress_round = "succeeded", "B", 3
        job.started_at = job.finished_at = utcnow()
        job.summary = {"rounds": 3, "captions_generated": 1, "captions_cached": 4,
                       "roles": {"policy": {"model_seconds": 1.0, "calls": 3},
                                 "captioner": {"model_seconds": 1.5, "calls": 1},
                                 "video_qa": {"model_seconds": 0.75, "calls": 1}},
                       "visited_share": 0.25, "wall_seconds": 3.3}
        session.commit()
    return rounds


@pytest.fixture
def geometry(runtime, video) -> VideoGeometry:  # type: ignore[no-untyped-def]
    return VideoGeometry(video["num_frames"], video["fps"], runtime.tree_config)


# --- the key -----------------------------------------------------------------------------


async def test_pages_without_a_key_ask_for_one(client, tenant, video):
    for path in ("/ui/jobs", f"/ui/videos/{video['id']}", f"/ui/jobs/{uuid.uuid4()}"):
        response = await client.get(path)
        assert response.status_code == 401, path
        assert 'id="key-form"' in response.text and 'name="key"' in response.text
        assert f'name="next" value="{path}"' in response.text
        assert "set-cookie" not in response.headers
    # What the pages load answers in the API's error shape.
    response = await client.get("/ui/api/jobs")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    # A link followed from another site arrives without the Strict cookie: reload same-site.
    response = await client.get("/ui/jobs", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert 'http-equiv="refresh" content="0;url=/ui/jobs"' in response.text
    assert (await client.get("/", follow_redirects=False)).headers["location"] == "/ui/jobs"


async def test_key_form_sets_a_strict_http_only_cookie(client, tenant, other_tenant):
    bad = await client.post("/ui/login", data={"key": "vn_not-a-key", "next": "/ui/videos"})
    assert bad.status_code == 401
    assert "not valid" in bad.text and "set-cookie" not in bad.headers
    assert "vn_not-a-key" not in bad.text

    good = await client.post("/ui/login", data={"key": tenant.key, "next": "/ui/videos"})
    assert good.status_code == 303
    assert good.headers["location"] == "/ui/videos"
    jar = SimpleCookie(good.headers["set-cookie"])
    morsel = jar["vidnav_key"]
    assert morsel.value == tenant.key
    assert morsel["httponly"] and morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/ui"
    assert not morsel["secure"]  # plain HTTP here; HTTPS requests get Secure
    assert tenant.key not in good.headers["location"]

    page = await client.get("/ui/videos", headers=cookie(tenant))
    assert page.status_code == 200 and tenant.name in page.text
    # Only dashboard paths may follow the form; anything else goes to the jobs page.
    for target in ("//evil.example/x", "https://evil.example/", "/v1/jobs", "/ui\\..\\x"):
        redirect = await client.post("/ui/login", data={"key": tenant.key, "next": target})
        assert redirect.headers["location"] == "/ui/jobs", target
    # The key form itself refuses a post from another site.
    forged = await client.post("/ui/login", data={"key": other_tenant.key},
                               headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers


async def test_the_cookie_opens_the_dashboard_only(client, tenant):
    assert (await client.get("/ui/api/jobs", headers=cookie(tenant))).status_code == 200
    # /v1 keeps taking the Authorization header alone.
    response = await client.get("/v1/jobs", headers=cookie(tenant))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


async def test_a_revoked_key_in_the_cookie_asks_again(client, tenant, runtime):
    from sqlalchemy import update

    from app.db.models import ApiKey

    with runtime.session_factory() as session:
        session.execute(update(ApiKey).where(ApiKey.tenant_id == tenant.id)
                        .values(revoked_at=utcnow()))
        session.commit()
    response = await client.get("/ui/jobs", headers=cookie(tenant))
    assert response.status_code == 401
    assert "not valid any more" in response.text
    assert "vidnav_key=" in response.headers["set-cookie"]  # cleared
    assert "Max-Age=0" in response.headers["set-cookie"]


async def test_sign_out_needs_the_form_token(client, tenant):
    page = await client.get("/ui/jobs", headers=cookie(tenant))
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text).group(1)
    refused = await client.post("/ui/logout", headers=cookie(tenant), data={"csrf": "0" * 64})
    assert refused.status_code == 403
    done = await client.post("/ui/logout", headers=cookie(tenant), data={"csrf": token})
    assert done.status_code == 303 and "Max-Age=0" in done.headers["set-cookie"]


# --- tenants ------------------------------------------------------------------------------


async def test_another_tenants_ids_are_not_found(client, tenant, other_tenant, video):
    job = await ask(client, tenant, video["id"])
    theirs = cookie(other_tenant)
    for path, title in ((f"/ui/jobs/{job['id']}", "Job not found"),
                        (f"/ui/videos/{video['id']}", "Video not found"),
                        (f"/ui/jobs/{job['id']}/export", "Job not found"),
                        ("/ui/jobs/not-a-job-id", "Not found")):
        response = await client.get(path, headers=theirs)
        assert response.status_code == 404, path
        assert f"<h1>{title}</h1>" in response.text
        assert job["question"] not in response.text
    for path in (f"/ui/api/jobs/{job['id']}", f"/ui/api/videos/{video['id']}",
                 f"/ui/jobs/{job['id']}/events", f"/ui/videos/{video['id']}/content",
                 f"/ui/videos/{video['id']}/thumbnails", f"/ui/videos/{video['id']}/thumbnails.jpg",
                 f"/v1/videos/{video['id']}/content", f"/v1/jobs/{job['id']}/export"):
        headers = other_tenant.headers if path.startswith("/v1") else theirs
        response = await client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] in ("job_not_found", "video_not_found")
    listing = (await client.get("/ui/api/jobs", headers=theirs)).json()
    assert listing["items"] == []
    mine = (await client.get("/ui/api/jobs", headers=cookie(tenant))).json()
    assert [j["id"] for j in mine["items"]] == [job["id"]]
    assert mine["items"][0]["video_name"] == "clip.mp4"


# --- the question form --------------------------------------------------------------------


async def test_question_form_needs_its_token_and_this_origin(client, tenant, video, queue, rows):
    page = await client.get(f"/ui/videos/{video['id']}", headers=cookie(tenant))
    assert page.status_code == 200
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text).group(1)
    path = f"/ui/videos/{video['id']}/questions"
    form = {"question": "What colour is the box?", "options": "Red\n\nBlue\n", "csrf": token}

    assert (await client.post(path, headers=cookie(tenant),
                              data={**form, "csrf": ""})).status_code == 403
    assert (await client.post(path, headers={**cookie(tenant), "Origin": "https://evil.example"},
                              data=form)).status_code == 403
    assert (await client.post(path, headers={**cookie(tenant), "Sec-Fetch-Site": "cross-site"},
                              data=form)).status_code == 403
    bad = await client.post(path, headers=cookie(tenant), data={**form, "options": "Only one"})
    assert bad.status_code == 400 and "options" in bad.text
    assert rows(Job) == [] and [c for c in queue.calls if c[0] == "navigate"] == []

    done = await client.post(path, data={**form, "max_rounds": "7"},
                             headers={**cookie(tenant), "Origin": "http://vidnav.test",
                                      "Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 303
    [job] = rows(Job)
    assert done.headers["location"] == f"/ui/jobs/{job.id}"
    assert (job.question, job.options, job.budgets["max_rounds"]) == (
        "What colour is the box?", ["Red", "Blue"], 7)
    assert ("navigate", job.id) in queue.calls


# --- video bytes, thumbnails, pages, export -----------------------------------------------


async def test_cancel_button_cancels_a_queued_job_with_its_token(client, tenant, other_tenant,
                                                                  video, rows):
    job = await ask(client, tenant, video["id"])
    page = await client.get(f"/ui/jobs/{job['id']}", headers=cookie(tenant))
    assert 'id="cancel"' in page.text
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text).group(1)
    path = f"/ui/jobs/{job['id']}/cancel"

    assert (await client.post(path, headers=cookie(tenant), data={"csrf": ""})).status_code == 403
    assert (await client.post(path, headers={**cookie(tenant), "Sec-Fetch-Site": "cross-site"},
                              data={"csrf": token})).status_code == 403
    theirs = await client.post(path, headers=cookie(other_tenant), data={"csrf": token})
    assert theirs.status_code in (403, 404)
    assert [j.status for j in rows(Job)] == ["queued"]

    done = await client.post(path, headers=cookie(tenant), data={"csrf": token})
    assert done.status_code == 303 and done.headers["location"] == f"/ui/jobs/{job['id']}"
    [row] = rows(Job)
    assert (row.status, row.error_code) == ("cancelled", "cancelled")
    # A finished job's page has no button, and a second cancel says why it cannot.
    assert 'id="cancel"' not in (await client.get(f"/ui/jobs/{job['id']}",
                                                  headers=cookie(tenant))).text
    again = await client.post(path, headers=cookie(tenant), data={"csrf": token})
    assert again.status_code == 409 and "already finished" in again.text


async def test_jobs_page_pages_past_the_newest_hundred(client, tenant, other_tenant, video,
                                                      runtime):
    first = await ask(client, tenant, video["id"])
    with runtime.session_factory() as session:  # 104 more jobs, a second apart, newest last
        job = session.get(Job, uuid.UUID(first["id"]))
        columns = {c.name: getattr(job, c.name) for c in Job.__table__.columns}
        for i in range(1, 105):
            session.add(Job(**{**columns, "id": uuid.uuid4(), "question": f"Question {i}?",
                               "idempotency_key": None,
                               "created_at": columns["created_at"] + timedelta(seconds=i)}))
        session.commit()
    newest = page_data((await client.get("/ui/jobs", headers=cookie(tenant))).text)
    assert [j["question"] for j in newest["items"]][:2] == ["Question 104?", "Question 103?"]
    assert len(newest["items"]) == 100 and newest["next"]

    older = await client.get("/ui/jobs", params={"cursor": newest["next"]}, headers=cookie(tenant))
    assert older.status_code == 200
    rest = page_data(older.text)
    assert [j["question"] for j in rest["items"]] == [
        "Question 4?", "Question 3?", "Question 2?", "Question 1?", first["question"]]
    assert rest["next"] is None and rest["filters"]["cursor"] == newest["next"]
    live = (await client.get("/ui/api/jobs", params={"cursor": newest["next"]},
                             headers=cookie(tenant))).json()
    assert [j["id"] for j in live["items"]] == [j["id"] for j in rest["items"]]
    # Another tenant's cursor shows none of these; a made-up one is a 400, not a 500.
    theirs = await client.get("/ui/api/jobs", params={"cursor": newest["next"]},
                              headers=cookie(other_tenant))
    assert theirs.json()["items"] == []
    bad = await client.get("/ui/jobs", params={"cursor": "not-a-cursor"}, headers=cookie(tenant))
    assert bad.status_code == 400 and "cursor" in bad.text


async def test_video_bytes_answer_range_requests(client, tenant, video, small_video):
    path = f"/v1/videos/{video['id']}/content"
    whole = await client.get(path, headers=tenant.headers)
    assert whole.status_code == 200 and whole.content == small_video
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = await client.get(path, headers={**tenant.headers, "Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-299/{len(small_video)}"
    assert part.content == small_video[100:300]
    tail = await client.get(path, headers={**tenant.headers, "Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == small_video[-50:]
    past = await client.get(path, headers={**tenant.headers,
                                           "Range": f"bytes={len(small_video)}-"})
    assert past.status_code == 416
    page = await client.get(f"/ui/videos/{video['id']}/content",
                            headers={**cookie(tenant), "Range": "bytes=0-9"})
    assert page.status_code == 206 and page.content == small_video[:10]
    assert (await client.get(path, headers=cookie(tenant))).status_code == 401


async def test_thumbnails_are_made_at_ingest_one_tile_per_leaf(client, tenant, video, runtime,
                                                               geometry):
    video_id = uuid.UUID(video["id"])
    ingest_video(runtime, video_id)
    folder = thumbnails_dir(runtime.settings, video_id)
    assert sorted(p.name for p in folder.iterdir()) == ["layout.json", "sprite.jpg"]

    layout = (await client.get(f"/v1/videos/{video_id}/thumbnails", headers=tenant.headers)).json()
    width = geometry.width
    assert layout["count"] == width ** 3
    assert (layout["tile_width"], layout["tile_height"]) == (TILE_MAX_SIDE, 96)  # 160x120 source
    assert layout["sprite"] == f"/v1/videos/{video_id}/thumbnails.jpg"
    every_node = {node_key(n) for level in (1, 2, 3) for n in geometry.iter_nodes(level)}
    assert set(layout["nodes"]) == every_node
    leaves = list(geometry.iter_nodes(3))
    assert [layout["nodes"][node_key(leaf)] for leaf in leaves] == list(range(width ** 3))
    for node in geometry.iter_nodes(1):  # a high node shows the leaf at its middle
        middle = sum(geometry.seconds(node)) / 2
        assert layout["nodes"][node_key(node)] == leaves.index(geometry.node_at(middle, 3))

    sprite = await client.get(layout["sprite"], headers=tenant.headers)
    assert sprite.headers["content-type"] == "image/jpeg"
    sheet = np.asarray(Image.open(io.BytesIO(sprite.content)).convert("RGB"), dtype=np.int16)
    columns, tw, th = layout["columns"], layout["tile_width"], layout["tile_height"]
    with runtime.session_factory() as session:
        path = session.get(Video, video_id).storage_path
    reader = FrameReader(path, probe_video(path))
    frames = reader.read(leaf_frames(geometry), TILE_MAX_SIDE)
    reader.close()
    for index in (0, width ** 3 // 2, width ** 3 - 1):
        row, col = divmod(index, columns)
        tile = sheet[row * th:(row + 1) * th, col * tw:(col + 1) * tw]
        diffs = [np.abs(tile - frame.astype(np.int16)).mean() for frame in frames]
        # Its own frame, give or take JPEG (the test pattern's saturated edges cost most).
        assert diffs[index] < 12 and diffs[index] <= min(diffs) + 1, (index, diffs[index])
    # The dashboard's copy, through the cookie.
    ui = await client.get(f"/ui/videos/{video_id}/thumbnails", headers=cookie(tenant))
    assert ui.json()["sprite"] == f"/ui/videos/{video_id}/thumbnails.jpg"


async def test_thumbnails_of_an_older_video_are_made_on_first_request(client, tenant, video,
                                                                      runtime):
    folder = thumbnails_dir(runtime.settings, uuid.UUID(video["id"]))
    assert not folder.exists()  # uploaded, never ingested by this runtime's queue
    response = await client.get(f"/v1/videos/{video['id']}/thumbnails", headers=tenant.headers)
    assert response.status_code == 200
    assert (folder / "sprite.jpg").is_file()


async def test_job_page_embeds_the_trace_escaped_with_strict_headers(client, tenant, video,
                                                                     runtime, geometry):
    sneaky = 'Is it </script><script>alert("x")</script> & <b>bold</b>?'
    job = await ask(client, tenant, video["id"], question=sneaky, options=["A box", "A ball"])
    rounds = finish_with_rounds(runtime, job["id"], geometry)
    page = await client.get(f"/ui/jobs/{job['id']}", headers=cookie(tenant))
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>alert" not in page.text and "<b>bold" not in page.text
    data = page_data(page.text)
    assert data["job"]["question"] == sneaky
    trace = (await client.get(f"/v1/jobs/{job['id']}/trace", headers=tenant.headers)).json()
    assert [r["node_key"] for r in data["rounds"]] == [r["node_key"] for r in trace["rounds"]]
    assert [r["round"] for r in data["rounds"]] == [r.to_dict() for r in rounds]
    assert [len(level) for level in data["tree"]["levels"]] == [
        geometry.width ** k for k in (1, 2, 3)]
    assert data["media"]["video"] == f"/ui/videos/{video['id']}/content"
    assert data["events"] == f"/ui/jobs/{job['id']}/events"
    assert data["evaluation"] is None


async def test_reference_is_validated_and_scores_the_job(client, tenant, video, runtime,
                                                         geometry):
    bad = await client.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                            json={"question": "Q?", "reference": {"answer": "B",
                                                                  "clues": [[3.0, 1.0]]}})
    assert bad.status_code == 422
    clue = list(geometry.seconds((1, 1)))
    job = await ask(client, tenant, video["id"], options=["Blue", "Red"],
                    reference={"answer": "B", "clues": [clue]})
    assert job["reference"] == {"answer": "B", "clues": [clue]}
    running = (await client.get(f"/ui/api/jobs/{job['id']}", headers=cookie(tenant))).json()
    assert running["evaluation"] == {"truth": "B", "clues": [clue], "scored": False}
    finish_with_rounds(runtime, job["id"], geometry)
    view = (await client.get(f"/ui/api/jobs/{job['id']}", headers=cookie(tenant))).json()
    evaluation = view["evaluation"]
    # get_caption visited exactly node (1,1), the clue: coverage = precision = F1 = 1.
    assert evaluation["correct"] is True
    assert evaluation["f1"] == pytest.approx(1.0)
    assert evaluation["reward"] == pytest.approx(2.0)


async def test_export_is_one_page_that_loads_nothing(client, tenant, video, runtime, geometry):
    job = await ask(client, tenant, video["id"], options=["Blue", "Red"],
                    reference={"answer": "A", "clues": [[0.0, 1.0]]})
    finish_with_rounds(runtime, job["id"], geometry)
    response = await client.get(f"/v1/jobs/{job['id']}/export", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="vidnav-job-{job["id"]}.html"')
    html = response.text
    assert re.findall(r'(?:src|href)="(?!#)[^"]*"', html) == []  # no file to fetch
    assert "url(" not in html.split("<script", 1)[0].split("<style>", 1)[0]
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert "default-src 'none'" in unescape(policy.group(1))
    data = page_data(html)
    assert data["thumbnails"]["sprite"].startswith("data:image/jpeg;base64,")
    assert "media" not in data
    assert [r["index"] for r in data["rounds"]] == [0, 1, 2]
    assert data["evaluation"]["correct"] is False  # answered B, the reference says A
    assert data["job"]["summary"]["visited_share"] == 0.25
    ui = await client.get(f"/ui/jobs/{job['id']}/export", headers=cookie(tenant))
    assert ui.status_code == 200 and page_data(ui.text)["job"]["id"] == job["id"]


async def test_video_data_has_two_levels_with_the_captions_written(client, tenant, video,
                                                                   runtime, geometry):
    from app.db.models import CaptionNode

    with runtime.session_factory() as session:
        row = session.get(Video, uuid.UUID(video["id"]))
        row.captioner_version = "v1"
        for key, level in (("1", 1), ("2", 1), ("2,3", 2)):
            session.add(CaptionNode(content_sha256=row.sha256, config_version="v1",
                                    node_key=key, level=level, first_frame=0, last_frame=0,
                                    frame_times=[], caption=f"caption of {key}"))
        session.add(CaptionNode(content_sha256=row.sha256, config_version="v0", node_key="3",
                                level=1, first_frame=0, last_frame=0, frame_times=[],
                                caption="an older captioner's"))
        session.commit()
    await ask(client, tenant, video["id"])
    data = (await client.get(f"/ui/api/videos/{video['id']}", headers=cookie(tenant))).json()
    nodes = data["tree"]["nodes"]
    width = geometry.width
    assert [n["key"] for n in nodes] == [str(h) for h in range(1, width + 1)]
    assert [n["caption"] for n in nodes] == ["caption of 1", "caption of 2"] + [None] * (width - 2)
    assert [c["key"] for c in nodes[1]["children"]] == [f"2,{m}" for m in range(1, width + 1)]
    assert [c["caption"] for c in nodes[1]["children"]][2] == "caption of 2,3"
    assert (nodes[1]["start_s"], nodes[1]["end_s"]) == geometry.seconds((2,))
    assert [j["question"] for j in data["jobs"]] == ["What is shown?"]
