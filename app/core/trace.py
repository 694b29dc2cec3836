"""What happened while answering one question: every round, every model call, the outcome.

Plain dataclasses; ``to_dict()`` gives JSON-ready data with stable snake_case names and
``from_dict()`` reads it back. Times are seconds (floats), nodes are lists of 1-based ids.

``Trace``
    ``question``, ``options`` (as the policy saw them, ``"A. …"``), ``num_frames``, ``fps``,
    ``width``, ``duration`` (exact seconds), ``max_rounds``, ``budgets``
    (``max_rounds``, ``max_video_qa_calls``, ``max_captions_generated``),
    ``high_captions`` (list of ``HighCaption``), ``rounds`` (list of ``TraceRound``),
    ``outcome`` (``answered`` | ``no_answer`` | ``cancelled`` | ``failed``), ``answer``
    (None unless answered), ``stop_reason`` (``answered``, ``max_rounds``,
    ``max_video_qa_calls``, ``max_captions_generated``, ``cancelled``, ``error``),
    ``error`` (``"Type: message"`` when failed), ``summary`` (``TraceSummary``).
``HighCaption``
    ``node``, ``node_key``, ``start``/``end`` (seconds of the node's frames), ``span_start``/
    ``span_end`` (the time labels the policy was shown), ``caption``, ``cached``, ``usage``
    (None when served from cache), ``wall_seconds``.
``TraceRound``
    ``index`` (0-based), ``kind`` (``answer`` | ``get_caption`` | ``video_qa`` | ``invalid``),
    ``raw_reply``, ``think``, ``tool``, ``answer`` (the parsed tags), ``tool_name``, ``node``,
    ``node_key``, ``query``, ``start``/``end`` (seconds), ``observation`` (the text sent
    back, None when the call was not served), ``caption_cached``, ``violation`` (a protocol
    violation code or None) and ``violation_detail``, ``last_round`` (the last-round notice
    preceded this call), ``policy_usage``, ``policy_wall_seconds``, ``tool_usage``,
    ``tool_wall_seconds``, ``wall_seconds`` (the whole round), ``started_offset_s`` (since the
    start of navigation), ``error`` (set on the round a model failure interrupted),
    ``tool_output`` (the caption or video_qa answer as the tool returned it, before the
    protocol wrapped it into ``observation``).
Usages are ``ModelUsage`` (``app.core.ports``): ``seconds`` (around the model call only),
    ``prompt_tokens``, ``completion_tokens``, ``model``.
``TraceSummary``
    ``rounds``, ``tool_calls`` (``get_caption_medium``, ``get_caption_low``, ``video_qa``,
    ``invalid``: what the policy asked for, served or not), ``violations``,
    ``captions_generated``, ``captions_cached`` (high captions included), ``roles``
    (``policy``, ``captioner``, ``video_qa``: ``calls``, ``model_seconds``, ``wall_seconds``,
    ``prompt_tokens``, ``completion_tokens``), ``wall_seconds`` (the whole navigation), and
    ``visited_share`` (the share of the video covered by the medium and low nodes whose
    caption or video_qa answer the policy received).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from app.core.intervals import merge_intervals, total_length
from app.core.ports import ModelUsage
from app.errors import InvalidInput

RoundKind = Literal["answer", "get_caption", "video_qa", "invalid"]
Outcome = Literal["answered", "no_answer", "cancelled", "failed"]
ROLES = ("policy", "captioner", "video_qa")
TOOL_CALL_KINDS = ("get_caption_medium", "get_caption_low", "video_qa", "invalid")

_T = TypeVar("_T")


def _pick(cls: type[_T], data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return {key: value for key, value in data.items() if key in names}


@dataclass(slots=True)
class HighCaption:
    """One top-level caption handed to the policy in the first message."""

    node: list[int]
    node_key: str
    start: float
    end: float
    span_start: float
    span_end: float
    caption: str
    cached: bool
    usage: ModelUsage | None = None
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": list(self.node),
            "node_key": self.node_key,
            "start": self.start,
            "end": self.end,
            "span_start": self.span_start,
            "span_end": self.span_end,
            "caption": self.caption,
            "cached": self.cached,
            "usage": None if self.usage is None else self.usage.to_dict(),
            "wall_seconds": self.wall_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HighCaption:
        values = _pick(cls, data)
        values["node"] = list(values["node"])
        values["usage"] = ModelUsage.from_dict(values.get("usage"))
        return cls(**values)


@dataclass(slots=True)
class TraceRound:
    """One policy call and what the loop did with its reply."""

    index: int
    kind: RoundKind
    raw_reply: str
    think: str | None = None
    tool: str | None = None
    answer: str | None = None
    tool_name: str | None = None
    node: list[int] | None = None
    node_key: str | None = None
    query: str | None = None
    start: float | None = None
    end: float | None = None
    observation: str | None = None
    caption_cached: bool | None = None
    violation: str | None = None
    violation_detail: str | None = None
    last_round: bool = False
    policy_usage: ModelUsage = field(default_factory=ModelUsage)
    policy_wall_seconds: float = 0.0
    tool_usage: ModelUsage | None = None
    tool_wall_seconds: float | None = None
    wall_seconds: float = 0.0
    started_offset_s: float = 0.0
    error: str | None = None
    tool_output: str | None = None

    @property
    def served(self) -> bool:
        """True when the tool call was answered with an observation."""
        return self.kind in ("get_caption", "video_qa") and self.observation is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ModelUsage):
                value = value.to_dict()
            elif isinstance(value, list):
                value = list(value)
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceRound:
        values = _pick(cls, data)
        values["policy_usage"] = ModelUsage.from_dict(values.get("policy_usage")) or ModelUsage()
        values["tool_usage"] = ModelUsage.from_dict(values.get("tool_usage"))
        if values.get("node") is not None:
            values["node"] = list(values["node"])
        return cls(**values)


@dataclass(slots=True)
class RoleStats:
    """Calls and seconds spent on one model role."""

    calls: int = 0
    model_seconds: float = 0.0
    wall_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: ModelUsage | None, wall_seconds: float | None, *, call: bool) -> None:
        if call:
            self.calls += 1
        if usage is not None:
            self.model_seconds += usage.seconds
            self.prompt_tokens += usage.prompt_tokens or 0
            self.completion_tokens += usage.completion_tokens or 0
        self.wall_seconds += wall_seconds or 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "model_seconds": self.model_seconds,
            "wall_seconds": self.wall_seconds,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


@dataclass(slots=True)
class TraceSummary:
    """Totals over a trace (see the module docstring for each field)."""

    rounds: int = 0
    tool_calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOOL_CALL_KINDS, 0))
    violations: int = 0
    captions_generated: int = 0
    captions_cached: int = 0
    roles: dict[str, RoleStats] = field(default_factory=lambda: {r: RoleStats() for r in ROLES})
    wall_seconds: float = 0.0
    visited_share: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "tool_calls": dict(self.tool_calls),
            "violations": self.violations,
            "captions_generated": self.captions_generated,
            "captions_cached": self.captions_cached,
            "roles": {name: stats.to_dict() for name, stats in self.roles.items()},
            "wall_seconds": self.wall_seconds,
            "visited_share": self.visited_share,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceSummary:
        values = _pick(cls, data)
        values["tool_calls"] = dict(values.get("tool_calls", {}))
        values["roles"] = {
            name: RoleStats(**_pick(RoleStats, stats))
            for name, stats in values.get("roles", {}).items()
        }
        return cls(**values)


@dataclass(slots=True)
class Trace:
    """The full record of one navigation (see the module docstring for each field)."""

    question: str
    options: list[str]
    num_frames: int
    fps: float
    width: int
    duration: float
    max_rounds: int
    budgets: dict[str, int | None] = field(default_factory=dict)
    high_captions: list[HighCaption] = field(default_factory=list)
    rounds: list[TraceRound] = field(default_factory=list)
    outcome: Outcome | None = None
    answer: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    summary: TraceSummary = field(default_factory=TraceSummary)

    def summarize(self, wall_seconds: float) -> TraceSummary:
        """Recompute ``summary`` from the rounds and high captions."""
        summary = TraceSummary(rounds=len(self.rounds), wall_seconds=wall_seconds)
        roles = summary.roles
        for high in self.high_captions:
            roles["captioner"].add(high.usage, high.wall_seconds, call=not high.cached)
            summary.captions_generated += 0 if high.cached else 1
            summary.captions_cached += 1 if high.cached else 0
        visited: list[tuple[float, float]] = []
        for rnd in self.rounds:
            roles["policy"].add(rnd.policy_usage, rnd.policy_wall_seconds, call=True)
            summary.violations += rnd.violation is not None
            if rnd.kind == "invalid":
                summary.tool_calls["invalid"] += 1
            elif rnd.kind == "get_caption" and rnd.node is not None:
                level = "get_caption_low" if len(rnd.node) == 3 else "get_caption_medium"
                summary.tool_calls[level] += 1
            elif rnd.kind == "video_qa":
                summary.tool_calls["video_qa"] += 1
            if rnd.kind == "get_caption" and rnd.caption_cached is not None:
                roles["captioner"].add(
                    rnd.tool_usage, rnd.tool_wall_seconds, call=not rnd.caption_cached
                )
                summary.captions_generated += 0 if rnd.caption_cached else 1
                summary.captions_cached += 1 if rnd.caption_cached else 0
            elif rnd.kind == "video_qa" and rnd.tool_wall_seconds is not None:
                roles["video_qa"].add(rnd.tool_usage, rnd.tool_wall_seconds, call=True)
            if rnd.served and rnd.start is not None and rnd.end is not None:
                visited.append((rnd.start, rnd.end))
        if self.duration > 0:
            covered = total_length(merge_intervals(visited, gap=0.0))
            summary.visited_share = min(1.0, covered / self.duration)
        self.summary = summary
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "options": list(self.options),
            "num_frames": self.num_frames,
            "fps": self.fps,
            "width": self.width,
            "duration": self.duration,
            "max_rounds": self.max_rounds,
            "budgets": dict(self.budgets),
            "high_captions": [high.to_dict() for high in self.high_captions],
            "rounds": [rnd.to_dict() for rnd in self.rounds],
            "outcome": self.outcome,
            "answer": self.answer,
            "stop_reason": self.stop_reason,
            "error": self.error,
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        """Read back ``to_dict()`` output; raises ``InvalidInput`` for anything else."""
        try:
            return cls._from_dict(data)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"not a navigation trace: {exc}", code="invalid_trace") from None

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Trace:
        values = _pick(cls, data)
        values["options"] = list(values.get("options", []))
        values["budgets"] = dict(values.get("budgets", {}))
        values["high_captions"] = [
            HighCaption.from_dict(high) for high in values.get("high_captions", [])
        ]
        values["rounds"] = [TraceRound.from_dict(r) for r in values.get("rounds", [])]
        values["summary"] = TraceSummary.from_dict(values.get("summary", {}))
        return cls(**values)
