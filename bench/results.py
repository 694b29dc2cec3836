"""Shared by the benchmarks: their sections of bench/RESULTS.md and the closing lines."""

from __future__ import annotations

import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def load_average() -> str:
    """The 1/5/15-minute load averages, for the record: the machine is often shared."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_section(name: str, section: str, path: Path = RESULTS) -> None:
    """Replace the ``## name`` section of RESULTS.md (or append it), leaving others alone.

    ``section`` is the whole section, its ``## name`` heading included.
    """
    text = path.read_text("utf-8") if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {name}"), None)
    section = section.rstrip("\n") + "\n"
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + section, "utf-8")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    tail = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + section + ("\n" + tail if tail else ""), "utf-8")


def finish(name: str, section: str, *, write: bool) -> None:
    """Print a benchmark's section and, unless told not to, record it in RESULTS.md."""
    print(section)
    if write:
        write_section(name, section)
        print(f"written to {RESULTS}")
