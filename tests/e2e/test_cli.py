"""``vidnav`` as a newcomer runs it: no Postgres, no Redis, no GPU, a real narrated video.

The narrated clip (Creative Commons' "Wanna Work Together?") says, about 69 s in,
"Copyright protects your creativity against uses you don't consent to", and about
102 s in, "It only takes a minute and it's totally free" (checked against its
faster-whisper transcript). The answers and the spans the trace visits are checked
against the transcript vidnav stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.fetch_videos import fetch_video
from tests.e2e.cpu_support import overlaps, said_at, vidnav

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vidnav-cli")


@pytest.fixture(scope="module")
def narrated() -> Path:
    return fetch_video("narrated")


@pytest.fixture(scope="module")
def first_answer(data_dir: Path, narrated: Path) -> dict:
    """A first question on a fresh data directory: ingest, captions, navigation."""
    proc = vidnav(data_dir, "ask", str(narrated),
                  "What does copyright protect your creativity against?", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_ask_json_answers_what_is_said_and_looks_where_it_is_said(
    first_answer: dict, data_dir: Path
) -> None:
    result = first_answer
    assert result["status"] == "succeeded"
    assert "consent" in result["answer"].lower()
    span = said_at(data_dir, "consent")
    assert 60.0 < span[0] < 80.0
    trace = result["trace"]
    assert result["rounds"] == len(trace) >= 2
    assert trace[-1]["kind"] == "answer"
    assert set(trace[0]) >= {"kind", "node", "start", "end"}
    looked = [step for step in trace if step["kind"] in ("get_caption", "video_qa")]
    assert any(overlaps(s["start"], s["end"], span) for s in looked if len(s["node"]) == 3)
    assert all(s["start"] is not None and s["end"] >= s["start"] for s in looked)
    assert set(result["timings"]) >= {"ingest_s", "captioning_s", "question_s", "total_s"}
    assert 0 < result["summary"]["visited_share"] < 0.5


def test_ask_multiple_choice_prints_the_option_and_the_trace(
    first_answer: dict, data_dir: Path, narrated: Path
) -> None:
    proc = vidnav(data_dir, "ask", str(narrated), "How long does it take to get a license?",
                  "-o", "About an hour", "-o", "A week", "-o", "A minute", "-o", "A day")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "C. A minute" in proc.stdout
    assert "Where it looked" in proc.stdout and "video_qa" in proc.stdout
    span = said_at(data_dir, "only takes a minute")
    assert f"{span[0]:.1f}s" in proc.stdout or "takes a minute" in proc.stdout


def test_ask_reports_bad_input_without_a_traceback(
    data_dir: Path, tmp_path: Path, narrated: Path
) -> None:
    missing = vidnav(data_dir, "ask", str(tmp_path / "nope.mp4"), "Anything?")
    assert missing.returncode == 2
    assert "error [video_not_found]" in missing.stderr
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not a video at all" * 100)
    bad = vidnav(data_dir, "ask", str(fake), "Anything?", "--json")
    assert bad.returncode == 2, bad.stderr
    assert "error [" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stdout == ""
    empty = vidnav(data_dir, "ask", str(narrated), "   ")
    assert empty.returncode == 2 and "error [invalid_question]" in empty.stderr
    one_option = vidnav(data_dir, "ask", str(narrated), "Which?", "-o", "A\nB")
    assert one_option.returncode == 2 and "Traceback" not in one_option.stderr


def test_db_upgrade_and_tenants_create(tmp_path: Path) -> None:
    upgraded = vidnav(tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "database at revision" in upgraded.stdout and (tmp_path / "vidnav.db").exists()
    created = vidnav(tmp_path, "tenants", "create", "acme")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("vn_")
    again = vidnav(tmp_path, "tenants", "create", "acme")
    assert again.returncode == 2 and "tenant_exists" in again.stderr


def test_worker_needs_the_full_stack(tmp_path: Path) -> None:
    proc = vidnav(tmp_path, "worker", "--queue", "caption")
    assert proc.returncode == 2
    assert "worker_needs_redis" in proc.stderr


def test_eval_scores_answers_and_localization(
    first_answer: dict, data_dir: Path, narrated: Path, tmp_path: Path
) -> None:
    span = said_at(data_dir, "only takes a minute")
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(item) for item in (
        {"video": str(narrated), "question": "How long does it take to get a license?",
         "options": ["About an hour", "A week", "A minute", "A day"], "answer": "C",
         "clues": [list(span)]},
        {"video": str(narrated), "question": "What is the teacher said to shape?",
         "options": ["Old buildings", "Young minds", "New laws", "Small businesses"],
         "answer": "B"},
    )) + "\n")
    proc = vidnav(data_dir, "eval", str(items), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["summary"]["items"] == 2
    assert [row["answer"] for row in report["items"]] == ["C", "B"]
    assert report["summary"]["accuracy"] == 1.0
    assert report["items"][0]["f1"] > 0  # it looked where the clue is
    assert report["items"][1]["f1"] == 0.0  # no clue given
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "no video"}\n')
    bad = vidnav(data_dir, "eval", str(broken))
    assert bad.returncode == 2 and "invalid_eval_item" in bad.stderr
