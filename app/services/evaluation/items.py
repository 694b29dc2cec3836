"""One benchmark question, and how an answer is scored against its letter.

The reference evaluation (LongVideo-R1 ``eval/evaluation.py``) compares the predicted
letter to the truth exactly, and replaces a missing prediction with ``"A"`` before it does;
``strict_letter`` is that rule. The lenient reading also accepts answers such as
``"(B) a cat"`` or ``"The answer is B."``; both are reported, with the missing count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
REFERENCE_MISSING = "A"  # what the reference scores a missing prediction as

_LEAD = re.compile(r"^\s*\(?([A-Z])\s*[).:\]]?(?:\s|$)")
_SAID = re.compile(r"\b(?:answer|option)\s*(?:is|:)?\s*\(?([A-Z])\b[).]?", re.IGNORECASE)


@dataclass(frozen=True)
class BenchItem:
    """A question as every reader hands it on.

    ``options`` are the option texts with their letters (``"A. …"``), empty when the
    question carries them in its text (LVBench); ``answer`` is the truth's letter (or
    free text for an open question); ``task`` the question type a benchmark breaks
    accuracy down by; ``bucket`` its duration group; ``clues`` seconds, where known.
    """

    qid: str
    video: Path
    question: str
    options: tuple[str, ...]
    answer: str
    task: str = ""
    bucket: str = ""
    clues: tuple[tuple[float, float], ...] = ()
    subtitles: Path | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)


def strict_letter(prediction: str | None) -> str:
    """The letter the reference compares: the prediction as is, ``"A"`` when missing."""
    return REFERENCE_MISSING if prediction is None else prediction


def lenient_letter(prediction: str | None, letters: int = len(LETTERS)) -> str | None:
    """A letter read out of a free-form answer, or None: ``"B"``, ``"(B) cat"``,
    ``"B. cat"``, ``"The answer is B"``."""
    if prediction is None:
        return None
    allowed = LETTERS[:letters]
    text = prediction.strip()
    lead = _LEAD.match(text)
    if lead and lead.group(1) in allowed:
        return lead.group(1)
    said = _SAID.search(text)
    if said and said.group(1).upper() in allowed:
        return said.group(1).upper()
    return None


@dataclass(frozen=True, slots=True)
class LetterScore:
    correct: bool  # the reference's rule (exact; missing scored as "A")
    lenient: bool  # a letter read out of the answer matches
    missing: bool  # no prediction at all


def score_letter(prediction: str | None, truth: str, option_count: int) -> LetterScore:
    truth = truth.strip()
    correct = strict_letter(prediction).strip() == truth
    letter = lenient_letter(prediction, option_count or len(LETTERS))
    lenient = correct if prediction is None else (letter == truth or prediction.strip() == truth)
    return LetterScore(correct, lenient, prediction is None)
