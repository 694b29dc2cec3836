"""The policy tier against a real vLLM (CPU build) serving SmolLM2-135M-Instruct.

A 135M model is no navigator, so these tests do not judge answers: they prove that the
reply grammar vidnav sends as ``structured_outputs`` is accepted by vLLM's grammar engine
and keeps every reply inside the protocol, and that the real loop runs to a finished,
serialisable trace against a real server. Needs ``scripts/setup_vllm_cpu.sh`` to have run.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from app.core import protocol
from app.core.navigator import Budgets, navigate
from app.core.ports import CaptionResult, Message, NodeId, VideoQAResult
from app.core.trace import Trace, TraceRound
from app.core.tree import HIGH, LOW, MEDIUM, VideoGeometry, node_key
from app.models.openai_client import OpenAIChatClient
from app.models.policy import LLMPolicy
from scripts.vllm_server import VLLMServer, missing_prerequisites, process_group_alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Violations a well-formed reply cannot commit; the grammar must rule all of them out.
GRAMMAR_VIOLATIONS = {
    "answer_without_think",
    "tool_without_think",
    "no_tool_or_answer",
    "unparseable_tool_call",
    "unknown_tool",
    "bad_arguments",
    "node_out_of_range",
}

FPS = 24.0
NUM_FRAMES = 4 * 60 * 24  # a 4-minute video: width 4, 64 leaves of 3.75 s
QUESTION = "What colour is the kite the girl flies?"
OPTIONS = ("Red", "Blue", "Green", "Yellow")
CLUE_LEAF: NodeId = (3, 2, 4)
# Every reply fits in the grammar's bounds (1200 chars of thinking, a 200-char query or
# answer): at most one token per character, so this many tokens always let it close.
MAX_REPLY_TOKENS = 1600

HIGH_CAPTIONS: dict[NodeId, str] = {
    (1,): "A girl walks through a village market at dawn, carrying a folded bundle.",
    (2,): "She climbs a grassy hill; wind bends the grass and clouds move fast.",
    (3,): "On the hilltop she unfolds the bundle and launches a kite into the wind.",
    (4,): "At dusk she walks home with the kite under her arm while lamps light up.",
}


def fixture_caption(node: NodeId) -> str:
    """A fixed caption for every node of the fixture tree; only one leaf names the colour."""
    if len(node) == HIGH:
        return HIGH_CAPTIONS[node]
    parent = HIGH_CAPTIONS[node[:1]]
    if len(node) == MEDIUM:
        return f"{parent} Part {node[1]} of this stretch shows the same scene more closely."
    if node == CLUE_LEAF:
        return "Close-up: the kite rises above the girl; its fabric is bright red."
    return f"{parent} A short shot from moment {node[1]}.{node[2]}; no kite colour is visible."


class FixtureCaptions:
    """``CaptionSource`` over fixed texts; records which nodes were asked for."""

    def __init__(self, geometry: VideoGeometry) -> None:
        self.geometry = geometry
        self.requested: list[NodeId] = []

    async def get_caption(self, node: NodeId) -> CaptionResult:
        node = self.geometry.validate(node)
        self.requested.append(node)
        return CaptionResult(
            node=node,
            caption=fixture_caption(node),
            frame_times=tuple(self.geometry.frame_times(node)),
            cached=False,
        )


class FixtureVideoQA:
    """``VideoQA`` stand-in: a fixed answer per leaf, the clue leaf knows the colour."""

    def __init__(self, geometry: VideoGeometry) -> None:
        self.geometry = geometry
        self.calls: list[tuple[NodeId, str]] = []

    async def ask(self, node: NodeId, query: str) -> VideoQAResult:
        node = self.geometry.validate(node)
        self.calls.append((node, query))
        answer = "The kite is red." if node == CLUE_LEAF else "No kite is visible here."
        return VideoQAResult(
            node=node,
            query=query,
            answer=answer,
            raw_reply=f"<answer>{answer}</answer>",
            frame_times=tuple(self.geometry.frame_times(node, 16)),
        )


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[VLLMServer]:
    problem = missing_prerequisites()
    if problem:
        pytest.skip(f"real vLLM tier not set up: {problem}")
    # 8192 tokens: six rounds of a rambling small model plus a full reply budget fit.
    server = VLLMServer(max_model_len=8192)
    server.start()
    try:
        server.wait_ready(timeout=1200)
        yield server
    finally:
        pgid = server.process.pid if server.process is not None else None
        server.stop()
        # Engine workers live in the server's process group; none may outlive the module.
        assert pgid is None or not process_group_alive(pgid)


@pytest.fixture
async def policy_client(vllm_server: VLLMServer) -> AsyncIterator[OpenAIChatClient]:
    client = OpenAIChatClient(
        role="policy",
        base_url=vllm_server.base_url,
        model=vllm_server.served_model_name,
        temperature=0.0,
        max_tokens=MAX_REPLY_TOKENS,
        timeout_s=900.0,
        retries=0,
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def geometry() -> VideoGeometry:
    geometry = VideoGeometry(NUM_FRAMES, FPS)
    assert geometry.width == 4
    return geometry


def first_messages(geometry: VideoGeometry) -> list[Message]:
    return protocol.initial_messages(
        question=QUESTION,
        options=OPTIONS,
        width=geometry.width,
        duration_label=geometry.duration_label,
        high_captions=[
            (*geometry.span_labels(node), fixture_caption(node)) for node in geometry.nodes(HIGH)
        ],
    )


async def test_constrained_reply_matches_the_protocol_grammar(
    policy_client: OpenAIChatClient, geometry: VideoGeometry
) -> None:
    pattern = protocol.reply_regex(geometry.width)
    text, usage = await policy_client.chat(
        first_messages(geometry), structured_outputs={"regex": pattern}
    )

    assert re.fullmatch(pattern, text), f"reply outside the grammar: {text!r}"
    parsed = protocol.parse_reply(text)
    assert parsed.think
    assert (parsed.tool is None) != (parsed.answer is None)
    if parsed.tool is not None:
        call = protocol.parse_tool_call(parsed.tool, geometry.width)
        assert all(1 <= i <= geometry.width for i in call.node)
    assert usage.completion_tokens is not None
    assert 0 < usage.completion_tokens < MAX_REPLY_TOKENS
    assert usage.model == "smollm2-135m-instruct"


async def test_navigation_loop_finishes_within_the_protocol(
    policy_client: OpenAIChatClient, geometry: VideoGeometry
) -> None:
    captions = FixtureCaptions(geometry)
    video_qa = FixtureVideoQA(geometry)
    streamed: list[int] = []

    async def on_round(rnd: TraceRound) -> None:
        streamed.append(rnd.index)

    max_rounds = 6
    trace = await navigate(
        question=QUESTION,
        options=OPTIONS,
        geometry=geometry,
        policy=LLMPolicy(policy_client, constrained=True),
        captions=captions,
        video_qa=video_qa,
        budgets=Budgets(max_rounds=max_rounds),
        on_round=on_round,
    )

    pattern = protocol.reply_regex(geometry.width)
    assert trace.outcome in ("answered", "no_answer"), trace.error
    assert trace.rounds and len(trace.rounds) <= max_rounds
    assert streamed == [rnd.index for rnd in trace.rounds] == list(range(len(trace.rounds)))
    for rnd in trace.rounds:
        assert re.fullmatch(pattern, rnd.raw_reply), f"round {rnd.index}: {rnd.raw_reply!r}"
        assert rnd.kind != "invalid", f"round {rnd.index}: {rnd.violation} {rnd.raw_reply!r}"
        assert rnd.violation not in GRAMMAR_VIOLATIONS
        assert rnd.think
        assert rnd.policy_usage.completion_tokens
    if trace.outcome == "answered":
        assert trace.rounds[-1].kind == "answer"
        assert trace.answer == trace.rounds[-1].answer
        assert all(rnd.kind != "answer" for rnd in trace.rounds[:-1])
    else:
        assert len(trace.rounds) == max_rounds
        assert trace.stop_reason == "max_rounds"
        assert trace.answer is None
        assert trace.rounds[-1].last_round

    # What the ports served is what the trace says was served.
    high_nodes = [tuple(high.node) for high in trace.high_captions]
    assert high_nodes == geometry.nodes(HIGH)
    served_captions = [rnd for rnd in trace.rounds if rnd.kind == "get_caption" and rnd.observation]
    for rnd in served_captions:
        node = tuple(rnd.node or ())
        assert len(node) in (MEDIUM, LOW)
        assert rnd.node_key == node_key(node)
        assert (rnd.observation or "").endswith(":" + fixture_caption(node))
    fetched_by_rounds = [node for node in captions.requested if len(node) != HIGH]
    assert len(set(fetched_by_rounds)) == len(fetched_by_rounds)
    assert set(fetched_by_rounds) == {tuple(rnd.node or ()) for rnd in served_captions}
    served_qa = [rnd for rnd in trace.rounds if rnd.kind == "video_qa" and rnd.observation]
    assert [(tuple(rnd.node or ()), rnd.query) for rnd in served_qa] == video_qa.calls

    summary = trace.summary
    assert summary.rounds == len(trace.rounds)
    assert summary.roles["policy"].calls == len(trace.rounds)
    assert summary.tool_calls["invalid"] == 0

    data = trace.to_dict()
    wire = json.dumps(data)
    assert json.loads(wire) == data
    assert Trace.from_dict(json.loads(wire)).to_dict() == data
