"""Questions and jobs over the API: create, idempotency, pages, cancel, trace, auth, limits."""

from __future__ import annotations

import uuid
from datetime import timedelta

from app.db.models import ApiKey, Job, TraceStep, Video, utcnow


async def ask(client, tenant, video_id, **body):
    body.setdefault("question", "What colour is the square?")
    headers = dict(tenant.headers)
    key = body.pop("idempotency_key", None)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(f"/v1/videos/{video_id}/questions", headers=headers, json=body)


async def test_question_creates_a_queued_job_and_enqueues_it(client, tenant, video, queue,
                                                             runtime):
    response = await ask(client, tenant, video["id"], options=["red", "blue"],
                         budgets={"max_rounds": 7, "max_video_qa_calls": 2})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["video_id"] == video["id"]
    assert job["options"] == ["red", "blue"]
    assert job["budgets"] == {"max_rounds": 7, "max_video_qa_calls": 2}
    assert job["rounds"] == 0 and job["answer"] is None and job["error"] is None
    assert queue.calls[-1] == ("navigate", uuid.UUID(job["id"]))
    with runtime.session_factory() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row.settings_used["max_rounds"] == 7
        assert row.settings_used["policy_model"] == runtime.settings.policy_model
    fetched = await client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers)
    assert fetched.json() == job


async def test_idempotent_retries_return_the_same_job(client, tenant, video, queue):
    first = await ask(client, tenant, video["id"], idempotency_key="k-1")
    retry = await ask(client, tenant, video["id"], idempotency_key="k-1")
    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json()["id"] == first.json()["id"]
    assert [c for c in queue.calls if c[0] == "navigate"] == \
        [("navigate", uuid.UUID(first.json()["id"]))]
    reused = await ask(client, tenant, video["id"], idempotency_key="k-1", question="Other?")
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    other = await ask(client, tenant, video["id"], idempotency_key="k-2")
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]


async def test_idempotency_keys_are_per_tenant(client, tenant, other_tenant, small_video, video):
    theirs = (await client.post("/v1/videos", headers=other_tenant.headers,
                                files={"file": ("c.mp4", small_video, "video/mp4")})).json()
    mine = await ask(client, tenant, video["id"], idempotency_key="same")
    other = await ask(client, other_tenant, theirs["id"], idempotency_key="same")
    assert (mine.status_code, other.status_code) == (202, 202)


async def test_questions_are_validated_with_the_error_shape(client, tenant, video):
    for body in ({"question": ""}, {"question": "   "}, {"question": "q", "options": ["a"]},
                 {"question": "q", "budgets": {"max_rounds": 0}},
                 {"question": "q", "budgets": {"max_video_qa_calls": -1}},
                 {"question": "q", "callback_url": "ftp://x"}, {"question": "q", "extra": 1},
                 {"question": "nul\x00here"}, {"question": "q", "options": ["a", "b\x00"]}):
        response = await client.post(f"/v1/videos/{video['id']}/questions",
                                     headers=tenant.headers, json=body)
        assert response.status_code == 422, body
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"]["errors"]
    not_json = await client.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                                 content=b"{", )
    assert not_json.status_code == 422
    assert not_json.json()["error"]["code"] == "validation_error"
    bad_id = await client.get("/v1/jobs/not-a-uuid", headers=tenant.headers)
    assert bad_id.status_code == 422
    assert bad_id.json()["error"]["code"] == "validation_error"


