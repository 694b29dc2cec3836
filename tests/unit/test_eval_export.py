"""Training-data export: a navigation back as the policy's conversation, and RL records."""

from __future__ import annotations

from pathlib import Path

from app.core.protocol import PROMPTS, navigation_system_prompt
from app.core.trace import TraceRound
from app.services.evaluation.export import conversation, rl_records, sft_records
from app.services.evaluation.items import BenchItem
from app.services.evaluation.records import Answered, make_record

HIGH = [{"node": [i], "node_key": str(i), "start": 0.0, "end": 1.0, "span_start": s,
         "span_end": s + 25.0, "caption": f"<caption>part {i}</caption>", "cached": True}
        for i, s in ((1, 0.0), (2, 25.0), (3, 50.0), (4, 75.0))]


def _record(answer: str | None, truth: str = "B") -> dict:
    item = BenchItem(qid="q", video=Path("/v.mp4"), question="What is shown?",
                     options=("A. cat", "B. dog"), answer=truth, clues=((30.0, 40.0),))
    rounds = [
        TraceRound(index=0, kind="get_caption", raw_reply="<think>2</think><tool>get_caption"
                   "((2,1))</tool>", node=[2, 1], node_key="2,1", start=25.0, end=31.25,
                   observation="Medium-level Caption from tool get_caption((2,1)). From 25.0 "
                               "to 31.2:a dog"),
        TraceRound(index=1, kind="invalid", raw_reply="no tags", violation="no_think"),
        TraceRound(index=2, kind="answer", raw_reply="<think>dog</think><answer>B</answer>",
                   answer="B", last_round=True),
    ]
    summary = {"width": 4, "duration": 100.04, "high_captions": HIGH}
    return make_record(item, Answered(answer=answer, status="succeeded" if answer else
                                      "no_answer", rounds=rounds, summary=summary, wall_s=1.0))


def test_a_navigation_comes_back_as_the_policys_conversation() -> None:
    messages = conversation(_record("B"))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "user",
                                             "assistant"]
    assert messages[0]["content"] == navigation_system_prompt(4)
    first = [part["text"] for part in messages[1]["content"]]
    assert first[0] == "What is shown?\nA. cat\nB. dog\n"
    assert first[1] == PROMPTS["duration_line"].format(duration=100.0)
    assert first[2] == "High-level Caption 1 from 0.0 to 25.0:<caption>part 1</caption>"
    assert messages[3]["content"][0]["text"].startswith("Medium-level Caption")
    assert messages[4]["content"][0]["text"] == PROMPTS["last_round_notice"]
    assert messages[5]["content"][0]["text"].endswith("<answer>B</answer>")
    assert all("no tags" not in str(m["content"]) for m in messages)  # dropped, as the reference


def test_sft_keeps_correct_navigations_and_rl_carries_the_reward() -> None:
    right, wrong = _record("B"), _record("B", truth="A")
    assert [r["qid"] for r in sft_records([right, wrong])] == ["q"]
    assert len(sft_records([right, wrong], keep_all=True)) == 2
    (rl,) = rl_records([right])
    assert rl["replies"][0].startswith("<think>2</think>") and len(rl["replies"]) == 3
    assert rl["prompt"][0]["role"] == "system" and rl["truth"] == "B"
    reward = rl["reward"]
    # Visited 25-31.25 s against the clue 30-40 s: coverage 1.25/10, precision 1.25/6.25.
    assert reward["answer"] == 1.0 and abs(reward["coverage"] - 0.125) < 1e-9
    assert abs(reward["precision"] - 0.2) < 1e-9
    assert abs(reward["total"] - (1 + reward["f1"])) < 1e-9
    baseline = dict(right, start=None)
    assert sft_records([baseline]) == [] and rl_records([baseline]) == []
