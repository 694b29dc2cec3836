"""The ports the navigation loop talks through; it does not know what sits behind them.

Adapters: ``app.models`` (OpenAI-compatible HTTP clients, CPU models) and
``app.services.captions`` (cache + database + captioner) implement these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol

NodeId = tuple[int, ...]
"""A tree node: ``(h,)`` high, ``(h, m)`` medium, ``(h, m, l)`` low (leaf); ids are 1-based."""

Message = dict[str, Any]
"""One OpenAI chat message (``role`` + ``content``: a string or a list of parts)."""


@dataclass(frozen=True, slots=True)
class SubtitleLine:
    """One timed line of subtitles or speech transcript (seconds)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """What one model call cost: seconds around the HTTP call only, and tokens if reported.

    Traces record it as ``{"seconds", "prompt_tokens", "completion_tokens", "model"}``."""

    seconds: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelUsage | None:
        if data is None:
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass(frozen=True, slots=True)
class CaptionResult:
    """A node's caption as served to the loop."""

    node: NodeId
    caption: str
    frame_times: tuple[float, ...]  # time labels of the sampled frames (seconds, 1 decimal)
    cached: bool  # True when no captioner call was made for this request
    usage: ModelUsage | None = None  # set when a captioner call was made
    raw_reply: str | None = None


@dataclass(frozen=True, slots=True)
class VideoQAResult:
    """The video_qa model's answer about one leaf."""

    node: NodeId
    query: str
    answer: str
    raw_reply: str
    frame_times: tuple[float, ...]
    usage: ModelUsage = field(default_factory=ModelUsage)


@dataclass(frozen=True, slots=True)
class PolicyReply:
    """The policy's raw reply text for one round."""

    text: str
    usage: ModelUsage = field(default_factory=ModelUsage)


@dataclass(slots=True)
class NavigationState:
    """What the loop knows so far; handed to the policy beside the messages.

    An LLM policy reads only the messages. A non-LLM policy (the CPU retrieval
    navigator) reads this instead of parsing its own prompt back.
    """

    question: str
    options: tuple[str, ...]
    width: int
    duration: float
    captions: dict[NodeId, str] = field(default_factory=dict)
    spans: dict[NodeId, tuple[float, float]] = field(default_factory=dict)
    video_qa_answers: list[tuple[NodeId, str, str]] = field(default_factory=list)
    round_index: int = 0
    max_rounds: int = 30
    last_round: bool = False


class CaptionSource(Protocol):
    """Returns a node's caption, from a cache or generated on demand."""

    async def get_caption(self, node: NodeId) -> CaptionResult: ...


class VideoQA(Protocol):
    """Answers one query about one leaf's frames."""

    async def ask(self, node: NodeId, query: str) -> VideoQAResult: ...


class Policy(Protocol):
    """Produces the next reply of the navigation conversation."""

    async def reply(self, messages: list[Message], state: NavigationState) -> PolicyReply: ...
