"""Server-sent events of a job over real HTTP: replay, live rounds in order, result, resume."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from app.db.models import Job, TraceStep, utcnow


def add_round(runtime, job_id: str, index: int) -> None:
    with runtime.session_factory() as session:
        session.add(TraceStep(job_id=uuid.UUID(job_id), round_index=index, kind="get_caption",
                              node_key=str(index + 1), payload={"index": index}))
        job = session.get(Job, uuid.UUID(job_id))
        job.status, job.progress_round = "running", index + 1
        job.started_at = job.started_at or utcnow()
        session.commit()


def finish(runtime, job_id: str, answer: str) -> None:
    with runtime.session_factory() as session:
        job = session.get(Job, uuid.UUID(job_id))
        job.status, job.answer, job.finished_at = "succeeded", answer, utcnow()
        session.commit()


def parse_sse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        if block.startswith(":"):
            events.append({"comment": block})
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        events.append({"event": fields.get("event"), "id": fields.get("id"),
                       "data": json.loads(fields["data"])})
    return events


@pytest.fixture
async def job(client, tenant, small_video):
    video = (await client.post("/v1/videos", headers=tenant.headers,
                               files={"file": ("c.mp4", small_video, "video/mp4")})).json()
    response = await client.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                                 json={"question": "What happens?"})
    return response.json()


async def test_sse_replays_then_streams_live_rounds_in_order(live_server, tenant, runtime, job):
    job_id = job["id"]
    add_round(runtime, job_id, 0)
    add_round(runtime, job_id, 1)
    received: list[dict] = []
    arrived = asyncio.Condition()

    async def reader() -> None:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http, \
                http.stream("GET", f"/v1/jobs/{job_id}/events", headers=tenant.headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            buffer = ""
            async for chunk in resp.aiter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    async with arrived:
                        received.extend(parse_sse(block + "\n\n"))
                        arrived.notify_all()

    async def wait_rounds(n: int) -> None:
        async with arrived:
            await asyncio.wait_for(arrived.wait_for(
                lambda: sum(e.get("event") == "round" for e in received) >= n), timeout=10)

    task = asyncio.create_task(reader())
    await wait_rounds(2)  # the replay of persisted rounds
    await asyncio.sleep(0.8)  # idle longer than the heartbeat interval
    add_round(runtime, job_id, 2)
    runtime.events.publish(uuid.UUID(job_id), {"type": "round", "index": 2})
    await wait_rounds(3)  # live, while the job still runs
    runtime.events.publish(uuid.UUID(job_id), {"type": "round", "index": 2})  # a duplicate
    add_round(runtime, job_id, 3)
    runtime.events.publish(uuid.UUID(job_id), {"type": "round", "index": 3})
    finish(runtime, job_id, "a rabbit")
    runtime.events.publish(uuid.UUID(job_id), {"type": "result"})
    await asyncio.wait_for(task, timeout=10)

    assert any("comment" in e for e in received), "no keep-alive while idle"
    events = [e for e in received if "comment" not in e]
    assert [(e["event"], e["id"]) for e in events] == [
        ("round", "0"), ("round", "1"), ("round", "2"), ("round", "3"), ("result", None)]
    assert [e["data"]["round"] for e in events[:4]] == [{"index": i} for i in range(4)]
    assert events[-1]["data"]["status"] == "succeeded"
    assert events[-1]["data"]["answer"] == "a rabbit"


async def test_sse_rounds_without_bus_events_arrive_by_polling(client, tenant, runtime, job):
    async def later() -> None:
        await asyncio.sleep(0.3)
        add_round(runtime, job["id"], 0)
        await asyncio.sleep(0.3)
        finish(runtime, job["id"], "x")

    writer = asyncio.create_task(later())
    response = await client.get(f"/v1/jobs/{job['id']}/events", headers=tenant.headers)
    await writer
    events = [e for e in parse_sse(response.text) if "comment" not in e]
    assert [e["event"] for e in events] == ["round", "result"]


async def test_sse_resumes_after_last_event_id(client, tenant, runtime, job):
    for index in range(4):
        add_round(runtime, job["id"], index)
    finish(runtime, job["id"], "done")
    response = await client.get(f"/v1/jobs/{job['id']}/events",
                                headers={**tenant.headers, "Last-Event-ID": "1"})
    events = parse_sse(response.text)
    assert [(e["event"], e["id"]) for e in events] == [("round", "2"), ("round", "3"),
                                                       ("result", None)]


async def test_sse_of_cancelled_job_ends_with_result(client, tenant, job):
    await client.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant.headers)
    events = parse_sse((await client.get(f"/v1/jobs/{job['id']}/events",
                                         headers=tenant.headers)).text)
    assert [e["event"] for e in events] == ["result"]
    assert events[0]["data"]["status"] == "cancelled"


async def test_sse_tells_the_client_when_a_job_starts_over(client, tenant, runtime, job):
    job_id = uuid.UUID(job["id"])
    with runtime.session_factory() as session:
        session.get(Job, job_id).attempts = 1
        session.commit()
    add_round(runtime, job["id"], 0)
    add_round(runtime, job["id"], 1)

    async def redeliver() -> None:
        await asyncio.sleep(0.4)  # after the stream has sent rounds 0 and 1
        with runtime.session_factory() as session:
            session.query(TraceStep).filter_by(job_id=job_id).delete()
            session.get(Job, job_id).attempts = 2
            session.commit()
        runtime.events.publish(job_id, {"type": "restarted", "attempt": 2})
        with runtime.session_factory() as session:
            session.add(TraceStep(job_id=job_id, round_index=0, kind="answer",
                                  payload={"index": 0, "attempt": 2}))
            session.commit()
        finish(runtime, job["id"], "again")

    writer = asyncio.create_task(redeliver())
    response = await client.get(f"/v1/jobs/{job['id']}/events", headers=tenant.headers)
    await writer
    events = [e for e in parse_sse(response.text) if "comment" not in e]
    assert [(e["event"], e["id"]) for e in events] == [
        ("round", "0"), ("round", "1"), ("restarted", None), ("round", "0"), ("result", None)]
    assert events[2]["data"] == {"attempt": 2}
    assert events[3]["data"]["round"] == {"index": 0, "attempt": 2}
