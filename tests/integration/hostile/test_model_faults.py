"""Model faults, end to end: a question asked over the API about an uploaded video, answered
by the real navigation service (Postgres, Redis cache, ffmpeg frames, the in-process task
queue) against the scripted OpenAI-compatible server, with one role misbehaving.

Whatever a model does (garbage, endless ``<think>``, huge or code-like tool calls, wrong
ids, timeouts, 500s, empty replies, refusals) the job ends in a final state within a bounded
number of model calls, and the trace the API serves records what happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from app.api.app import create_app
from app.db.models import CaptionNode
from app.services.queue import InlineQueue
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from tests.integration.api.conftest import RecordingQueue
from tests.integration.hostile.conftest import assert_no_server_path
from tests.support.scripted_server import Reply, ScriptedServer, captioner_reply

POLICY, CAPTIONER, VIDEO_QA = "policy-m", "captioner-m", "videoqa-m"
ROUNDS = 4  # the question's max_rounds: every fault must end within it
TIMEOUT_S = 1.0
RETRIES = 1  # client retries per call
ATTEMPTS = 2  # task attempts per job (task_max_retries = 1)
API_SECRET = "sk-model-secret-3c9f0a7e"
FINAL = ("succeeded", "no_answer", "failed", "cancelled")

# The scripted policy's happy path, by hand (medium, leaf, video_qa, answer).
MEDIUM = "<think>Segment 1 first.</think><tool>get_caption((1,1))</tool>"
LEAF = "<think>Its first leaf.</think><tool>get_caption((1,1,1))</tool>"
QA = '<think>Look closer.</think><tool>video_qa((1,1,1), "What is shown?")</tool>'
ANSWER = "<think>Enough.</think><answer>A test pattern.</answer>"


def asked(body: dict[str, Any]) -> str:
    """The question a policy request is about (the first line of its first user part)."""
    for message in body.get("messages", []):
        if message.get("role") == "user" and isinstance(message.get("content"), list):
            return str(message["content"][0].get("text", "")).split("\n", 1)[0]
    return ""


@dataclass
class Rig:
    client: httpx.AsyncClient
    server: ScriptedServer
    runtime: Runtime
    headers: dict[str, str]
    clip: bytes
    video_id: str = ""

    async def ask(self, question: str = "What is shown?", rounds: int = ROUNDS,
                  video_id: str | None = None) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/videos/{video_id or self.video_id}/questions", headers=self.headers,
            json={"question": question, "budgets": {"max_rounds": rounds}})
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    async def fresh_video(self) -> str:
        """Another upload of the clip with a few bytes after it: new content, so none of
        its captions are cached yet."""
        data = self.clip + uuid.uuid4().bytes
        uploaded = await self.client.post("/v1/videos", headers=self.headers,
                                          files={"file": ("clip.mp4", data, "video/mp4")})
        assert uploaded.status_code == 201, uploaded.text
        video_id: str = uploaded.json()["id"]
        deadline = time.monotonic() + 30
        while (await self.client.get(f"/v1/videos/{video_id}", headers=self.headers)
               ).json()["status"] != "ready":
            assert time.monotonic() < deadline, "the video was not ingested"
            await asyncio.sleep(0.05)
        return video_id

    async def finished(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = (await self.client.get(f"/v1/jobs/{job_id}", headers=self.headers)).json()
            if job["status"] in FINAL:
                return job  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, f"job still {job['status']} after {timeout} s"
            await asyncio.sleep(0.1)

    async def trace(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/jobs/{job_id}/trace", headers=self.headers)
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    def calls(self, model: str, question: str | None = None) -> int:
        """Chat calls to ``model`` (about ``question`` only, for the policy)."""
        if question is None:
            return self.server.calls(model)
        return sum(1 for r in self.server.chat_requests(model) if asked(r.body) == question)


@pytest.fixture
async def rig(integration_settings: Settings, scripted_server: ScriptedServer, make_tenant,
              small_video: bytes) -> AsyncIterator[Rig]:
    url = scripted_server.base_url
    settings = integration_settings.model_copy(update={
        "profile": "remote", "policy_base_url": url, "captioner_base_url": url,
        "videoqa_base_url": url, "policy_model": POLICY, "captioner_model": CAPTIONER,
        "videoqa_model": VIDEO_QA, "policy_api_key": SecretStr(API_SECRET),
        "model_timeout_s": TIMEOUT_S, "model_retries": RETRIES,
        "task_max_retries": ATTEMPTS - 1, "task_retry_backoff_s": 0.05, "navigate_wait_s": 0.1,
        "caption_mode": "lazy", "transcribe": False, "high_frames": 4, "medium_frames": 4,
        "low_frames": 2, "videoqa_frames": 2, "gc_freeze": False,
    })
    runtime = build_runtime(settings, queue=RecordingQueue())
    runtime.queue = InlineQueue(runtime)
    app = create_app(runtime, auth_cache_ttl_s=0.0)
    tenant = make_tenant("faults")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://vidnav.test", timeout=60) as client:
            rig = Rig(client, scripted_server, runtime, tenant.headers, small_video)
            rig.video_id = await rig.fresh_video()
            yield rig
    finally:
        runtime.close()


def every(reply: str | Reply | Callable[[dict[str, Any]], str | Reply]
          ) -> Callable[[dict[str, Any]], str | Reply]:
    return reply if callable(reply) else (lambda body: reply)


def violations(trace: dict[str, Any]) -> list[str | None]:
    return [r["round"]["violation"] for r in trace["rounds"]]


def record(tally, bounded: bool) -> None:  # type: ignore[no-untyped-def]
    tally.add("faults_injected")
    tally.add("faults_bounded", int(bounded))


# --- the policy ------------------------------------------------------------------------------

POLICY_REPLIES = {
    "garbage bytes": "\x00\x1b[2J\ufffd<<>>" + "�" * 200,
    "NUL and a lone surrogate": "<think>\x00\ud800</think>\x00",
    "an HTML error page": "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "endless <think>": "<think>" + "Let me think about this again. " * 6000,  # 180 KB
    "<think> repeated": "<think>" * 30_000,
    "an answer without thinking": "<answer>A</answer>",
    "a tool call of 20 KB": "<think>x</think><tool>get_caption((1," + "1," * 10_000 + "))</tool>",
    "a code-like tool call": "<think>x</think><tool>get_caption(__import__('os').system("
                             "'touch /tmp/vidnav-pwned'))</tool>",
    "segment ids out of range": "<think>x</think><tool>get_caption((9,9))</tool>",
    "a node of four levels": "<think>x</think><tool>get_caption((1,1,1,1))</tool>",
    "video_qa on a medium node": "<think>x</think><tool>video_qa((1,1), 'what?')</tool>",
    "an unknown tool": "<think>x</think><tool>shell('id')</tool>",
    "an empty reply": "",
}


async def test_a_policy_that_never_follows_the_protocol_runs_out_of_rounds(rig: Rig,
                                                                           tally) -> None:
    """One job per kind of broken reply, all at once: the policy answers each job's
    question with that reply, every round."""
    questions = {f"Fault {i}: what is shown?": fault for i, fault in enumerate(POLICY_REPLIES)}
    rig.server.set_handler(lambda body: POLICY_REPLIES[questions[asked(body)]], model=POLICY)
    jobs = {question: await rig.ask(question) for question in questions}
    problems = []
    for question, fault in questions.items():
        job = await rig.finished(jobs[question]["id"])
        trace = await rig.trace(job["id"])
        kinds = [r["kind"] for r in trace["rounds"]]
        bounded = ((job["status"], job["rounds"], rig.calls(POLICY, question))
                   == ("no_answer", ROUNDS, ROUNDS) and kinds == ["invalid"] * ROUNDS
                   and all(violations(trace)) and trace["summary"]["outcome"] == "no_answer"
                   and job["error"]["code"] == "no_answer")
        record(tally, bounded)
        if not bounded:
            problems.append(f"{fault}: {job['status']} {job['error']} {kinds}")
    assert not problems, "\n".join(problems)
    assert not Path("/tmp/vidnav-pwned").exists()


async def test_a_huge_video_qa_query_is_served_bounded(rig: Rig, tally) -> None:
    query = "describe " * 400  # 3,600 characters: a real call, just long
    rig.server.enqueue(MEDIUM, LEAF, f"<think>x</think><tool>video_qa((1,1,1), '{query}')</tool>",
                       ANSWER, model=POLICY)
    job = await rig.finished((await rig.ask())["id"])
    trace = await rig.trace(job["id"])
    record(tally, job["status"] == "succeeded")
    assert job["status"] == "succeeded", job
    assert trace["rounds"][2]["round"]["query"] == query
    (request,) = rig.server.chat_requests(VIDEO_QA)
    assert request.messages[1]["content"][0]["text"] == query


async def test_a_policy_server_that_fails_fails_the_job_after_bounded_attempts(
    rig: Rig, tally, caplog: pytest.LogCaptureFixture,
) -> None:
    faults = {"Policy 500?": Reply.error(500),
              "Policy timeout?": Reply.slow(ANSWER, TIMEOUT_S * 3),
              "Policy HTML?": Reply.raw(b"<html>oops</html>")}
    rig.server.set_handler(lambda body: faults[asked(body)], model=POLICY)
    caplog.set_level(logging.DEBUG)
    jobs = {question: await rig.ask(question) for question in faults}
    for question, asked_job in jobs.items():
        job = await rig.finished(asked_job["id"])
        trace = await rig.trace(job["id"])
        record(tally, job["status"] == "failed")
        assert job["status"] == "failed", job
        assert job["error"]["code"] in ("model_unavailable", "model_timeout",
                                        "model_bad_response")
        transient = question != "Policy HTML?"
        assert rig.calls(POLICY, question) == ATTEMPTS * ((RETRIES + 1) if transient else 1)
        # The trace says how it ended, beside the captions it had read.
        assert trace["status"] == "failed" and trace["rounds"] == []
        assert trace["summary"]["outcome"] == "failed"
        assert trace["summary"]["error"] and len(trace["summary"]["high_captions"]) == 4
        assert_no_server_path(str(job) + str(trace), rig.runtime)
    for text in (str(jobs), caplog.text):
        tally.add("keys_logged", int(API_SECRET in text))
        assert API_SECRET not in text


# --- the captioner ----------------------------------------------------------------------------


async def test_a_failing_captioner_fails_the_job_and_stores_no_caption(rig: Rig,
                                                                       tally) -> None:
    faults = {"500": Reply.error(500), "timeout": Reply.slow("<caption>x</caption>", 3),
              "empty": Reply(text=""), "blank in its tags": Reply(text="<caption> </caption>"),
              "image refused (400)": Reply.error(400, "image content rejected by policy")}
    for fault, reply in faults.items():
        rig.server.set_handler(every(reply), model=CAPTIONER)
        before = rig.calls(CAPTIONER)
        job = await rig.finished((await rig.ask(video_id=await rig.fresh_video()))["id"])
        trace = await rig.trace(job["id"])
        record(tally, job["status"] == "failed")
        assert job["status"] == "failed", (fault, job)
        assert trace["summary"]["outcome"] == "failed" and trace["summary"]["error"], fault
        # Each attempt asks for the four top-level captions, each retried when transient.
        transient = fault in ("500", "timeout")
        assert 0 < rig.calls(CAPTIONER) - before <= ATTEMPTS * 4 * (RETRIES + transient)
        with rig.runtime.session_factory() as session:
            assert session.scalars(select(CaptionNode.caption)).all() == [], fault
    assert rig.calls(POLICY) == 0  # no job got as far as the policy


async def test_an_empty_caption_once_is_asked_again_not_kept(rig: Rig, tally) -> None:
    first = [True]

    def flaky(body: dict[str, Any]) -> str:
        if first[0]:
            first[0] = False
            return "   "
        return captioner_reply(body)

    rig.server.set_handler(flaky, model=CAPTIONER)
    job = await rig.finished((await rig.ask())["id"])
    record(tally, job["status"] == "succeeded")
    assert job["status"] == "succeeded", job
    with rig.runtime.session_factory() as session:
        captions = session.scalars(select(CaptionNode.caption)).all()
    assert captions and all(c.strip() for c in captions)


async def test_captions_with_nul_and_lone_surrogates_are_stored_clean(rig: Rig, tally) -> None:
    """Postgres cannot hold NUL or unpaired surrogates; such a caption once failed the job."""
    rig.server.set_handler(every("<caption>a\x00b \ud83d c</caption>"), model=CAPTIONER)
    job = await rig.finished((await rig.ask())["id"])
    record(tally, job["status"] == "succeeded")
    assert job["status"] == "succeeded", job
    with rig.runtime.session_factory() as session:
        captions = set(session.scalars(select(CaptionNode.caption)).all())
    assert captions == {"ab ? c"}


async def test_a_captioner_refusing_in_words_is_recorded_and_navigated_around(rig: Rig,
                                                                              tally) -> None:
    refusal = "I'm sorry, but I can't help with identifying people in these images."
    rig.server.set_handler(every(refusal), model=CAPTIONER)
    job = await rig.finished((await rig.ask())["id"])
    trace = await rig.trace(job["id"])
    record(tally, job["status"] in ("succeeded", "no_answer"))
    assert job["status"] in ("succeeded", "no_answer"), job
    assert len(trace["rounds"]) <= ROUNDS
    assert {h["caption"] for h in trace["summary"]["high_captions"]} == {refusal}


# --- video_qa -------------------------------------------------------------------------------


async def test_a_failing_video_qa_is_recorded_on_its_round(rig: Rig, tally) -> None:
    faults = {"500": Reply.error(500), "timeout": Reply.slow("<answer>x</answer>", 3),
              "image refused (400)": Reply.error(400, "image content rejected")}
    for fault, reply in faults.items():
        rig.server.set_handler(every(reply), model=VIDEO_QA)
        before = rig.calls(VIDEO_QA)
        job = await rig.finished((await rig.ask(f"What is shown ({fault})?"))["id"])
        trace = await rig.trace(job["id"])
        record(tally, job["status"] == "failed")
        assert job["status"] == "failed", (fault, job)
        last = trace["rounds"][-1]
        assert last["kind"] == "video_qa" and last["round"]["error"], last
        assert [r["kind"] for r in trace["rounds"]] == ["get_caption", "get_caption", "video_qa"]
        assert trace["summary"]["outcome"] == "failed"
        transient = fault != "image refused (400)"
        assert rig.calls(VIDEO_QA) - before == ATTEMPTS * ((RETRIES + 1) if transient else 1)


async def test_an_empty_refusing_or_rambling_video_qa_is_an_observation(rig: Rig,
                                                                        tally) -> None:
    for reply in ("", "I can't look at these images.", "x" * 50_000):
        rig.server.set_handler(every(reply), model=VIDEO_QA)
        rig.server.enqueue(MEDIUM, LEAF, QA, ANSWER, model=POLICY)
        job = await rig.finished((await rig.ask())["id"])
        trace = await rig.trace(job["id"])
        record(tally, job["status"] == "succeeded")
        assert job["status"] == "succeeded", job
        assert trace["rounds"][2]["round"]["observation"] == f"<information>{reply}</information>"