async def test_questions_on_a_failed_video_conflict(client, tenant, video, runtime):
    with runtime.session_factory() as session:
        session.get(Video, uuid.UUID(video["id"])).status = "failed"
        session.commit()
    response = await ask(client, tenant, video["id"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "video_failed"


async def test_job_pages_with_cursor_and_filters(client, tenant, video, runtime, small_video,
                                                 other_video):
    second = (await client.post("/v1/videos", headers=tenant.headers,
                                files={"file": ("o.mp4", other_video, "video/mp4")})).json()
    ids = [(await ask(client, tenant, video["id"], question=f"q{i}")).json()["id"]
           for i in range(5)]
    other_id = (await ask(client, tenant, second["id"])).json()["id"]
    # Same timestamp for some rows: the id breaks ties, so pages neither skip nor repeat.
    with runtime.session_factory() as session:
        now = utcnow()
        for i, job_id in enumerate(ids):
            session.get(Job, uuid.UUID(job_id)).created_at = now - timedelta(seconds=i // 2)
        session.get(Job, uuid.UUID(other_id)).created_at = now + timedelta(seconds=1)
        session.commit()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        url = f"/v1/jobs?limit=2&video_id={video['id']}" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=tenant.headers)).json()
        seen += [j["id"] for j in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    created = [j for j in seen]
    with runtime.session_factory() as session:
        stamps = [(session.get(Job, uuid.UUID(i)).created_at, i) for i in created]
    assert stamps == sorted(stamps, reverse=True)
    everything = (await client.get("/v1/jobs?limit=50", headers=tenant.headers)).json()
    assert everything["items"][0]["id"] == other_id and len(everything["items"]) == 6
    await client.post(f"/v1/jobs/{ids[0]}/cancel", headers=tenant.headers)
    cancelled = (await client.get("/v1/jobs?status=cancelled", headers=tenant.headers)).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]
    bad = await client.get("/v1/jobs?cursor=garbage", headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    bad_status = await client.get("/v1/jobs?status=done", headers=tenant.headers)
    assert bad_status.status_code == 422


async def test_cancel_queued_running_and_finished_jobs(client, tenant, video, runtime):
    queued = (await ask(client, tenant, video["id"])).json()
    response = await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = await client.post(f"/v1/jobs/{queued['id']}/cancel", headers=tenant.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"

    running = (await ask(client, tenant, video["id"], question="r?")).json()
    with runtime.session_factory() as session:
        job = session.get(Job, uuid.UUID(running["id"]))
        job.status, job.started_at = "running", utcnow()
        session.commit()
    response = await client.post(f"/v1/jobs/{running['id']}/cancel", headers=tenant.headers)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", True)
    with runtime.session_factory() as session:
        assert session.get(Job, uuid.UUID(running["id"])).cancel_requested is True


async def test_trace_returns_rounds_in_order(client, tenant, video, runtime):
    job = (await ask(client, tenant, video["id"])).json()
    with runtime.session_factory() as session:
        for index in (2, 0, 1):
            session.add(TraceStep(job_id=uuid.UUID(job["id"]), round_index=index,
                                  kind="get_caption", node_key=f"{index + 1}",
                                  start_s=float(index), end_s=index + 1.0,
                                  payload={"index": index, "tool": "get_caption"}))
        row = session.get(Job, uuid.UUID(job["id"]))
        row.status, row.answer, row.progress_round = "succeeded", "red", 3
        row.summary = {"rounds": 3}
        session.commit()
    trace = (await client.get(f"/v1/jobs/{job['id']}/trace", headers=tenant.headers)).json()
    assert [r["index"] for r in trace["rounds"]] == [0, 1, 2]
    assert trace["rounds"][1]["round"] == {"index": 1, "tool": "get_caption"}
    assert trace["rounds"][2]["node_key"] == "3"
    assert (trace["status"], trace["summary"]) == ("succeeded", {"rounds": 3})


async def test_other_tenants_jobs_are_not_found(client, tenant, other_tenant, video):
    job = (await ask(client, tenant, video["id"])).json()
    h = other_tenant.headers
    for response in (
        await client.get(f"/v1/jobs/{job['id']}", headers=h),
        await client.get(f"/v1/jobs/{job['id']}/trace", headers=h),
        await client.get(f"/v1/jobs/{job['id']}/events", headers=h),
        await client.get(f"/v1/jobs/{job['id']}/webhooks", headers=h),
        await client.post(f"/v1/jobs/{job['id']}/cancel", headers=h),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"
    assert (await client.get("/v1/jobs", headers=h)).json()["items"] == []
    assert (await client.get(f"/v1/jobs?video_id={video['id']}", headers=h)).json()["items"] == []


async def test_auth_failures(client, tenant, runtime):
    missing = await client.get("/v1/jobs")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong_scheme = await client.get("/v1/jobs", headers={"Authorization": f"Basic {tenant.key}"})
    assert wrong_scheme.json()["error"]["code"] == "invalid_authorization"
    wrong_key = await client.get("/v1/jobs", headers={"Authorization": "Bearer vn_nope"})
    assert wrong_key.status_code == 401
    assert wrong_key.json()["error"]["code"] == "invalid_api_key"
    assert (await client.get("/v1/jobs", headers=tenant.headers)).status_code == 200
    with runtime.session_factory() as session:
        for key in session.query(ApiKey).filter_by(tenant_id=tenant.id):
            key.revoked_at = utcnow()
        session.commit()
    revoked = await client.get("/v1/jobs", headers=tenant.headers)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_api_key"


async def test_rate_limit_per_tenant(client, make_tenant, tenant, redis_client):
    limited = make_tenant("limited", rate_limit_per_minute=3)
    statuses = []
    for _ in range(4):
        response = await client.get("/v1/jobs", headers=limited.headers)
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429]
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["RateLimit-Limit"] == "3"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["Retry-After"] == response.headers["RateLimit-Reset"]
    # Counted in Redis, and only for that tenant.
    assert any(k.startswith(f"vidnav:ratelimit:{limited.id}:".encode())
               for k in redis_client.scan_iter("vidnav:ratelimit:*"))
    other = await client.get("/v1/jobs", headers=tenant.headers)
    assert other.status_code == 200 and int(other.headers["RateLimit-Remaining"]) > 0


async def test_callbacks_to_non_public_hosts_are_refused(client, tenant, video, queue, rows):
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/x", "http://10.1.2.3/x",
                "http://[fd00::1]/x"):
        response = await ask(client, tenant, video["id"], callback_url=url)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"]["code"] == "callback_url_not_public"
    assert rows(Job) == [] and not [c for c in queue.calls if c[0] == "navigate"]
    accepted = await ask(client, tenant, video["id"], callback_url="https://hooks.example.com/x")
    assert accepted.status_code == 202
