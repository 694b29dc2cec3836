"""Training data from runs: navigations as multi-turn SFT conversations in the policy's
format, and as RL records with the reward's parts.

SFT (``sft_records``): one ``{"messages": [...]}`` per navigated question, the messages
exactly as the policy saw and wrote them (spec section 3): the system prompt, the first
user message (question and options, duration, high captions), then each reply and the
observation it got, with the last-round notice where it was sent. Rounds whose reply was
dropped (``invalid``: no think, a bad tool call) are left out, as the reference drops them
from its history. By default only answered, correct navigations are kept (the
trajectories worth imitating); ``keep_all`` keeps every one.

RL (``rl_records``): the prompt (system + first user message), the truth and clue
intervals, the policy's replies in order, and the reward's parts (answer, F1, coverage,
precision, repeat, total: spec section 7) where clues were given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.core.protocol import (
    assistant_message,
    initial_messages,
    last_round_message,
    observation_message,
)

Record = dict[str, Any]


def _prompt(record: Record) -> list[dict[str, Any]]:
    start = record["start"]
    highs = [(h["span_start"], h["span_end"], h["caption"]) for h in start["high_captions"]]
    return initial_messages(question=record["question"], options=record["options"],
                            width=int(start["width"]),
                            duration_label=round(float(start["duration"]), 1),
                            high_captions=highs)


def conversation(record: Record) -> list[dict[str, Any]]:
    """The navigation of one record as the policy's conversation."""
    messages = _prompt(record)
    for step in record["trace"]:
        if step["kind"] == "invalid":
            continue
        if step.get("last_round"):
            messages.append(last_round_message())
        messages.append(assistant_message(step["raw_reply"]))
        if step.get("observation") is not None:
            messages.append(observation_message(step["observation"]))
    return messages


def _navigated(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.get("start") and r["trace"]]


def sft_records(records: Iterable[Record], *, keep_all: bool = False) -> list[Record]:
    return [{"qid": r["qid"], "correct": r["correct"], "messages": conversation(r)}
            for r in _navigated(records)
            if keep_all or (r["correct"] and not r["missing"] and r["status"] == "succeeded")]


def rl_records(records: Iterable[Record]) -> list[Record]:
    out = []
    for r in _navigated(records):
        reward = None if r.get("reward") is None else {
            "answer": 1.0 if r["prediction"] is not None
            and r["prediction"].strip() == r["truth"].strip() else 0.0,
            "f1": r["f1"], "coverage": r["coverage"], "precision": r["precision"],
            "repeat": r["repeat"], "total": r["reward"]}
        out.append({"qid": r["qid"], "prompt": _prompt(r), "truth": r["truth"],
                    "clues": r["clues"], "task": r["task"],
                    "replies": [s["raw_reply"] for s in r["trace"]],
                    "rounds": r["rounds"], "prediction": r["prediction"],
                    "correct": r["correct"], "reward": reward})
    return out
