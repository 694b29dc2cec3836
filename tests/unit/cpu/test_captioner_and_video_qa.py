"""The CPU captioner and video_qa on frames with real text, using the packaged models."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.ports import SubtitleLine
from app.errors import InvalidInput
from app.models.cpu.captioner import CPUCaptioner, pick
from app.models.cpu.ocr import get_reader
from app.models.cpu.video_qa import NOT_RELATED, CPUFrameQA
from tests.unit.cpu.conftest import node_frames, text_frame

SPEECH = (
    SubtitleLine(10.2, 11.8, "Welcome to the cooking show."),
    SubtitleLine(12.0, 14.0, "Today we bake bread with rye flour."),
)


def test_pick_spreads_positions_evenly() -> None:
    assert pick(3, 16) == [4, 8, 11]
    assert pick(5, 3) == [0, 1, 2]
    assert pick(0, 10) == [] and pick(2, 0) == []


def test_ocr_reads_rendered_text_and_caches_by_content() -> None:
    reader = get_reader()
    image = text_frame("OPEN SOURCE")
    first = reader.read(image)
    assert [box.text.replace(" ", "") for box in first] == ["OPENSOURCE"]
    assert reader.read(image.copy()) is first
    assert reader.read(np.full((64, 64, 3), 128, dtype=np.uint8)) == ()


async def test_caption_quotes_speech_and_screen_text_with_times() -> None:
    images = [text_frame("RYE BREAD")] * 8
    frames = node_frames(images, subtitles=SPEECH)
    output = await CPUCaptioner().caption(frames)
    text = output.text
    assert text.startswith("This clip runs from 10.0s to 14.0s.")
    assert 'At 10.2s someone says: "Welcome to the cooking show."' in text
    assert 'At 12.0s someone says: "Today we bake bread with rye flour."' in text
    assert "the screen shows the text" in text and "RYEBREAD" in text.replace(" ", "")
    assert "picture is" in text
    assert text.index("Welcome") < text.index("Today")
    assert output.raw_reply == f"<caption>{text}</caption>"
    assert output.usage.model == "vidnav-cpu-captioner"


async def test_silent_node_says_so() -> None:
    output = await CPUCaptioner().caption(node_frames([np.zeros((72, 128, 3), np.uint8)] * 4))
    assert "Nothing is said in it." in output.text
    assert "the picture is dark" in output.text


def test_config_version_is_stable_and_tracks_sampling() -> None:
    assert CPUCaptioner().config_version == CPUCaptioner().config_version
    assert CPUCaptioner().config_version != CPUCaptioner(ocr_frames=(1, 1, 1)).config_version
    assert CPUCaptioner().config_version != CPUCaptioner(frame_counts=(8, 8, 8)).config_version


async def test_bad_frames_are_a_typed_error() -> None:
    frames = node_frames([text_frame("X")] * 2)
    broken = node_frames([text_frame("X")] * 2)
    object.__setattr__(broken, "frame_times", (1.0,))
    with pytest.raises(InvalidInput) as info:
        await CPUCaptioner().caption(broken)
    assert info.value.code == "invalid_frames"
    grey = node_frames([np.zeros((10, 10), np.uint8)])
    with pytest.raises(InvalidInput):
        await CPUCaptioner().caption(grey)
    with pytest.raises(InvalidInput) as info:
        await CPUFrameQA().answer(frames, "   ")
    assert info.value.code == "invalid_query"


async def test_video_qa_ranks_what_is_said_and_written_against_the_query() -> None:
    frames = node_frames([text_frame("RYE BREAD")] * 8, subtitles=SPEECH)
    output = await CPUFrameQA().answer(frames, "What kind of flour is used for the bread?")
    assert output.text.startswith('At 12.0s someone says: "Today we bake bread with rye flour."')
    assert "<answer>" in output.raw_reply and "<reasoning>" in output.raw_reply


async def test_video_qa_says_when_nothing_relates() -> None:
    frames = node_frames([np.zeros((72, 128, 3), np.uint8)] * 4)
    output = await CPUFrameQA().answer(frames, "What colour is the car?")
    assert output.text.startswith(NOT_RELATED)
