"""Benchmark readers on hand-written fixtures (tests/fixtures/eval), one per format, and
the letter scoring beside them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import InvalidInput
from app.services.evaluation.items import lenient_letter, score_letter, strict_letter
from app.services.evaluation.readers import read_benchmark, split_embedded_options

FIXTURES = Path(__file__).parent.parent / "fixtures" / "eval"


def test_lvbench_flattens_the_meta_file_and_splits_embedded_options() -> None:
    items = read_benchmark("lvbench", FIXTURES / "lvbench.jsonl", Path("/videos"))
    assert [i.qid for i in items] == ["11", "12", "21"]
    first = items[0]
    assert first.video == Path("/videos/vid001.mp4")
    assert first.question == "Who scores the first goal?"
    assert first.options == ("A. The goalkeeper", "B. The striker", "C. The referee",
                             "D. Nobody")
    assert (first.answer, first.task, first.bucket) == ("B", "key information retrieval",
                                                         "sport")
    assert items[1].task == "temporal grounding,reasoning"
    assert items[2].video.name == "vid002.mp4" and items[2].answer == "A"


def test_embedded_options_need_letters_in_order() -> None:
    assert split_embedded_options("Q?\n(A) x\n(C) y") == ("Q?", ("A. x",))
    assert split_embedded_options("Q?\n(B) x") == ("Q?\n(B) x", ())


@pytest.mark.parametrize(("kind", "subs"), [("videomme", None), ("videomme-subs", "longvid.srt")])
def test_videomme_with_and_without_subtitles(kind: str, subs: str | None) -> None:
    short, long = read_benchmark(kind, FIXTURES / "videomme.json")
    assert short.video == FIXTURES / "fFjv93ACGo8.mp4"
    assert short.options[2] == "C. Three." and short.answer == "C"
    assert (short.task, short.bucket, short.qid) == ("Counting Problem", "short", "001-1")
    assert short.extra["domain"] == "Knowledge"
    assert short.subtitles is None  # no .srt beside it
    assert long.bucket == "long"
    assert long.subtitles == (FIXTURES / subs if subs else None)


def test_mlvu_turns_the_answer_text_into_its_letter() -> None:
    items = read_benchmark("mlvu", FIXTURES / "mlvu_dev.json", Path("/v"))
    assert [i.answer for i in items] == ["B", "D", "B"]
    assert [i.task for i in items] == ["plotQA", "findNeedle", "findNeedle"]
    assert items[0].video == Path("/v/movie101_66.mp4")
    assert items[0].options == ("A. Ran", "B. Sat", "C. Ate", "D. Slept")
    assert [i.bucket for i in items] == ["medium", "medium", "long"]


def test_longvideobench_skips_unused_options() -> None:
    (item,) = read_benchmark("longvideobench", FIXTURES / "longvideobench.json")
    assert item.options == ("A. A cup", "B. A phone", "C. A book", "D. A hat")
    assert (item.answer, item.task, item.bucket) == ("B", "TOS", "15")
    assert item.video.name == "86CxyhFV9MI.mp4"


def test_cgbench_keeps_the_clue_intervals() -> None:
    (item,) = read_benchmark("cgbench", FIXTURES / "cgbench.json")
    assert item.clues == ((120.0, 130.5), (400.0, 410.0))
    assert len(item.options) == 5 and item.answer == "D"
    assert (item.task, item.bucket, item.qid) == ("Cooking", "long", "7")


def test_vidnav_jsonl() -> None:
    (item,) = read_benchmark("jsonl", FIXTURES / "items.jsonl")
    assert item.video == FIXTURES / "clips" / "a.mp4"
    assert item.clues == ((1.0, 2.0),) and item.task == "perception"
    assert item.bucket == "short"


def test_bad_rows_and_kinds_are_typed_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"video_uid": "x", "question": "Q?"}]')
    with pytest.raises(InvalidInput) as info:
        read_benchmark("cgbench", bad)
    assert info.value.code == "invalid_eval_item" and "row 1" in str(info.value)
    with pytest.raises(InvalidInput) as info:
        read_benchmark("nope", bad)
    assert info.value.code == "unknown_benchmark"
    with pytest.raises(InvalidInput) as info:
        read_benchmark("mlvu", tmp_path / "missing.json")
    assert info.value.code == "eval_file_not_found"
    wrong = tmp_path / "wrong.json"
    wrong.write_text('[{"video_name": "a.mp4", "question": "Q?", "candidates": ["x", "y"],'
                     ' "answer": "z"}]')
    with pytest.raises(InvalidInput):
        read_benchmark("mlvu", wrong)


def test_letters_as_the_reference_scores_them_and_leniently() -> None:
    assert strict_letter(None) == "A"  # the reference's stand-in for a missing answer
    assert score_letter(None, "A", 4).correct and score_letter(None, "A", 4).missing
    assert not score_letter(None, "B", 4).correct
    assert score_letter("B", "B", 4) == score_letter(" B ", "B", 4)
    assert not score_letter("(B) a dog", "B", 4).correct
    assert score_letter("(B) a dog", "B", 4).lenient
    assert lenient_letter("B. a dog") == "B"
    assert lenient_letter("The answer is c.") == "C"
    assert lenient_letter("E", letters=4) is None
    assert lenient_letter("a dog") is None
