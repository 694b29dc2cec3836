"""Pieces of local questions that need no video: the stall guard, evaluation files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.errors import InvalidInput, VidnavError
from app.services.eval_jsonl import read_eval_file
from app.services.local_questions import StallGuard


def test_stall_guard_fires_only_when_nothing_changes() -> None:
    guard = StallGuard("work")
    guard.check(("captioning", 1), 0.05)
    guard.check(("captioning", 2), 0.05)
    guard.check(("captioning", 2), 10.0)
    time.sleep(0.1)
    with pytest.raises(VidnavError) as info:
        guard.check(("captioning", 2), 0.05)
    assert info.value.code == "stalled" and info.value.kind == "unavailable"


def test_eval_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text('{"video": "v.mp4", "question": "Q?", "options": ["x", "y"], '
                     '"answer": "A", "clues": [[1, 2.5]]}\n\n'
                     '{"video": "/abs/w.mp4", "question": "R?", "answer": "free"}\n')
    first, second = read_eval_file(items)
    assert first.video == tmp_path / "v.mp4" and first.options == ("x", "y")
    assert first.clues == ((1.0, 2.5),)
    assert second.video == Path("/abs/w.mp4") and second.options == () and second.clues == ()


@pytest.mark.parametrize("text", ["not json\n", '{"video": "v.mp4"}\n', "",
                                  '{"video": "v", "question": "q", "answer": "A", '
                                  '"clues": [[1]]}\n'])
def test_bad_eval_files_are_typed_errors(tmp_path: Path, text: str) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text(text)
    with pytest.raises(InvalidInput) as info:
        read_eval_file(items)
    assert info.value.code == "invalid_eval_item"
    with pytest.raises(InvalidInput):
        read_eval_file(tmp_path / "missing.jsonl")
