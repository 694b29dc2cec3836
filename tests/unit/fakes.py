"""In-process stand-ins for the navigation ports, driven by a manual clock.

Each fake advances the clock by a fixed amount per call, so timing figures in a trace are
exact and tests can assert them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.core.ports import (
    CaptionResult,
    Message,
    ModelUsage,
    NavigationState,
    NodeId,
    PolicyReply,
    VideoQAResult,
)
from app.core.tree import VideoGeometry


@dataclass
class ManualClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeCaptions:
    """Captions ``"<level> caption of h,m,l"``; nodes in ``cached`` come without a model call."""

    geometry: VideoGeometry
    clock: ManualClock
    cached: set[NodeId] = field(default_factory=set)
    fail_on: set[NodeId] = field(default_factory=set)
    seconds_per_call: float = 0.5
    calls: list[NodeId] = field(default_factory=list)
    with_frame_times: bool = True

    async def get_caption(self, node: NodeId) -> CaptionResult:
        self.calls.append(node)
        if node in self.fail_on:
            raise RuntimeError(f"captioner down for {node}")
        level = {1: "high", 2: "medium", 3: "low"}[len(node)]
        text = f"{level} caption of {','.join(map(str, node))}"
        times = tuple(self.geometry.frame_times(node)) if self.with_frame_times else ()
        if node in self.cached:
            return CaptionResult(node, text, times, cached=True)
        self.clock.advance(self.seconds_per_call)
        usage = ModelUsage(seconds=0.4, prompt_tokens=1000, completion_tokens=50, model="cap")
        return CaptionResult(node, text, times, cached=False, usage=usage, raw_reply=text)


@dataclass
class FakeVideoQA:
    clock: ManualClock
    calls: list[tuple[NodeId, str]] = field(default_factory=list)
    fail: bool = False

    async def ask(self, node: NodeId, query: str) -> VideoQAResult:
        self.calls.append((node, query))
        if self.fail:
            raise ConnectionError("video_qa model unreachable")
        self.clock.advance(1.0)
        answer = f"seen at {','.join(map(str, node))}: {query}"
        return VideoQAResult(
            node, query, answer, f"<answer>{answer}</answer>", (),
            ModelUsage(seconds=0.8, prompt_tokens=2000, completion_tokens=20, model="vqa"),
        )


@dataclass
class ScriptedPolicy:
    """Replies from a list (or a function of the call number); records what it was sent."""

    clock: ManualClock
    replies: list[str] | Callable[[int], str] = field(default_factory=list)
    messages: list[list[Message]] = field(default_factory=list)
    states: list[NavigationState] = field(default_factory=list)
    fail_at: int | None = None

    async def reply(self, messages: list[Message], state: NavigationState) -> PolicyReply:
        call = len(self.messages)
        self.messages.append(copy.deepcopy(messages))
        self.states.append(copy.deepcopy(state))
        if self.fail_at == call:
            raise TimeoutError("policy timed out")
        self.clock.advance(2.0)
        text = self.replies(call) if callable(self.replies) else self.replies[call]
        return PolicyReply(text, ModelUsage(seconds=1.5, prompt_tokens=3000, completion_tokens=100))


def think(tool_or_answer: str, thought: str = "Reasoning.") -> str:
    return f"<think>{thought}</think>\n{tool_or_answer}"


def tool(call: str) -> str:
    return think(f"<tool>{call}</tool>")


def answer(text: str) -> str:
    return think(f"<answer>{text}</answer>")


def texts(content: Iterable[dict[str, object]]) -> list[object]:
    return [part["text"] for part in content]
