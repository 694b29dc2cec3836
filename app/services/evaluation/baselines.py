"""Baselines in the same harness, with the same models as the navigation:

``flat``     every leaf captioned and all of them handed to the policy at once, which must
             answer in that one round (caption-then-answer methods);
``uniform``  ``video_qa`` on N evenly spaced leaves (the question as the query), then the
             policy answers from the high captions and those answers in one round.

Both run in process, on videos prepared like the navigation's; their rounds go into the
record's trace in the navigator's format (``flat``'s leaf reads as ``get_caption``
rounds, ``uniform``'s as ``video_qa`` rounds; localization counts the leaves each looked at).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from app.core.ports import ModelUsage, NavigationState, NodeId
from app.core.protocol import (
    assistant_message,
    initial_messages,
    last_round_message,
    normalize_options,
    observation_message,
    parse_reply,
    video_qa_observation,
)
from app.core.trace import TraceRound
from app.core.tree import node_key
from app.errors import InvalidInput
from app.services.captions import CaptionService, LeafVideoQA, load_video_context
from app.services.captions.context import VideoContext
from app.services.evaluation.items import BenchItem
from app.services.evaluation.local import LocalDeployment, caption_seconds
from app.services.evaluation.records import Answered

STRATEGIES = ("navigate", "flat", "uniform")


def evenly_spaced(leaves: Sequence[NodeId], count: int) -> list[NodeId]:
    """``count`` leaves spread over the video: the middle of each of ``count`` equal parts."""
    count = max(1, min(count, len(leaves)))
    return [leaves[int((i + 0.5) * len(leaves) / count)] for i in range(count)]


class BaselineDeployment:
    """``flat`` or ``uniform`` over the videos a ``LocalDeployment`` prepares."""

    def __init__(self, local: LocalDeployment, strategy: str, *, leaves: int = 8) -> None:
        if strategy not in ("flat", "uniform"):
            raise InvalidInput(f"unknown baseline {strategy!r}", code="unknown_strategy")
        self.local, self.strategy, self.leaves = local, strategy, leaves
        self.runtime = local.runtime

    def answer(self, item: BenchItem, max_rounds: int | None) -> Answered:
        video_id, prepare_s = self.local.prepare(item)
        started = time.perf_counter()
        ctx = load_video_context(self.runtime, video_id)
        work = self._flat(item, ctx) if self.strategy == "flat" else self._uniform(item, ctx)
        answered = self.runtime.run(work)
        answered.wall_s = time.perf_counter() - started
        answered.prepare_s = prepare_s
        return answered

    async def _flat(self, item: BenchItem, ctx: VideoContext) -> Answered:
        geo = ctx.geometry
        source = CaptionService(self.runtime, ctx)
        leaves = geo.nodes(3)
        reads: list[TraceRound] = []
        state = self._state(item, ctx)
        captioner = ModelUsage()
        generated = cached = 0
        for leaf in leaves:
            got = await source.get_caption(leaf)
            start, end = geo.seconds(leaf)
            reads.append(TraceRound(index=len(reads), kind="get_caption", raw_reply="",
                                    node=list(leaf), node_key=node_key(leaf), start=start,
                                    end=end, caption_cached=got.cached, tool_usage=got.usage,
                                    tool_output=got.caption))
            state.captions[leaf] = got.caption
            state.spans[leaf] = geo.span_labels(leaf)
            cached += got.cached
            generated += not got.cached
            if got.usage is not None:
                captioner = _plus(captioner, got.usage)
        messages = initial_messages(
            question=item.question, options=state.options, width=geo.width,
            duration_label=geo.duration_label,
            high_captions=[(*state.spans[n], state.captions[n]) for n in leaves])
        final = await self._decide(messages + [last_round_message()], state, len(reads))
        roles = {"policy": _role(final.policy_usage), "captioner": _role(captioner, generated)}
        return self._answered(final, reads, roles, {"get_caption_low": len(leaves)},
                              generated, cached, caption_seconds(self.runtime, ctx, leaves),
                              share=1.0)

    async def _uniform(self, item: BenchItem, ctx: VideoContext) -> Answered:
        geo = ctx.geometry
        source, qa = CaptionService(self.runtime, ctx), LeafVideoQA(self.runtime, ctx)
        state = self._state(item, ctx)
        tops = geo.nodes(1)
        for top in tops:
            got = await source.get_caption(top)
            state.captions[top] = got.caption
            state.spans[top] = geo.span_labels(top)
        messages = initial_messages(
            question=item.question, options=state.options, width=geo.width,
            duration_label=geo.duration_label,
            high_captions=[(*state.spans[n], state.captions[n]) for n in tops])
        reads: list[TraceRound] = []
        video_qa = ModelUsage()
        chosen = evenly_spaced(geo.nodes(3), self.leaves)
        query = " ".join(item.question.split())
        for leaf in chosen:
            result = await qa.ask(leaf, query)
            start, end = geo.seconds(leaf)
            tool = f"video_qa(({','.join(map(str, leaf))}), {query!r})"
            reads.append(TraceRound(index=len(reads), kind="video_qa", raw_reply=tool,
                                    tool=tool, tool_name="video_qa", node=list(leaf),
                                    node_key=node_key(leaf), query=query, start=start,
                                    end=end, observation=video_qa_observation(result.answer),
                                    tool_usage=result.usage, tool_output=result.answer))
            state.video_qa_answers.append((leaf, query, result.answer))
            messages += [assistant_message(f"<think>Checking leaf {leaf}.</think>\n"
                                           f"<tool>{tool}</tool>"),
                         observation_message(video_qa_observation(result.answer))]
            video_qa = _plus(video_qa, result.usage)
        final = await self._decide(messages + [last_round_message()], state, len(reads))
        roles = {"policy": _role(final.policy_usage), "video_qa": _role(video_qa, len(chosen))}
        share = sum(geo.seconds(n)[1] - geo.seconds(n)[0] for n in chosen) / geo.duration
        answered = self._answered(final, reads, roles, {"video_qa": len(chosen)}, 0, len(tops),
                                  caption_seconds(self.runtime, ctx, tops), share=share)
        # Localization counts the leaves it asked about, as it counts captions read.
        answered.looked = [replace(r, kind="get_caption") for r in reads]
        return answered

    def _state(self, item: BenchItem, ctx: VideoContext) -> NavigationState:
        geo = ctx.geometry
        return NavigationState(question=item.question, options=normalize_options(item.options),
                               width=geo.width, duration=geo.duration, max_rounds=1,
                               last_round=True)

    async def _decide(self, messages: list[dict[str, Any]], state: NavigationState,
                      index: int) -> TraceRound:
        began = time.perf_counter()
        reply = await self.runtime.policy.reply(messages, state)
        parsed = parse_reply(reply.text)
        return TraceRound(index=index, kind="answer", raw_reply=reply.text, think=parsed.think,
                          answer=parsed.answer, last_round=True, policy_usage=reply.usage,
                          policy_wall_seconds=time.perf_counter() - began)

    def _answered(self, final: TraceRound, reads: list[TraceRound],
                  roles: dict[str, dict[str, float]], calls: dict[str, int], generated: int,
                  cached: int, read_s: float, *, share: float) -> Answered:
        summary = {"roles": roles, "tool_calls": calls, "captions_generated": generated,
                   "captions_cached": cached, "visited_share": min(1.0, share)}
        return Answered(answer=final.answer, status="succeeded" if final.answer else
                        "no_answer", rounds=[*reads, final], summary=summary, wall_s=0.0,
                        policy_rounds=1, caption_seconds_read=read_s)


def _plus(a: ModelUsage, b: ModelUsage) -> ModelUsage:
    return ModelUsage(seconds=a.seconds + b.seconds,
                      prompt_tokens=(a.prompt_tokens or 0) + (b.prompt_tokens or 0),
                      completion_tokens=(a.completion_tokens or 0) + (b.completion_tokens or 0),
                      model=b.model or a.model)


def _role(usage: ModelUsage, calls: int = 1) -> dict[str, float]:
    return {"calls": calls, "model_seconds": usage.seconds,
            "prompt_tokens": usage.prompt_tokens or 0,
            "completion_tokens": usage.completion_tokens or 0}
