"""The navigation loop: conversation shape, every kind of bad reply, budgets, failures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.navigator import Budgets, InvalidBudget, navigate, trace_of
from app.core.ports import NodeId
from app.core.protocol import InvalidQuestion, reply_regex
from app.core.trace import Trace, TraceRound
from app.core.tree import VideoGeometry
from app.errors import InvalidInput
from tests.unit.fakes import (
    FakeCaptions,
    FakeVideoQA,
    ManualClock,
    ScriptedPolicy,
    answer,
    texts,
    tool,
)

GEOMETRY = VideoGeometry(7357, 29.97)  # 245.5 s, width 4
TEN_MINUTES = VideoGeometry(18000, 30.0)  # 600 s, width 4, round numbers

THINK_FIRST = "You must think first before answering or calling the tool."
LAST_ROUND = "This is the last round. You must provide the final answer in this round."


class Harness:
    """The three fakes on one clock, and a runner."""

    def __init__(self, replies: Any, geometry: VideoGeometry = GEOMETRY, **captions: Any) -> None:
        self.geometry = geometry
        self.clock = ManualClock()
        self.policy = ScriptedPolicy(self.clock, replies)
        self.captions = FakeCaptions(geometry, self.clock, **captions)
        self.video_qa = FakeVideoQA(self.clock)
        self.rounds_seen: list[TraceRound] = []

    async def on_round(self, rnd: TraceRound) -> None:
        self.rounds_seen.append(rnd)

    async def run(self, **kwargs: Any) -> Trace:
        kwargs.setdefault("question", "What colour is the bus?")
        kwargs.setdefault("options", ["Red", "Blue", "Green", "Yellow"])
        return await navigate(
            geometry=self.geometry, policy=self.policy, captions=self.captions,
            video_qa=self.video_qa, on_round=self.on_round, clock=self.clock, **kwargs,
        )


def user(*parts: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": p} for p in parts]}


def assistant(reply: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": reply}]}


async def test_golden_conversation_through_every_tool() -> None:
    replies = [
        tool("get_caption((2,3))"),
        tool("get_caption((2, 3, 4))"),
        tool('video_qa((2,3,4), "what colour is the bus?")'),
        answer("B"),
    ]
    h = Harness(replies)
    trace = await h.run()

    assert trace.outcome == "answered" and trace.answer == "B"
    assert trace.stop_reason == "answered"
    assert h.captions.calls == [(1,), (2,), (3,), (4,), (2, 3), (2, 3, 4)]
    assert h.video_qa.calls == [((2, 3, 4), "what colour is the bus?")]
    spec_system = h.policy.messages[0][0]
    assert spec_system["role"] == "system" and "divided into 4 major segments" in spec_system[
        "content"]
    first_user = user(
        "What colour is the bus?\nA. Red\nB. Blue\nC. Green\nD. Yellow\n",
        "The total duration of the video is 245.5 seconds.",
        "High-level Caption 1 from 0.0 to 61.4:high caption of 1",
        "High-level Caption 2 from 61.4 to 122.7:high caption of 2",
        "High-level Caption 3 from 122.8 to 184.1:high caption of 3",
        "High-level Caption 4 from 184.1 to 245.4:high caption of 4",
    )
    assert h.policy.messages[3] == [
        spec_system,
        first_user,
        assistant(replies[0]),
        user("Medium-level Caption from tool get_caption((2,3)). From 92.1 to 107.4:"
             "medium caption of 2,3"),
        assistant(replies[1]),
        user("Low-level Caption from tool get_caption((2,3,4)). From 103.6 to 107.4:"
             "low caption of 2,3,4"),
        assistant(replies[2]),
        user("<information>seen at 2,3,4: what colour is the bus?</information>"),
    ]
    # Each call sees the previous conversation plus exactly one exchange.
    for i in range(3):
        assert h.policy.messages[i + 1][: len(h.policy.messages[i])] == h.policy.messages[i]
    assert [r.kind for r in trace.rounds] == ["get_caption", "get_caption", "video_qa", "answer"]
    assert all(r.violation is None for r in trace.rounds)
    assert trace.rounds[1].node == [2, 3, 4] and trace.rounds[1].node_key == "2,3,4"
    assert trace.rounds[1].start == pytest.approx(3105 / 29.97)
    assert trace.rounds[1].end == pytest.approx(3220 / 29.97)
    assert trace.rounds[2].query == "what colour is the bus?"
    assert trace.options == ["A. Red", "B. Blue", "C. Green", "D. Yellow"]
    assert h.rounds_seen == trace.rounds


async def test_free_form_question_and_high_spans_without_frame_times() -> None:
    h = Harness([answer("A red bus.")], geometry=TEN_MINUTES, with_frame_times=False)
    trace = await h.run(question="What colour is the bus?", options=[])
    assert trace.answer == "A red bus."
    assert h.policy.messages[0][1] == user(
        "What colour is the bus?\n",
        "The total duration of the video is 600.0 seconds.",
        "High-level Caption 1 from 0.0 to 150.0:high caption of 1",
        "High-level Caption 2 from 150.0 to 300.0:high caption of 2",
        "High-level Caption 3 from 300.0 to 450.0:high caption of 3",
        "High-level Caption 4 from 450.0 to 600.0:high caption of 4",
    )


@pytest.mark.parametrize(
    ("bad_reply", "violation"),
    [
        ("<answer>B</answer>", "answer_without_think"),
        ("<tool>get_caption((1,2))</tool>", "tool_without_think"),
        ("<think>Just thinking.</think>", "no_tool_or_answer"),
        ("I refuse to use tags.", "no_tool_or_answer"),
        ("", "no_tool_or_answer"),
        (None, "no_tool_or_answer"),
    ],
)
async def test_replies_without_think_or_action_get_the_think_first_notice(
    bad_reply: str | None, violation: str
) -> None:
    h = Harness([bad_reply, answer("C")])
    trace = await h.run()
    assert trace.answer == "C" and len(trace.rounds) == 2
    first, second = h.policy.messages
    # The bad reply is dropped; the notice is appended as a plain-string user message.
    assert second == [*first, {"role": "user", "content": THINK_FIRST}]
    assert trace.rounds[0].kind == "invalid" and trace.rounds[0].violation == violation
    assert trace.rounds[0].raw_reply == (bad_reply or "")
    assert trace.summary.tool_calls["invalid"] == 1


@pytest.mark.parametrize(
    ("call", "violation"),
    [
        ("get_caption((1,2)", "unparseable_tool_call"),
        ("get_caption(os.system('x'))", "unparseable_tool_call"),
        ("zoom((1,2))", "unknown_tool"),
        ("get_caption((1,))", "bad_arguments"),
        ("get_caption((1,2,3,4))", "bad_arguments"),
        ("video_qa((1,2), 'what?')", "bad_arguments"),
        ("get_caption((5,1))", "node_out_of_range"),
        ("video_qa((1,1,0), 'what?')", "node_out_of_range"),
    ],
)
async def test_bad_tool_calls_are_dropped_silently(call: str, violation: str) -> None:
    h = Harness([tool(call), answer("D")])
    trace = await h.run()
    first, second = h.policy.messages
    assert second == first  # asked again with the very same conversation
    assert trace.rounds[0].kind == "invalid"
    assert trace.rounds[0].violation == violation
    assert trace.rounds[0].violation_detail
    assert trace.rounds[0].tool == call
    assert h.captions.calls == [(1,), (2,), (3,), (4,)]
    assert h.video_qa.calls == []
    assert trace.outcome == "answered" and trace.answer == "D"


async def test_last_round_notice_and_no_answer_after_the_budget() -> None:
    replies = [tool("get_caption((1,1))"), "garbage", tool("get_caption((1,2))")]
    h = Harness(replies)
    trace = await h.run(budgets=Budgets(max_rounds=3))
    assert len(h.policy.messages) == 3
    last_call = h.policy.messages[2]
    assert last_call[-2] == {"role": "user", "content": THINK_FIRST}
    assert last_call[-1] == user(LAST_ROUND)
    assert [s.last_round for s in h.policy.states] == [False, False, True]
    # The last round's tool call is not served: there is no round left to use it.
    assert h.captions.calls == [(1,), (2,), (3,), (4,), (1, 1)]
    assert trace.rounds[2].violation == "tool_call_in_last_round"
    assert trace.rounds[2].observation is None
    assert trace.outcome == "no_answer" and trace.answer is None
    assert trace.stop_reason == "max_rounds"


async def test_a_policy_that_never_answers_gets_exactly_max_rounds_calls() -> None:
    h = Harness(lambda i: tool(f"get_caption(({i % 4 + 1},{i // 4 % 4 + 1}))"))
    trace = await h.run()
    assert len(h.policy.messages) == 30 and len(trace.rounds) == 30
    assert trace.outcome == "no_answer" and trace.stop_reason == "max_rounds"
    assert sum(1 for m in h.policy.messages[-1] if m == user(LAST_ROUND)) == 1
    assert all(user(LAST_ROUND) not in msgs for msgs in h.policy.messages[:-1])
    assert [r.index for r in trace.rounds] == list(range(30))


async def test_answer_in_the_last_round_is_accepted() -> None:
    h = Harness(["junk", answer("A")])
    trace = await h.run(budgets=Budgets(max_rounds=2))
    assert trace.outcome == "answered" and trace.answer == "A"
    assert h.policy.messages[1][-1] == user(LAST_ROUND)
    assert trace.rounds[1].last_round


async def test_video_qa_before_its_caption_is_served_and_recorded() -> None:
    h = Harness([tool("video_qa((4,4,4), 'who is there?')"), answer("A")])
    trace = await h.run()
    assert h.video_qa.calls == [((4, 4, 4), "who is there?")]
    assert trace.rounds[0].violation == "video_qa_before_caption"
    assert trace.rounds[0].observation == "<information>seen at 4,4,4: who is there?</information>"
    assert h.policy.messages[1][-1] == user(trace.rounds[0].observation)


async def test_video_qa_budget_forces_a_last_round() -> None:
    replies = [
        tool("get_caption((1,1,1))"),
        tool("video_qa((1,1,1), 'first look')"),
        tool("video_qa((1,1,1), 'second look')"),
        answer("B"),
    ]
    h = Harness(replies)
    trace = await h.run(budgets=Budgets(max_video_qa_calls=1))
    assert h.video_qa.calls == [((1, 1, 1), "first look")]
    refused = trace.rounds[2]
    assert refused.kind == "video_qa" and refused.violation == "video_qa_budget_exhausted"
    assert refused.observation is None
    # The refused reply is dropped and the next call is the last round.
    assert h.policy.messages[3] == [*h.policy.messages[2], user(LAST_ROUND)]
    assert trace.outcome == "answered" and trace.answer == "B"


async def test_exhausted_budget_without_an_answer_names_the_budget() -> None:
    replies = [tool("video_qa((1,1,1), 'look')"), tool("get_caption((1,1))")]
    h = Harness(replies)
    trace = await h.run(budgets=Budgets(max_video_qa_calls=0))
    assert h.video_qa.calls == []
    assert len(trace.rounds) == 2
    assert trace.outcome == "no_answer" and trace.stop_reason == "max_video_qa_calls"
    assert trace.rounds[1].violation == "tool_call_in_last_round"


async def test_caption_budget_counts_generated_captions_only() -> None:
    replies = [
        tool("get_caption((1,1))"),  # cached: free
        tool("get_caption((1,2))"),  # generated: uses the budget of 1
        tool("get_caption((1,2))"),  # asked again: served from the conversation
        tool("get_caption((1,3))"),  # would generate: refused
        answer("C"),
    ]
    h = Harness(replies, cached={(1, 1)})
    trace = await h.run(budgets=Budgets(max_captions_generated=1))
    assert h.captions.calls == [(1,), (2,), (3,), (4,), (1, 1), (1, 2)]
    assert [r.caption_cached for r in trace.rounds] == [True, False, True, None, None]
    assert trace.rounds[3].violation == "caption_budget_exhausted"
    assert h.policy.messages[4][-1] == user(LAST_ROUND)
    assert trace.answer == "C"
    assert trace.summary.captions_generated == 5  # four high + one medium
    assert trace.summary.captions_cached == 2


async def test_state_follows_the_navigation() -> None:
    replies = [tool("get_caption((3,2))"), tool("video_qa((3,2,1), 'q')"), answer("A")]
    h = Harness(replies)
    await h.run(budgets=Budgets(max_rounds=5))
    first, _, third = h.policy.states
    assert first.width == 4 and first.duration == pytest.approx(7357 / 29.97)
    assert first.options == ("A. Red", "B. Blue", "C. Green", "D. Yellow")
    assert set(first.captions) == {(1,), (2,), (3,), (4,)}
    assert first.spans[(2,)] == (61.4, 122.7)
    assert first.round_index == 0 and first.max_rounds == 5
    assert third.round_index == 2
    assert third.captions[(3, 2)] == "medium caption of 3,2"
    assert third.video_qa_answers == [((3, 2, 1), "q", "seen at 3,2,1: q")]


async def test_cancellation_is_checked_between_rounds() -> None:
    checks: list[int] = []

    async def should_cancel() -> bool:
        checks.append(1)
        return len(checks) > 2

    h = Harness(lambda i: tool("get_caption((1,1))"))
    trace = await h.run(should_cancel=should_cancel)
    assert len(trace.rounds) == 2 and len(h.policy.messages) == 2
    assert trace.outcome == "cancelled" and trace.stop_reason == "cancelled"
    assert trace.answer is None


async def test_a_failing_captioner_propagates_with_the_partial_trace() -> None:
    h = Harness([tool("get_caption((1,1))"), tool("get_caption((2,2))"), answer("A")],
                fail_on={(2, 2)})
    with pytest.raises(RuntimeError, match="captioner down") as info:
        await h.run()
    trace = trace_of(info.value)
    assert trace is not None
    assert trace.outcome == "failed" and trace.stop_reason == "error"
    assert trace.error == "RuntimeError: captioner down for (2, 2)"
    assert len(trace.rounds) == 2
    assert trace.rounds[1].error == trace.error and trace.rounds[1].observation is None
    assert h.rounds_seen == trace.rounds
    json.dumps(trace.to_dict())


async def test_a_failing_policy_or_video_qa_propagates_unchanged() -> None:
    h = Harness([tool("get_caption((1,1))")])
    h.policy.fail_at = 1
    with pytest.raises(TimeoutError) as info:
        await h.run()
    trace = trace_of(info.value)
    assert trace is not None and trace.outcome == "failed" and len(trace.rounds) == 1

    h = Harness([tool("video_qa((1,1,1), 'q')")])
    h.video_qa.fail = True
    with pytest.raises(ConnectionError) as info2:
        await h.run()
    trace = trace_of(info2.value)
    assert trace is not None and trace.rounds[0].kind == "video_qa"
    assert trace.summary.roles["video_qa"].calls == 0


async def test_a_failing_high_caption_cancels_the_others() -> None:
    started: list[NodeId] = []
    finished: list[NodeId] = []

    class SlowCaptions(FakeCaptions):
        async def get_caption(self, node: NodeId) -> Any:
            started.append(node)
            if node == (2,):
                raise RuntimeError("boom")
            await asyncio.sleep(5)
            finished.append(node)
            return await super().get_caption(node)

    clock = ManualClock()
    policy = ScriptedPolicy(clock, [answer("A")])
    with pytest.raises(RuntimeError, match="boom") as info:
        await navigate(
            question="q", geometry=GEOMETRY, policy=policy,
            captions=SlowCaptions(GEOMETRY, clock), video_qa=FakeVideoQA(clock), clock=clock,
        )
    assert set(started) == {(1,), (2,), (3,), (4,)} and finished == []
    assert policy.messages == []
    trace = trace_of(info.value)
    assert trace is not None and trace.rounds == [] and trace.outcome == "failed"


async def test_summary_counts_calls_seconds_and_visited_share() -> None:
    replies = [
        tool("get_caption((1,2))"),
        tool("get_caption((1,2,3))"),
        "nonsense",
        tool("video_qa((1,2,3), 'q')"),
        tool("get_caption((3,1))"),
        answer("A"),
    ]
    h = Harness(replies, geometry=TEN_MINUTES, cached={(1,), (3, 1)})
    trace = await h.run()
    s = trace.summary
    assert s.rounds == 6
    assert s.tool_calls == {
        "get_caption_medium": 2, "get_caption_low": 1, "video_qa": 1, "invalid": 1
    }
    assert s.violations == 1
    assert (s.captions_generated, s.captions_cached) == (5, 2)
    policy, captioner, vqa = (s.roles[r] for r in ("policy", "captioner", "video_qa"))
    assert policy.calls == 6 and policy.model_seconds == pytest.approx(9.0)
    assert policy.wall_seconds == pytest.approx(12.0)
    assert (policy.prompt_tokens, policy.completion_tokens) == (18000, 600)
    assert captioner.calls == 5 and captioner.model_seconds == pytest.approx(2.0)
    assert captioner.wall_seconds == pytest.approx(2.5)
    assert captioner.prompt_tokens == 5000
    assert vqa.calls == 1 and vqa.model_seconds == pytest.approx(0.8)
    assert vqa.wall_seconds == pytest.approx(1.0)
    # three high captions generated (1.5 s), six policy calls (12 s), one medium and one
    # leaf caption (1 s), one video_qa (1 s)
    assert s.wall_seconds == pytest.approx(15.5)
    # (1,2) covers 37.5-75 s and contains (1,2,3); (3,1) covers 300-337.5 s: 75 of 600 s
    assert s.visited_share == pytest.approx(75.0 / 600.0)
    assert trace.rounds[0].started_offset_s == pytest.approx(1.5)
    assert trace.rounds[1].wall_seconds == pytest.approx(2.5)
    assert trace.rounds[3].tool_wall_seconds == pytest.approx(1.0)


async def test_trace_round_trips_through_json() -> None:
    replies = ["bad", tool("get_caption((1,1))"), tool("video_qa((1,1,1), 'q')"), answer("B")]
    h = Harness(replies, cached={(2,)})
    trace = await h.run(budgets=Budgets(max_rounds=10, max_video_qa_calls=3))
    data = json.loads(json.dumps(trace.to_dict()))
    again = Trace.from_dict(data)
    assert again == trace
    assert again.to_dict() == data
    assert data["budgets"] == {"max_rounds": 10, "max_video_qa_calls": 3,
                               "max_captions_generated": None}
    assert set(data["rounds"][0]) >= {
        "index", "kind", "raw_reply", "think", "tool", "answer", "tool_name", "node",
        "node_key", "start", "end", "observation", "caption_cached", "violation",
        "policy_usage", "tool_usage", "wall_seconds", "started_offset_s",
    }
    assert data["high_captions"][1]["cached"] is True
    assert data["high_captions"][0]["usage"]["prompt_tokens"] == 1000


@pytest.mark.parametrize(
    "data",
    [{}, {"question": "q"}, [], {"question": "q", "options": [], "num_frames": 1, "fps": 1.0,
                                 "width": 4, "duration": 1.0, "max_rounds": 1,
                                 "rounds": [{"index": 0}]}],
)
def test_reading_something_else_as_a_trace_is_a_typed_error(data: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        Trace.from_dict(data)
    assert info.value.code == "invalid_trace"


async def test_bad_questions_and_budgets_fail_before_any_model_call() -> None:
    h = Harness([answer("A")])
    with pytest.raises(InvalidQuestion):
        await h.run(question="  ")
    with pytest.raises(InvalidQuestion):
        await h.run(options=["one\ntwo"])
    assert h.captions.calls == [] and h.policy.messages == []
    for kwargs in ({"max_rounds": 0}, {"max_rounds": True}, {"max_video_qa_calls": -1},
                   {"max_captions_generated": 1.5}):
        with pytest.raises(InvalidBudget):
            Budgets(**kwargs)


def replies_strategy() -> st.SearchStrategy[str]:
    nasty = st.sampled_from([
        "", "<think>", "</think><answer>A</answer>", "<think>x</think><tool></tool>",
        "<think>x</think><tool>get_caption((9,9))</tool>",
        "<think>x</think><tool>video_qa((1,1,1), '')</tool>",
        "<think>x</think><tool>get_caption(" + "(" * 500 + ")</tool>",
        "<think>x</think><tool>get_caption((1,2))</tool><answer>A</answer>",
    ])
    return st.one_of(
        st.from_regex(reply_regex(4, max_think=30, max_answer=5, max_query=10), fullmatch=True),
        nasty,
        st.text(max_size=60),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies=st.lists(replies_strategy(), min_size=1, max_size=12),
       max_rounds=st.integers(1, 8), vqa_budget=st.one_of(st.none(), st.integers(0, 2)))
def test_any_sequence_of_replies_ends_within_the_round_budget(
    replies: list[str], max_rounds: int, vqa_budget: int | None
) -> None:
    h = Harness(lambda i: replies[i % len(replies)])
    budgets = Budgets(max_rounds=max_rounds, max_video_qa_calls=vqa_budget)
    trace = asyncio.run(h.run(budgets=budgets))
    assert 1 <= len(trace.rounds) == len(h.policy.messages) <= max_rounds
    assert trace.outcome in ("answered", "no_answer")
    assert (trace.answer is not None) == (trace.outcome == "answered")
    if vqa_budget is not None:
        assert len(h.video_qa.calls) <= vqa_budget
    assert Trace.from_dict(json.loads(json.dumps(trace.to_dict()))) == trace
    for msgs in h.policy.messages:
        # Every observation follows the assistant reply that asked for it.
        for prev, cur in zip(msgs, msgs[1:], strict=False):
            if cur["role"] == "user" and isinstance(cur["content"], list):
                text = texts(cur["content"])[0]
                if isinstance(text, str) and text.startswith(("Medium-level", "Low-level",
                                                              "<information>")):
                    assert prev["role"] == "assistant"

