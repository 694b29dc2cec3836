"""Writing and reading the CPU profile's timed statements ("At 12.3s ...").

The CPU captioner and video_qa write one statement per fact, each led by its time; the
retrieval navigator splits any caption (its own, or a vision model's prose) back into
statements and reads a time from each when one is there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TIME_LEAD = re.compile(r"(?=\b(?:At|From|By) \d+(?:\.\d+)?s\b)")
_TIME = re.compile(r"\b(\d+(?:\.\d+)?)s\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
MAX_STATEMENT_WORDS = 60


@dataclass(frozen=True, slots=True)
class Statement:
    """One piece of evidence and the time it names, if any (seconds)."""

    text: str
    time: float | None


def _pieces(chunk: str) -> list[str]:
    """A long chunk cut at sentence ends into runs of at most ``MAX_STATEMENT_WORDS`` words."""
    if len(chunk.split()) <= MAX_STATEMENT_WORDS:
        return [chunk]
    pieces: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(chunk):
        words = sentence.split()
        if current and len(current) + len(words) > MAX_STATEMENT_WORDS:
            pieces.append(" ".join(current))
            current = []
        current.extend(words)
        while len(current) > MAX_STATEMENT_WORDS:
            pieces.append(" ".join(current[:MAX_STATEMENT_WORDS]))
            current = current[MAX_STATEMENT_WORDS:]
    if current:
        pieces.append(" ".join(current))
    return pieces


def split_statements(text: str) -> list[Statement]:
    """Cut a caption or answer into statements: at every "At/From/By {t}s" lead, and long
    runs of prose at sentence ends; each statement keeps the first time it names."""
    statements: list[Statement] = []
    for line in text.splitlines():
        for chunk in _TIME_LEAD.split(line):
            chunk = chunk.strip()
            if not chunk:
                continue
            for piece in _pieces(chunk):
                match = _TIME.search(piece)
                statements.append(Statement(piece, float(match.group(1)) if match else None))
    return statements


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset((
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for", "with",
    "from", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its", "it's", "this",
    "that", "these", "those", "there", "here", "what", "which", "who", "whom", "whose", "when",
    "where", "why", "how", "do", "does", "did", "done", "has", "have", "had", "having", "can",
    "could", "will", "would", "shall", "should", "may", "might", "must", "i", "you", "he", "she",
    "we", "they", "me", "him", "her", "us", "them", "my", "your", "his", "our", "their", "not",
    "no", "yes", "so", "than", "then", "about", "into", "over", "under", "again", "very", "just",
    "also", "only", "any", "some", "all", "each", "more", "most", "such", "own", "say", "says",
    "said", "video", "clip", "someone",
))


def content_stems(text: str) -> frozenset[str]:
    """Crude stems (first four letters) of the words that carry meaning."""
    return frozenset(
        word[:4] for word in _WORD.findall(text.lower())
        if word not in STOPWORDS and len(word) > 2
    )


def overlap(query: str, text: str) -> float:
    """Share of the query's content stems that occur in ``text`` (0 when it has none)."""
    wanted = content_stems(query)
    if not wanted:
        return 0.0
    return len(wanted & content_stems(text)) / len(wanted)


def said(at: float, text: str) -> str:
    """The statement for one line of speech or subtitles."""
    spoken = " ".join(text.replace('"', "'").split())
    end = "" if spoken[-1:] in (".", "!", "?") else "."
    return f'At {at:.1f}s someone says: "{spoken}{end}"'


def quote(text: str) -> str:
    """Text inside double quotes, with inner double quotes made single."""
    return '"' + " ".join(text.replace('"', "'").split()) + '"'
