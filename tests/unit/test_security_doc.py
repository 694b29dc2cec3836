"""SECURITY.md names the test behind each defence: every file and test it names exists."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def test_every_test_named_in_security_md_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    files = set(re.findall(r"\b((?:hostile|integration|unit)/[\w/]+\.py)\b", text))
    names = set(re.findall(r"`(test_[\w*]+)`", text))
    assert len(files) >= 15 and len(names) >= 20
    missing_files = [f for f in files if not (TESTS / f).exists()
                     and not (TESTS / "integration" / f).exists()]
    assert not missing_files, missing_files
    defined = set(re.findall(r"^(?:async )?def (test_\w+)", "\n".join(
        p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py")), re.MULTILINE))
    missing_names = [n for n in names if not fnmatch.filter(defined, n)]
    assert not missing_names, missing_names
