"""The LongVideo-R1 wire format, pinned character for character against the spec."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import protocol
from app.core.ports import SubtitleLine
from app.core.protocol import (
    InvalidQuestion,
    ToolCall,
    ToolCallError,
    caption_messages,
    extract_caption,
    extract_video_qa_answer,
    initial_messages,
    normalize_options,
    parse_reply,
    parse_tool_call,
    question_text,
    reply_regex,
    subtitles_at,
    video_qa_messages,
)
from app.core.tree import VideoGeometry
from app.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
SPEC_JSON = ROOT.parent / "shared" / "spec" / "longvideo-r1-prompts.json"
PACKAGED_JSON = ROOT / "app" / "core" / "prompts.json"


def spec_strings() -> dict[str, str]:
    path = SPEC_JSON if SPEC_JSON.exists() else PACKAGED_JSON
    data: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return data


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


@pytest.mark.skipif(not SPEC_JSON.exists(), reason="the shared spec folder is not checked out")
def test_packaged_prompts_are_a_byte_identical_copy_of_the_spec() -> None:
    assert PACKAGED_JSON.read_bytes() == SPEC_JSON.read_bytes()


def test_loaded_prompts_equal_the_spec_strings() -> None:
    assert dict(protocol.PROMPTS) == spec_strings()


# --- the navigation conversation ------------------------------------------------------

FIXTURE = VideoGeometry(7357, 29.97)  # 245.5 s, width 4, odd frame count


def test_first_messages_for_a_multiple_choice_question() -> None:
    spec = spec_strings()
    high = [(*FIXTURE.span_labels(node), f"caption {node[0]}") for node in FIXTURE.nodes(1)]
    messages = initial_messages(
        question="What colour is the bus?",
        options=["Red", "Blue", "Green", "A yellow one"],
        width=FIXTURE.width,
        duration_label=FIXTURE.duration_label,
        high_captions=high,
    )
    system = spec["navigation_system_prompt"].replace("{width}", "4")
    assert "The video is divided into 4 major segments." in system
    assert messages == [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": [
                text("What colour is the bus?\nA. Red\nB. Blue\nC. Green\nD. A yellow one\n"),
                text("The total duration of the video is 245.5 seconds."),
                text("High-level Caption 1 from 0.0 to 61.4:caption 1"),
                text("High-level Caption 2 from 61.4 to 122.7:caption 2"),
                text("High-level Caption 3 from 122.8 to 184.1:caption 3"),
                text("High-level Caption 4 from 184.1 to 245.4:caption 4"),
            ],
        },
    ]


def test_free_form_question_is_the_question_and_a_newline() -> None:
    messages = initial_messages(
        question="Who opens the door?", options=(), width=6, duration_label=3600.0,
        high_captions=[(0.0, 600.0, " x")],
    )
    assert messages[1]["content"] == [
        text("Who opens the door?\n"),
        text("The total duration of the video is 3600.0 seconds."),
        text("High-level Caption 1 from 0.0 to 600.0: x"),
    ]
    assert "divided into 6 major segments" in messages[0]["content"]


def test_observations_and_notices() -> None:
    assert protocol.caption_observation((2, 3), 92.1, 107.4, "A bus.") == (
        "Medium-level Caption from tool get_caption((2,3)). From 92.1 to 107.4:A bus."
    )
    assert protocol.caption_observation((2, 3, 4), 103.6, 107.4, "Red bus") == (
        "Low-level Caption from tool get_caption((2,3,4)). From 103.6 to 107.4:Red bus"
    )
    assert protocol.video_qa_observation("It is red.") == "<information>It is red.</information>"
    assert protocol.last_round_message() == {
        "role": "user",
        "content": [
            text("This is the last round. You must provide the final answer in this round.")
        ],
    }
    # The reference sends the think-first notice as a plain string.
    assert protocol.think_first_message() == {
        "role": "user",
        "content": "You must think first before answering or calling the tool.",
    }
    assert protocol.assistant_message("<think>a</think>") == {
        "role": "assistant", "content": [text("<think>a</think>")]
    }
    with pytest.raises(InvalidInput):
        protocol.caption_observation((1,), 0.0, 1.0, "x")


@pytest.mark.parametrize(
    ("given_options", "expected"),
    [
        (["Red", "Blue"], ("A. Red", "B. Blue")),
        (["A. Red", "B. Blue"], ("A. Red", "B. Blue")),
        (["(A) Red", "(b) Blue"], ("A. Red", "B. Blue")),
        (["A) Red", "B)Blue"], ("A. Red", "B. Blue")),
        (["A: Red", "B: Blue"], ("A. Red", "B. Blue")),
        ([" Red ", "Blue"], ("A. Red", "B. Blue")),
        # Prefixes out of order or on only some options are text, not letters.
        (["B. Red", "A. Blue"], ("A. B. Red", "B. A. Blue")),
        (["Lincoln", "A. Lincoln"], ("A. Lincoln", "B. A. Lincoln")),
    ],
)
def test_options_are_lettered_once(given_options: list[str], expected: tuple[str, ...]) -> None:
    assert normalize_options(given_options) == expected


@pytest.mark.parametrize(
    ("question", "options"),
    [("", []), ("   ", ["a"]), ("q", [""]), ("q", ["a\nb"]), ("q", [f"o{i}" for i in range(27)]),
     ("q", "ABCD"), ("q", ["a", 3])],
)
def test_bad_questions_raise_a_typed_error(question: str, options: Any) -> None:
    with pytest.raises(InvalidQuestion) as info:
        question_text(question, options)
    assert info.value.code == "invalid_question"


# --- reading replies ---------------------------------------------------------------------


def test_parse_reply_takes_the_first_of_each_tag_across_lines() -> None:
    reply = (
        "preamble <think>\n  line one\nline two </think>\n<tool> get_caption((1,2)) </tool>"
        "<answer>B</answer><think>second</think><answer>C</answer>"
    )
    parsed = parse_reply(reply)
    assert parsed.think == "line one\nline two"
    assert parsed.tool == "get_caption((1,2))"
    assert parsed.answer == "B"
    assert parse_reply("no tags at all") == protocol.ParsedReply(None, None, None)
    assert parse_reply("<think>unclosed").think is None


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("get_caption((1,2))", ToolCall("get_caption", (1, 2))),
        ("get_caption((4, 4, 4))", ToolCall("get_caption", (4, 4, 4))),
        ("  get_caption((1,2))\n", ToolCall("get_caption", (1, 2))),
        ("get_caption(1, 3)", ToolCall("get_caption", (1, 3))),
        ("get_caption([2, 1, 3])", ToolCall("get_caption", (2, 1, 3))),
        ('video_qa((1,2,3), "what colour is the shirt?")',
         ToolCall("video_qa", (1, 2, 3), "what colour is the shirt?")),
        ("video_qa((1, 2, 3), 'multi\\nline')", ToolCall("video_qa", (1, 2, 3), "multi\nline")),
        ('video_qa((1,2,\n 3), "spans (lines)")', ToolCall("video_qa", (1, 2, 3), "spans (lines)")),
    ],
)
def test_valid_tool_calls(call: str, expected: ToolCall) -> None:
    assert parse_tool_call(call, 4) == expected


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ("get_caption", "unparseable_tool_call"),
        ("get_caption((1,2)) please", "unparseable_tool_call"),
        ("get_caption((1,2)", "unparseable_tool_call"),
        ("get_caption(__import__('os').system('true'))", "unparseable_tool_call"),
        ("get_caption((1, x))", "unparseable_tool_call"),
        ("get_caption(" + "(" * 300 + ")" * 300 + ")", "unparseable_tool_call"),
        ("get_caption((1, 2" + " " * 5000 + "))", "unparseable_tool_call"),
        ("get_caption()", "unparseable_tool_call"),
        ('video_qa((1,2,3),\n"a newline outside brackets")', "unparseable_tool_call"),
        ("open((1,2))", "unknown_tool"),
        ("__import__('os')", "unknown_tool"),
        ("get_captions((1,2))", "unknown_tool"),
        ("get_caption((1,))", "bad_arguments"),
        ("get_caption(1)", "bad_arguments"),
        ("get_caption((1,2,3,4))", "bad_arguments"),
        ("get_caption((True, 2))", "bad_arguments"),
        ("get_caption((1.0, 2))", "bad_arguments"),
        ("get_caption(('1', '2'))", "bad_arguments"),
        ("get_caption({1, 2})", "bad_arguments"),
        ("get_caption((0, 2))", "node_out_of_range"),
        ("get_caption((5, 1))", "node_out_of_range"),
        ("get_caption((1, 1, -1))", "node_out_of_range"),
        ("video_qa((1,2), 'q')", "bad_arguments"),
        ("video_qa((1,2,3))", "bad_arguments"),
        ("video_qa((1,2,3), 5)", "bad_arguments"),
        ("video_qa((1,2,3), '   ')", "bad_arguments"),
        ("video_qa((1,2,3), 'q', 'extra')", "bad_arguments"),
        ("video_qa((1,2,9), 'q')", "node_out_of_range"),
    ],
)
def test_bad_tool_calls_name_their_violation(call: str, code: str) -> None:
    with pytest.raises(ToolCallError) as info:
        parse_tool_call(call, 4)
    assert info.value.code == code


# --- the reply grammar for constrained decoding --------------------------------------------


@pytest.mark.parametrize("width", [1, 4, 8, 12])
def test_reply_regex_compiles_and_admits_typical_replies(width: int) -> None:
    pattern = re.compile(reply_regex(width))
    ok = [
        "<think>Need the middle.</think>\n<tool>get_caption((1,1))</tool>",
        f"<think>x</think><tool>get_caption(({width}, 1, {width}))</tool>",
        f'<think>look</think>\n<tool>video_qa(({width},1,1), "what is on the table?")</tool>',
        "<think>Enough.</think>\n<answer>B</answer>",
    ]
    for reply in ok:
        assert pattern.fullmatch(reply), reply
    bad = [
        "<answer>B</answer>",
        "<think>x</think>",
        f"<think>x</think><tool>get_caption(({width + 1},1))</tool>",
        "<think>x</think><tool>get_caption((0,1))</tool>",
        "<think>x</think><tool>get_caption((1,))</tool>",
        "<think>x</think><tool>open((1,1))</tool>",
        '<think>x</think><tool>video_qa((1,1), "q")</tool>',
        '<think>x</think><tool>video_qa((1,1,1), "")</tool>',
        "<think>x</think><answer> </answer>",
        "<think>" + "x" * 1300 + "</think><answer>A</answer>",
        "<think>x</think><answer>A</answer> trailing",
    ]
    for reply in bad:
        assert not pattern.fullmatch(reply), reply


@pytest.mark.parametrize("width", [1, 3, 4, 8, 10, 16])
def test_reply_regex_lengths_are_bounded(width: int) -> None:
    regex = reply_regex(width, max_think=50, max_answer=10, max_query=20)
    pattern = re.compile(regex)
    assert pattern.fullmatch("<think>" + "a" * 50 + "</think><answer>" + "b" * 10 + "</answer>")
    assert not pattern.fullmatch("<think>" + "a" * 51 + "</think><answer>b</answer>")
    assert not pattern.fullmatch("<think>a</think><answer>" + "b" * 11 + "</answer>")
    long_query = '<think>a</think><tool>video_qa((1,1,1), "' + "q" * 21 + '")</tool>'
    assert not pattern.fullmatch(long_query)


@pytest.mark.parametrize("width", [1, 4, 8, 11])
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_every_reply_the_grammar_admits_is_a_valid_reply(width: int, data: st.DataObject) -> None:
    reply = data.draw(st.from_regex(reply_regex(width), fullmatch=True))
    parsed = parse_reply(reply)
    assert parsed.think
    if parsed.tool is not None:
        call = parse_tool_call(parsed.tool, width)
        assert all(1 <= i <= width for i in call.node)
        assert len(call.node) in ((2, 3) if call.name == "get_caption" else (3,))
        assert parsed.answer is None
    else:
        assert parsed.answer


def test_reply_regex_rejects_bad_parameters() -> None:
    for width in (0, 100, True):
        with pytest.raises(InvalidInput):
            reply_regex(width)
    with pytest.raises(InvalidInput):
        reply_regex(4, max_think=0)


# --- captioner and video_qa requests ------------------------------------------------------


def test_caption_request_for_a_leaf_with_subtitles() -> None:
    spec = spec_strings()
    lines = [
        SubtitleLine(10.0, 12.5, "Hello there"),
        SubtitleLine(12.0, 13.0, "General"),
        SubtitleLine(20.0, 21.0, "later"),
    ]
    times = [12.5, 13.5]
    messages = caption_messages(
        level=3,
        frame_times=times,
        image_urls=["data:image/jpeg;base64,AAA", "data:image/jpeg;base64,BBB"],
        frame_subtitles=[subtitles_at(lines, t) for t in times],
    )
    system = (
        spec["caption_system_prompt_low"].replace("{num_frame}", "2").replace("{num_words}", "200")
    )
    assert messages == [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": [
                text("12.5s. Subtitle: Hello there,General."),
                image("data:image/jpeg;base64,AAA"),
                text("Frame at 13.5s"),
                image("data:image/jpeg;base64,BBB"),
            ],
        },
    ]
    assert "given 2 uniformly sampled frames" in system
    assert "strictly controlled within 200 words." in system


def test_caption_request_for_high_and_medium_nodes_uses_the_long_prompt() -> None:
    spec = spec_strings()
    for level in (1, 2):
        messages = caption_messages(
            level=level, frame_times=[0.0], image_urls=["data:x"], num_words=150
        )
        assert messages[0]["content"] == (
            spec["caption_system_prompt"].replace("{num_frame}", "1")
            .replace("{num_words}", "150")
        )
        assert messages[1]["content"] == [text("Frame at 0.0s"), image("data:x")]
    default = caption_messages(level=1, frame_times=[0.0], image_urls=["data:x"])
    assert "strictly controlled within 300 words." in default[0]["content"]


def test_caption_request_rejects_mismatched_inputs() -> None:
    with pytest.raises(InvalidInput):
        caption_messages(level=1, frame_times=[0.0, 1.0], image_urls=["u"])
    with pytest.raises(InvalidInput):
        caption_messages(level=1, frame_times=[], image_urls=[])
    with pytest.raises(InvalidInput):
        caption_messages(level=4, frame_times=[0.0], image_urls=["u"])
    with pytest.raises(InvalidInput):
        caption_messages(level=2, frame_times=[0.0], image_urls=["u"], frame_subtitles=[])


def test_subtitles_at_keeps_lines_showing_at_that_moment() -> None:
    lines = [SubtitleLine(1.0, 2.0, "a"), SubtitleLine(1.5, 3.0, "b"), SubtitleLine(3.5, 4, "c")]
    assert subtitles_at(lines, 2.0) == ["a", "b"]
    assert subtitles_at(lines, 3.2) == []
    assert subtitles_at(lines, 3.5) == ["c"]


def test_video_qa_request() -> None:
    spec = spec_strings()
    messages = video_qa_messages(
        query="What is on the table?", frame_times=[103.6, 103.8], image_urls=["u1", "u2"]
    )
    assert messages == [
        {"role": "system", "content": spec["video_qa_system_prompt"]},
        {
            "role": "user",
            "content": [
                text("What is on the table?"),
                text("Video frame at 103.6 seconds:"),
                image("u1"),
                text("Video frame at 103.8 seconds:"),
                image("u2"),
            ],
        },
    ]
    with pytest.raises(InvalidInput):
        video_qa_messages(query="q", frame_times=[1.0], image_urls=[])


def test_answer_and_caption_extraction() -> None:
    assert extract_caption("<caption> A red bus. </caption> trailing") == "A red bus."
    assert extract_caption("  A plain reply.\n") == "A plain reply."
    assert extract_caption("<caption>first</caption><caption>second</caption>") == "first"
    reply = "<reasoning>The cup is blue.</reasoning>\n<answer>\nA blue cup.\n</answer>"
    assert extract_video_qa_answer(reply) == "A blue cup."
    assert extract_video_qa_answer(" no tags ") == "no tags"


def test_caption_and_video_qa_requests_for_a_leaf_of_the_fixture_tree() -> None:
    leaf = (2, 3, 4)
    times = FIXTURE.frame_times(leaf)
    urls = [f"data:image/jpeg;base64,F{i}" for i in range(len(times))]
    lines = [SubtitleLine(104.0, 104.2, "Stop!"), SubtitleLine(104.1, 105.0, "Now")]
    messages = caption_messages(
        level=3, frame_times=times, image_urls=urls,
        frame_subtitles=[subtitles_at(lines, t) for t in times],
    )
    labels = [part["text"] for part in messages[1]["content"][::2]]
    assert labels == [
        "Frame at 103.6s", "Frame at 103.8s", "104.1s. Subtitle: Stop!,Now.",
        "104.3s. Subtitle: Now.",
        "104.6s. Subtitle: Now.", "104.9s. Subtitle: Now.", "Frame at 105.1s", "Frame at 105.4s",
        "Frame at 105.6s", "Frame at 105.9s", "Frame at 106.1s", "Frame at 106.4s",
        "Frame at 106.6s", "Frame at 106.9s", "Frame at 107.1s", "Frame at 107.4s",
    ]
    assert messages[1]["content"][1::2] == [image(url) for url in urls]
    assert "You are given 16 uniformly sampled frames" in messages[0]["content"]

    qa_times = [FIXTURE.time_label(i) for i in FIXTURE.videoqa_frames(leaf)]
    qa = video_qa_messages(query="Who shouts?", frame_times=qa_times, image_urls=urls)
    assert [part["text"] for part in qa[1]["content"][1::2]][:3] == [
        "Video frame at 103.6 seconds:", "Video frame at 103.8 seconds:",
        "Video frame at 104.1 seconds:",
    ]
    assert len(qa[1]["content"]) == 1 + 2 * 16
