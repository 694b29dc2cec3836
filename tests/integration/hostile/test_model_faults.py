"""Model faults, end to end: a question asked over the API about an uploaded video, answered
by the real navigation service (Postgres, Redis cache, ffmpeg frames, the in-process task
queue) against the scripted OpenAI-compatible server, with one role misbehaving.

Whatever a model does (garbage, endless ``<think>``, huge or code-like tool calls, wrong
ids, timeouts, 500s, empty replies, refusals) the job ends in a final state within a bounded
number of model calls, and the trace the API serves records what happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db.models import CaptionNode
from tests.integration.hostile.conftest import assert_no_server_path
from tests.integration.hostile.stack import (
    API_SECRET,
    ATTEMPTS,
    CAPTIONER,
    POLICY,
    RETRIES,
    ROUNDS,
    TIMEOUT_S,
    VIDEO_QA,
    Rig,
    asked,
)
from tests.support.scripted_server import Reply, captioner_reply

# The scripted policy's happy path, by hand (medium, leaf, video_qa, answer).
MEDIUM = "<think>Segment 1 first.</think><tool>get_caption((1,1))</tool>"
LEAF = "<think>Its first leaf.</think><tool>get_caption((1,1,1))</tool>"
QA = '<think>Look closer.</think><tool>video_qa((1,1,1), "What is shown?")</tool>'
ANSWER = "<think>Enough.</think><answer>A test pattern.</answer>"


def every(reply: str | Reply | Callable[[dict[str, Any]], str | Reply]
          ) -> Callable[[dict[str, Any]], str | Reply]:
    return reply if callable(reply) else (lambda body: reply)


def assert_calls(calls: int, *, transient: bool, timeout: bool = False) -> None:
    """Each task attempt called the model once, and again per client retry when the failure
    was transient. A retry after a timeout may reach the server only once the abandoned
    call's reply is written (the server reads a connection in order), after the job has
    failed: then the count is short by the calls still on their way, never over."""
    most = ATTEMPTS * ((RETRIES + 1) if transient else 1)
    assert (ATTEMPTS <= calls <= most) if timeout else calls == most, (calls, most)


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
    assert job["status"] == "succeeded", job["error"]
    assert trace["rounds"][2]["round"]["query"] == query
    (request,) = rig.server.chat_requests(VIDEO_QA)
    assert request.messages[1]["content"][0]["text"] == query


async def test_a_policy_server_that_fails_fails_the_job_after_bounded_attempts(
    rig: Rig, tally, caplog: pytest.LogCaptureFixture,
) -> None:
    faults = {"Policy 500?": Reply.error(500),
              "Policy timeout?": Reply.slow(ANSWER, TIMEOUT_S * 2),
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
        assert_calls(rig.calls(POLICY, question), transient=question != "Policy HTML?",
                     timeout=question == "Policy timeout?")
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
    # The timeout last: an abandoned call may reach the server after its job ended.
    faults = {"500": Reply.error(500), "empty": Reply(text=""),
              "blank in its tags": Reply(text="<caption> </caption>"),
              "image refused (400)": Reply.error(400, "image content rejected by policy"),
              "timeout": Reply.slow("<caption>x</caption>", TIMEOUT_S * 2)}
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
    assert job["status"] == "succeeded", job["error"]
    with rig.runtime.session_factory() as session:
        captions = session.scalars(select(CaptionNode.caption)).all()
    assert captions and all(c.strip() for c in captions)


async def test_captions_with_nul_and_lone_surrogates_are_stored_clean(rig: Rig, tally) -> None:
    """Postgres cannot hold NUL or unpaired surrogates; such a caption once failed the job."""
    rig.server.set_handler(every("<caption>a\x00b \ud83d c</caption>"), model=CAPTIONER)
    job = await rig.finished((await rig.ask())["id"])
    record(tally, job["status"] == "succeeded")
    assert job["status"] == "succeeded", job["error"]
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
    # The timeout last: an abandoned call may reach the server after its job ended.
    faults = {"500": Reply.error(500),
              "image refused (400)": Reply.error(400, "image content rejected"),
              "timeout": Reply.slow("<answer>x</answer>", TIMEOUT_S * 2)}
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
        assert_calls(rig.calls(VIDEO_QA) - before, transient=fault != "image refused (400)",
                     timeout=fault == "timeout")


async def test_an_empty_refusing_or_rambling_video_qa_is_an_observation(rig: Rig,
                                                                        tally) -> None:
    for reply in ("", "I can't look at these images.", "x" * 50_000):
        rig.server.set_handler(every(reply), model=VIDEO_QA)
        rig.server.enqueue(MEDIUM, LEAF, QA, ANSWER, model=POLICY)
        job = await rig.finished((await rig.ask())["id"])
        trace = await rig.trace(job["id"])
        record(tally, job["status"] == "succeeded")
        assert job["status"] == "succeeded", job["error"]
        assert trace["rounds"][2]["round"]["observation"] == f"<information>{reply}</information>"
