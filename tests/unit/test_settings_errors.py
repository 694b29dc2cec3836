"""Settings: defaults every entry point shares, and a bad value stopping every entry point
with one ``error [invalid_setting] ...`` line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = "error [invalid_setting] VIDNAV_PROFILE='vllm': Input should be 'cpu' or 'remote'"

ENTRY_POINTS = {
    "vidnav ask": ["-m", "app.cli", "ask", "video.mp4", "What?"],
    "vidnav eval": ["-m", "app.cli", "eval", "items.jsonl"],
    "vidnav serve": ["-m", "app.cli", "serve"],
    "vidnav worker": ["-m", "app.cli", "worker"],
    "vidnav db upgrade": ["-m", "app.cli", "db", "upgrade"],
    "vidnav tenants create": ["-m", "app.cli", "tenants", "create", "acme"],
    "create_app() (the ASGI factory)": ["-c", "from app.api.app import create_app; create_app()"],
    "celery -A workers.celery_app": ["-c", "import workers.celery_app"],
}


@pytest.fixture
def no_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VIDNAV_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_bad_setting_stops_every_entry_point_with_one_line(entry: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDNAV_")}
    env.update(VIDNAV_PROFILE="vllm", VIDNAV_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, *ENTRY_POINTS[entry]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == EXPECTED
    assert proc.stdout == ""
    assert not (tmp_path / "vidnav.db").exists()  # stopped before any work


def test_each_problem_names_its_variable_and_what_is_allowed(no_model_env: None) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(max_rounds="many", caption_mode="fast", min_width=0)
    message = info.value.message
    assert "\n" not in message
    assert "VIDNAV_MAX_ROUNDS='many': Input should be a valid integer" in message
    assert "VIDNAV_CAPTION_MODE='fast': Input should be 'eager', 'online' or 'lazy'" in message
    assert "VIDNAV_MIN_WIDTH=0: Input should be greater than or equal to 1" in message
    with pytest.raises(SettingsError, match="VIDNAV_MIN_WIDTH must not exceed VIDNAV_MAX_WIDTH"):
        load_settings(min_width=8, max_width=4)


def test_caption_mode_is_eager_only_when_the_cpu_captions_and_nothing_says_otherwise(
    no_model_env: None,
) -> None:
    remote = "http://127.0.0.1:9/v1"
    assert load_settings().caption_mode == "eager"
    assert load_settings(policy_base_url=remote).caption_mode == "eager"
    assert load_settings(captioner_base_url=remote).caption_mode == "online"
    assert load_settings(captioner_base_url=remote, profile="cpu").caption_mode == "eager"
    assert load_settings(caption_mode="lazy").caption_mode == "lazy"
    assert load_settings(caption_mode="online").caption_mode == "online"
    assert "caption_mode" not in load_settings().model_fields_set
