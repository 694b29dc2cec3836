"""The CPU policy: a retrieval navigator over the caption tree, speaking the protocol.

It implements the ``Policy`` port by reading the loop's ``NavigationState`` instead of
its prompt. Every caption and video_qa answer is cut into timed statements and embedded
with all-MiniLM-L6-v2; statements are scored against the question (and each option).
Best first: the top statement that is not yet confirmed says where to look next (the
child node holding the time it names, or a video_qa call on its leaf), and the reply is a
normal protocol reply, so the loop, the trace and the stored rounds are the same as for
the LongVideo-R1 policy.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass

import numpy as np

from app.core.ports import Message, ModelUsage, NavigationState, NodeId, PolicyReply
from app.models.cpu.captioner import CLIP_INTRO
from app.models.cpu.embeddings import TextEmbedder, get_embedder
from app.models.cpu.text import Statement, overlap, split_statements

MODEL_NAME = "vidnav-cpu-retrieval"
_OPTION = re.compile(r"\s*\(?([A-Za-z])[.):]\s*(.*)", re.DOTALL)
_BOILERPLATE = re.compile(
    rf"{CLIP_INTRO}|The question is not related to the video segment\."
)
SNIPPET = 110
DEFAULT_MAX_STEPS = 12  # rounds; the navigator usually answers in 4 to 7
OPTION_POOL = 8
LEXICAL_WEIGHT = 0.25  # MiniLM misses short exact matches ("a minute"); shared words count too


@dataclass(frozen=True, slots=True)
class Evidence:
    """A scored statement and where it came from."""

    node: NodeId
    statement: Statement
    relevance: float  # best cosine similarity to the question or a question+option
    confirmed: bool  # on a leaf that video_qa has looked at, or a video_qa answer itself
    direct: float = 0.0  # relevance to the question alone, options left out


def _parse_option(option: str, index: int) -> tuple[str, str]:
    match = _OPTION.fullmatch(option)
    if match:
        return match.group(1).upper(), match.group(2).strip()
    return chr(ord("A") + index), option.strip()


def _snippet(text: str) -> str:
    text = " ".join(text.replace("<", "(").replace(">", ")").split())
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def _fmt(node: NodeId) -> str:
    return "(" + ", ".join(str(p) for p in node) + ")"


class RetrievalPolicy:
    """Implements ``app.core.ports.Policy`` without a language model (see module doc)."""

    def __init__(
        self, embedder: TextEmbedder | None = None, *, max_steps: int = DEFAULT_MAX_STEPS,
        sufficient: float = 0.5, margin: float = 0.05,
    ) -> None:
        self._embedder = embedder
        self.max_steps = max_steps
        self.sufficient = sufficient
        self.margin = margin

    @property
    def embedder(self) -> TextEmbedder:
        if self._embedder is None:
            self._embedder = get_embedder()
        return self._embedder

    def warm(self) -> None:
        """Load the embedding model now rather than in the first round."""
        self.embedder.embed(["warm up"])

    async def reply(self, messages: list[Message], state: NavigationState) -> PolicyReply:
        started = time.perf_counter()
        text = await asyncio.to_thread(self.decide, state)
        return PolicyReply(
            text=text, usage=ModelUsage(seconds=time.perf_counter() - started, model=MODEL_NAME)
        )

    # --- scoring -------------------------------------------------------------------------

    def _relevance(self, state: NavigationState, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(relevance to the question alone, best relevance to the question or a
        question+option) per text: cosine similarity plus a bonus for shared words."""
        options = [_parse_option(o, i)[1] for i, o in enumerate(state.options)]
        queries = [state.question, *(f"{state.question} {o}" for o in options)]
        cosine = self.embedder.similarity(queries, texts)
        lexical = np.array([[overlap(q, t) for t in texts] for q in [state.question, *options]],
                           dtype=np.float32)
        scores = cosine + LEXICAL_WEIGHT * lexical
        return scores[0], scores.max(axis=0)

    def evidence(self, state: NavigationState) -> list[Evidence]:
        """Every statement the policy has seen, scored, best first (deeper nodes win ties)."""
        asked = {node for node, _query, _answer in state.video_qa_answers}
        sources: list[tuple[NodeId, Statement, bool]] = []
        for node, caption in state.captions.items():
            confirmed = len(node) == 3 and node in asked
            sources += [(node, s, confirmed) for s in split_statements(caption)
                        if not _BOILERPLATE.fullmatch(s.text)]
        for node, _query, answer in state.video_qa_answers:
            sources += [(node, s, True) for s in split_statements(answer)
                        if not _BOILERPLATE.fullmatch(s.text)]
        if not sources:
            return []
        question_only, relevance = self._relevance(state, [s.text for _, s, _ in sources])
        ranked = [
            Evidence(node, statement, float(score), confirmed, float(direct))
            for (node, statement, confirmed), score, direct
            in zip(sources, relevance, question_only, strict=True)
        ]
        ranked.sort(key=lambda e: (-round(e.relevance, 4), -len(e.node), not e.confirmed))
        return ranked

    # --- deciding ------------------------------------------------------------------------

    def _span(self, node: NodeId, state: NavigationState) -> tuple[float, float]:
        if node in state.spans:
            return state.spans[node]
        start, length = 0.0, state.duration
        for part in node:
            length /= state.width
            start += (part - 1) * length
        return start, start + length

    def _child_at(self, node: NodeId, at: float | None, state: NavigationState) -> NodeId | None:
        """The child of ``node`` covering time ``at`` (the nearest one for a line of speech
        that began before the node); None without a time."""
        if at is None or state.width < 1:
            return None
        start, end = self._span(node, state)
        if end <= start:
            return None
        index = math.floor((at - start) / (end - start) * state.width) + 1
        return (*node, min(max(index, 1), state.width))

    def _next_child(self, node: NodeId, state: NavigationState) -> NodeId | None:
        for i in range(1, state.width + 1):
            if (*node, i) not in state.captions:
                return (*node, i)
        return None

    def _action(self, item: Evidence, state: NavigationState) -> tuple[str, NodeId] | None:
        """What would confirm this piece of evidence, or None if nothing is left to do."""
        if item.confirmed:
            return None
        if len(item.node) == 3:
            return "video_qa", item.node
        child = self._child_at(item.node, item.statement.time, state)
        if child is None:
            child = self._next_child(item.node, state)
        if child is None or child in state.captions:
            return None
        return "get_caption", child

    def decide(self, state: NavigationState) -> str:
        """The reply text for this round: a tool call or the answer, with the scores in
        the think part."""
        ranked = self.evidence(state)
        budget = min(state.max_rounds, self.max_steps)
        out_of_rounds = state.last_round or state.round_index >= budget - 1
        best_confirmed = next((e for e in ranked if e.confirmed), None)
        lines: list[str] = []
        for e in ranked:
            line = f"{e.relevance:.2f} {_snippet(e.statement.text)} in {_fmt(e.node)}"
            if not any(_snippet(e.statement.text) in seen for seen in lines):
                lines.append(line)
            if len(lines) == 3:
                break
        think = "Closest evidence to the question so far: " + (
            "; ".join(lines) if lines else "none") + "."
        if best_confirmed is not None and best_confirmed.relevance >= self.sufficient:
            return self._answer(state, ranked, think + (
                f" The best confirmed evidence scores {best_confirmed.relevance:.2f}, "
                f"at least {self.sufficient:.2f}: enough to answer."))
        if out_of_rounds:
            return self._answer(state, ranked, think + " No rounds left: answering from "
                                "the best evidence I have.")
        floor = best_confirmed.relevance - self.margin if best_confirmed else -1.0
        for item in ranked:
            if item.relevance < floor:
                break
            action = self._action(item, state)
            if action is None:
                continue
            name, node = action
            where = (f"it names {item.statement.time:.1f}s, "
                     if item.statement.time is not None else "")
            if name == "video_qa":
                query = repr(" ".join(state.question.split()))
                return (f"<think>{think} The strongest unconfirmed evidence "
                        f"({item.relevance:.2f}) is in leaf {_fmt(node)}: asking video_qa "
                        f"to check it.</think>\n<tool>video_qa({_fmt(node)}, {query})</tool>")
            return (f"<think>{think} The strongest unexplored evidence ({item.relevance:.2f}) "
                    f"is in {_fmt(item.node)}; {where}so the finer caption of {_fmt(node)} "
                    f"should show it.</think>\n<tool>get_caption({_fmt(node)})</tool>")
        return self._answer(state, ranked, think + " Nothing better is left to look at.")

    def _answer(self, state: NavigationState, ranked: list[Evidence], think: str) -> str:
        if not ranked:
            return (f"<think>{think} There is no evidence at all.</think>\n"
                    "<answer>The captions say nothing about this.</answer>")
        if state.options:
            letter, why = self._choose_option(state, ranked)
            return f"<think>{think} {why}</think>\n<answer>{letter}</answer>"
        # The best statement wherever it was read (a coarse caption may have read a frame no
        # finer one did); among equal statements the ranking puts the finest node first.
        best = ranked[0]
        start, end = self._span(best.node, state)
        answer = (f"{' '.join(best.statement.text.split())} "
                  f"(from {start:.1f}s to {end:.1f}s, segment {_fmt(best.node)})")
        answer = answer.replace("<", "(").replace(">", ")")
        return f"<think>{think}</think>\n<answer>{answer}</answer>"

    def _choose_option(self, state: NavigationState, ranked: list[Evidence]) -> tuple[str, str]:
        """The option best supported by the statements most relevant to the question: the
        support of a statement counts in proportion to its own relevance."""
        parsed = [_parse_option(o, i) for i, o in enumerate(state.options)]
        pool: list[Evidence] = []
        seen: set[str] = set()
        for item in sorted(ranked, key=lambda e: -e.relevance):
            if item.statement.text not in seen:
                seen.add(item.statement.text)
                pool.append(item)
            if len(pool) == OPTION_POOL:
                break
        texts = [e.statement.text for e in pool]
        options = [text for _letter, text in parsed]
        cosine = self.embedder.similarity(options, texts)
        lexical = np.array([[overlap(o, t) for t in texts] for o in options], dtype=np.float32)
        weights = np.array([max(e.direct, 0.0) for e in pool], dtype=np.float32)
        scores = ((cosine + lexical) * weights[None, :]).max(axis=1)
        best = int(np.argmax(scores))
        detail = ", ".join(f"{letter} {score:.2f}"
                           for (letter, _t), score in zip(parsed, scores.tolist(), strict=True))
        return parsed[best][0], (f"Option support from the top evidence: {detail}; "
                                 f"{parsed[best][0]} is best supported.")
