"""The navigation loop over real HTTP: LLMPolicy, OpenAICaptioner and OpenAIFrameQA talking to
the scripted model server, on a fixture tree of 3000 frames at 25 fps (120 s, width 4).

The golden test checks the request bodies the server received against the spec's strings,
character for character; the others walk every branch of the loop and every failure mode
of a model server.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from app.core.navigator import Budgets, navigate, trace_of
from app.core.ports import SubtitleLine
from app.core.protocol import reply_regex
from app.core.trace import Trace
from app.core.tree import VideoGeometry
from app.errors import ModelError
from app.models.openai_client import OpenAIChatClient
from app.models.openai_vision import OpenAICaptioner, OpenAIFrameQA
from app.models.policy import LLMPolicy
from tests.support.navigation import SyntheticCaptionSource, SyntheticVideoQA
from tests.support.scripted_server import (
    CAPTIONER,
    POLICY,
    VIDEO_QA,
    Reply,
    ScriptedServer,
    captioner_reply,
)

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "longvideo-r1-prompts.json"
PROMPTS_FILE = SPEC if SPEC.exists() else (
    Path(__file__).resolve().parents[2] / "app" / "core" / "prompts.json")
PROMPTS: dict[str, str] = json.loads(PROMPTS_FILE.read_text("utf-8"))

POLICY_MODEL, CAPTION_MODEL, QA_MODEL = "LongVideo-R1-Qwen3", "Qwen3-VL-cap", "Qwen3-VL-qa"
QUESTION, OPTIONS = "What colour is the door?", ("red", "blue")
SUBTITLES = (SubtitleLine(11.0, 12.0, "open the door"), SubtitleLine(11.5, 12.55, "now"))

MEDIUM = "<think>Segment 1 may show the door.</think>\n<tool>get_caption((1,2))</tool>"
LEAF = "<think>Medium (1,2) mentions it.</think>\n<tool>get_caption((1, 2, 3))</tool>"
QA = '<think>Look closer.</think>\n<tool>video_qa((1,2,3), "What colour is the door?")</tool>'
ANSWER = "<think>It is red.</think>\n<answer>A</answer>"


@dataclass
class Rig:
    server: ScriptedServer
    geometry: VideoGeometry
    policy: LLMPolicy
    captions: SyntheticCaptionSource
    video_qa: SyntheticVideoQA
    clients: list[OpenAIChatClient]

    async def run(self, budgets: Budgets | None = None) -> Trace:
        return await navigate(question=QUESTION, options=OPTIONS, geometry=self.geometry,
                              policy=self.policy, captions=self.captions,
                              video_qa=self.video_qa, budgets=budgets)

    async def shorten_timeout(self, role: str, timeout_s: float, retries: int = 2) -> None:
        """Give one role a client with a short timeout (the others keep a generous one, so
        a busy machine does not time them out)."""
        holders = {"policy": self.policy, "captioner": self.captions.captioner,
                   "video_qa": self.video_qa.frame_qa}
        holder = holders[role]
        old = holder.client  # type: ignore[attr-defined]
        new = _client(self.server, role, old.model, timeout_s=timeout_s, retries=retries)
        holder.client = new  # type: ignore[attr-defined]
        self.clients.append(new)

    def policy_requests(self) -> list[list[dict]]:
        return [r.messages for r in self.server.chat_requests(POLICY_MODEL)]


def _client(server: ScriptedServer, role: str, model: str, **options: object) -> OpenAIChatClient:
    settings: dict[str, object] = {"role": role, "base_url": server.base_url, "model": model,
                                   "retries": 2, "backoff_s": 0.01, "timeout_s": 10.0}
    settings.update(options)
    return OpenAIChatClient(**settings)  # type: ignore[arg-type]


@pytest.fixture
async def rig(scripted_server: ScriptedServer) -> AsyncIterator[Rig]:
    geometry = VideoGeometry(3000, 25.0)
    clients = [_client(scripted_server, "policy", POLICY_MODEL),
               _client(scripted_server, "captioner", CAPTION_MODEL),
               _client(scripted_server, "video_qa", QA_MODEL)]
    captions = SyntheticCaptionSource(geometry, OpenAICaptioner(clients[1]), SUBTITLES)
    yield Rig(scripted_server, geometry, LLMPolicy(clients[0]), captions,
              SyntheticVideoQA(geometry, OpenAIFrameQA(clients[2])), clients)
    for client in clients:
        await client.aclose()


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _caption_of(server: ScriptedServer, label: str) -> str:
    """The caption the scripted captioner wrote for the node whose first frame is ``label``."""
    for request in server.chat_requests(CAPTION_MODEL):
        first = request.messages[1]["content"][0]["text"]
        if first == f"Frame at {label}s" or first.startswith(f"{label}s. Subtitle:"):
            reply = captioner_reply(request.body)
            return reply.removeprefix("<caption>").removesuffix("</caption>")
    raise AssertionError(f"no caption request starting at {label}s")


# --- the golden conversation ------------------------------------------------------------


async def test_requests_match_the_spec_character_for_character(rig: Rig) -> None:
    rig.server.enqueue(MEDIUM, LEAF, QA, ANSWER, model=POLICY_MODEL)
    trace = await rig.run()
    assert (trace.outcome, trace.answer) == ("answered", "A")

    # The policy: its last request holds the whole conversation.
    requests = rig.policy_requests()
    assert len(requests) == 4
    system = PROMPTS["navigation_system_prompt"].replace("{width}", "4")
    highs = [
        PROMPTS["high_caption_line"].format(index=h, start=f"{30.0 * (h - 1):.1f}",
                                            end=f"{30.0 * h:.1f}",
                                            caption=_caption_of(rig.server, f"{30.0 * (h - 1)}"))
        for h in range(1, 5)
    ]
    first_user = [_text("What colour is the door?\nA. red\nB. blue\n"),
                  _text("The total duration of the video is 120.0 seconds."),
                  *map(_text, highs)]
    medium_obs = ("Medium-level Caption from tool get_caption((1,2)). From 7.5 to 15.0:"
                  + _caption_of(rig.server, "7.5"))
    low_obs = ("Low-level Caption from tool get_caption((1,2,3)). From 11.3 to 13.1:"
               + _caption_of(rig.server, "11.3"))
    qa_answer = "Between 11.3s to 13.1s: What colour is the door?"
    assert requests[-1] == [
        {"role": "system", "content": system},
        {"role": "user", "content": first_user},
        {"role": "assistant", "content": [_text(MEDIUM)]},
        {"role": "user", "content": [_text(medium_obs)]},
        {"role": "assistant", "content": [_text(LEAF)]},
        {"role": "user", "content": [_text(low_obs)]},
        {"role": "assistant", "content": [_text(QA)]},
        {"role": "user", "content": [_text(f"<information>{qa_answer}</information>")]},
    ]
    assert [len(r) for r in requests] == [2, 4, 6, 8]
    assert all(r == requests[-1][: len(r)] for r in requests)

    # The captioner, for the leaf: low prompt, 16 frames, subtitles joined with ",".
    leaf_times = [round(int(i) / 25, 1) for i in np.linspace(282, 328, 16, dtype=int)]
    (leaf_request,) = [r for r in rig.server.chat_requests(CAPTION_MODEL)
                       if r.messages[0]["content"].find("Add more detailed") >= 0]
    leaf_system, leaf_user = leaf_request.messages
    assert leaf_system == {"role": "system", "content": PROMPTS["caption_system_prompt_low"]
                           .replace("{num_frame}", "16").replace("{num_words}", "200")}
    labels = [p["text"] for p in leaf_user["content"][::2]]
    expected_labels = []
    for t in leaf_times:
        showing = [s.text for s in SUBTITLES if s.start <= t <= s.end]
        expected_labels.append(f"{t}s. Subtitle: {','.join(showing)}." if showing
                               else f"Frame at {t}s")
    assert labels == expected_labels
    assert "11.6s. Subtitle: open the door,now." in labels and "Frame at 13.1s" in labels
    assert all(p["type"] == "image_url" for p in leaf_user["content"][1::2])

    # The captioner for high and medium nodes: the other prompt, 64 and 32 frames, 300 words.
    prompts_seen = sorted(
        (len(r.messages[1]["content"]) // 2, r.messages[0]["content"])
        for r in rig.server.chat_requests(CAPTION_MODEL) if r is not leaf_request
    )
    high_prompt = PROMPTS["caption_system_prompt"].replace("{num_words}", "300")
    assert prompts_seen == [(32, high_prompt.replace("{num_frame}", "32"))] + [
        (64, high_prompt.replace("{num_frame}", "64"))] * 4

    # video_qa: its system prompt, the query, then 16 labelled frames.
    (qa_request,) = rig.server.chat_requests(QA_MODEL)
    qa_system, qa_user = qa_request.messages
    assert qa_system == {"role": "system", "content": PROMPTS["video_qa_system_prompt"]}
    assert qa_user["content"][0] == _text("What colour is the door?")
    assert [p["text"] for p in qa_user["content"][1::2]] == [
        f"Video frame at {t} seconds:" for t in leaf_times]


# --- a whole navigation driven by the server's own policy script --------------------------


async def test_scripted_policy_navigates_to_a_letter(rig: Rig) -> None:
    trace = await rig.run()
    assert trace.outcome == "answered" and trace.answer in ("A", "B")
    assert [r.kind for r in trace.rounds] == ["get_caption", "get_caption", "video_qa", "answer"]
    assert [r.node for r in trace.rounds[:3]] == [[1, 1], [1, 1, 1], [1, 1, 1]]
    roles = trace.summary.roles
    assert (roles["policy"].calls, roles["captioner"].calls, roles["video_qa"].calls) == (4, 6, 1)
    assert rig.server.stats()["roles"] == {POLICY: 4, CAPTIONER: 6, VIDEO_QA: 1}
    assert roles["policy"].completion_tokens > 0 and roles["captioner"].model_seconds > 0
    assert trace.summary.violations == 0


async def test_constrained_decoding_sends_the_width_regex(rig: Rig) -> None:
    rig.policy.constrained = True
    trace = await rig.run()
    assert trace.outcome == "answered"
    regex = reply_regex(4)
    for request in rig.server.chat_requests(POLICY_MODEL):
        assert request.body["structured_outputs"] == {"regex": regex}
    for rnd in trace.rounds:
        assert re.fullmatch(regex, rnd.raw_reply), rnd.raw_reply


# --- every branch of reading a reply -----------------------------------------------------

THINK_FIRST = PROMPTS["think_first_notice"]
LAST_ROUND = PROMPTS["last_round_notice"]


@pytest.mark.parametrize("bad_reply, violation, notice", [
    ("<answer>A</answer>", "answer_without_think", True),
    ("I think it is A.", "no_tool_or_answer", True),
    ("<think>hm</think><tool>get_caption((1,</tool>", "unparseable_tool_call", False),
    ("<think>hm</think><tool>zoom((1,2))</tool>", "unknown_tool", False),
    ("<think>hm</think><tool>get_caption((5,1))</tool>", "node_out_of_range", False),
    ("<think>hm</think><tool>video_qa((1,2), 'x')</tool>", "bad_arguments", False),
])
async def test_bad_replies_are_dropped_and_the_policy_asked_again(
    rig: Rig, bad_reply: str, violation: str, notice: bool,
) -> None:
    rig.server.enqueue(bad_reply, ANSWER, model=POLICY_MODEL)
    trace = await rig.run()
    assert (trace.outcome, trace.answer) == ("answered", "A")
    assert [(r.kind, r.violation) for r in trace.rounds] == [
        ("invalid", violation), ("answer", None)]
    first, second = rig.policy_requests()
    # The bad reply never enters the conversation; only the think-first notice may.
    expected = first + [{"role": "user", "content": THINK_FIRST}] if notice else first
    assert second == expected
    assert bad_reply not in json.dumps(second)


async def test_last_round_notice_then_no_answer(rig: Rig) -> None:
    rig.server.enqueue(MEDIUM, LEAF, LEAF, model=POLICY_MODEL)
    trace = await rig.run(Budgets(max_rounds=3))
    assert (trace.outcome, trace.answer, trace.stop_reason) == ("no_answer", None, "max_rounds")
    requests = rig.policy_requests()
    assert len(requests) == 3
    assert requests[2][-1] == {"role": "user", "content": [_text(LAST_ROUND)]}
    notice = {"role": "user", "content": [_text(LAST_ROUND)]}
    assert all(notice not in r for r in requests[:2])
    assert trace.rounds[-1].violation == "tool_call_in_last_round"
    # The leaf asked again in the last round is not served: 4 high + medium + leaf.
    assert rig.server.calls(CAPTION_MODEL) == 6


async def test_video_qa_budget_exhausted_forces_an_answer(rig: Rig) -> None:
    rig.server.enqueue(MEDIUM, LEAF, QA, ANSWER, model=POLICY_MODEL)
    trace = await rig.run(Budgets(max_video_qa_calls=0))
    assert (trace.outcome, trace.answer) == ("answered", "A")
    assert trace.rounds[2].violation == "video_qa_budget_exhausted"
    assert rig.server.calls(QA_MODEL) == 0
    last_request = rig.policy_requests()[-1]
    assert last_request[-1] == {"role": "user", "content": [_text(LAST_ROUND)]}


# --- model servers failing ---------------------------------------------------------------


async def test_policy_5xx_and_caption_timeout_are_retried(rig: Rig) -> None:
    rig.server.fail_next(2, 500, model=POLICY_MODEL)
    rig.server.enqueue(MEDIUM, ANSWER, model=POLICY_MODEL)
    rig.server.enqueue(Reply.slow("<caption>too late</caption>", 2.0), model=CAPTION_MODEL)
    await rig.shorten_timeout("captioner", 1.0)
    trace = await rig.run()
    assert (trace.outcome, trace.answer) == ("answered", "A")
    assert trace.summary.roles["policy"].calls == 2
    assert rig.server.calls(POLICY_MODEL) == 4
    # One high caption timed out once: 4 high + 1 retry + 1 medium.
    assert rig.server.calls(CAPTION_MODEL) == 6
    assert all("too late" not in high.caption for high in trace.high_captions)


async def test_video_qa_model_that_always_fails(rig: Rig) -> None:
    rig.server.fail_always(QA_MODEL, 500)
    rig.server.enqueue(MEDIUM, LEAF, QA, model=POLICY_MODEL)
    with pytest.raises(ModelError) as caught:
        await rig.run()
    error = caught.value
    assert (error.code, error.kind) == ("model_unavailable", "unavailable")
    assert "video_qa" in error.message and rig.server.base_url in error.message
    assert rig.server.calls(QA_MODEL) == 3
    partial = trace_of(error)
    assert partial is not None and partial.outcome == "failed"
    assert [r.kind for r in partial.rounds] == ["get_caption", "get_caption", "video_qa"]
    assert partial.rounds[-1].error is not None


async def test_policy_timeouts_exhausted(rig: Rig) -> None:
    rig.server.set_handler(lambda body: Reply.slow(ANSWER, 1.5), model=POLICY_MODEL)
    await rig.shorten_timeout("policy", 0.5, retries=1)
    with pytest.raises(ModelError) as caught:
        await rig.run()
    assert caught.value.code == "model_timeout"
    assert rig.server.calls(POLICY_MODEL) == 2


async def test_server_down_is_a_clear_model_error(rig: Rig) -> None:
    rig.server.stop()
    with pytest.raises(ModelError) as caught:
        await rig.run()
    assert caught.value.code == "model_unavailable"
    assert "captioner" in caught.value.message
    assert "VIDNAV_CAPTIONER_BASE_URL" in caught.value.message
    partial = trace_of(caught.value)
    assert partial is not None and partial.outcome == "failed" and partial.rounds == []


async def test_server_down_for_a_while_then_back(rig: Rig) -> None:
    rig.server.enqueue(MEDIUM, ANSWER, model=POLICY_MODEL)
    for client in rig.clients:
        client.retries, client.backoff_s = 6, 0.05
    rig.server.down_for(0.2)
    trace = await rig.run()
    assert (trace.outcome, trace.answer) == ("answered", "A")
