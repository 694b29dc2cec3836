"""The LongVideo-R1 wire format: prompts, message builders, reply parsing, reply grammar.

Every string comes from ``prompts.json`` (a byte-identical copy of
``../shared/spec/longvideo-r1-prompts.json``); the message shapes follow the authors'
evaluation code, because the released policy was trained on exactly them.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from app.core.ports import Message, NodeId, SubtitleLine
from app.core.tree import LOW, MEDIUM, TreeConfig
from app.errors import InvalidInput


def _load_prompts() -> dict[str, str]:
    text = resources.files("app.core").joinpath("prompts.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return {str(key): str(value) for key, value in data.items()}


PROMPTS: Mapping[str, str] = _load_prompts()
"""The protocol strings, keyed as in the spec's JSON file."""

MAX_OPTIONS = 26
MAX_TOOL_TEXT = 4096  # a real tool call is a few dozen characters; this bounds literal_eval


class InvalidQuestion(InvalidInput):
    """A question or option list that cannot be put to the policy."""

    code = "invalid_question"


# --- the navigation conversation ------------------------------------------------------


def navigation_system_prompt(width: int) -> str:
    return PROMPTS["navigation_system_prompt"].format(width=width)


_OPTION_PREFIX = re.compile(r"\s*(?:\(([A-Za-z])\)|([A-Za-z])\s*[.):])\s*(.*)", re.DOTALL)


def normalize_options(options: Sequence[str]) -> tuple[str, ...]:
    """Options as the policy reads them: ``"A. text"``, one letter per option in order.

    Letter prefixes the caller already wrote (``"A. x"``, ``"A) x"``, ``"(A) x"``) are kept
    when every option has one and they run A, B, C... in order; otherwise letters are
    assigned by position and the text is kept as given.
    """
    if isinstance(options, str):
        raise InvalidQuestion("options must be a list of strings, not one string")
    if len(options) > MAX_OPTIONS:
        raise InvalidQuestion(f"at most {MAX_OPTIONS} options are supported, got {len(options)}")
    texts: list[str] = []
    for i, option in enumerate(options):
        if not isinstance(option, str) or not option.strip():
            raise InvalidQuestion(f"option {i + 1} must be a non-empty string")
        if "\n" in option or "\r" in option:
            raise InvalidQuestion(f"option {i + 1} must be a single line")
        texts.append(option.strip())
    letters = [chr(ord("A") + i) for i in range(len(texts))]
    matches = [_OPTION_PREFIX.fullmatch(text) for text in texts]
    prefixed = all(
        m is not None and (m.group(1) or m.group(2)).upper() == letter and m.group(3).strip()
        for m, letter in zip(matches, letters, strict=True)
    )
    if prefixed:
        return tuple(
            f"{letter}. {m.group(3).strip()}"
            for m, letter in zip(matches, letters, strict=True)
            if m is not None
        )
    return tuple(f"{letter}. {text}" for letter, text in zip(letters, texts, strict=True))


def question_text(question: str, options: Sequence[str] = ()) -> str:
    """The first text part: ``f"{question}\\n"``, or ``f"{question}\\n{options}\\n"``."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidQuestion("the question must be a non-empty string")
    if not options:
        return f"{question}\n"
    return f"{question}\n" + "\n".join(normalize_options(options)) + "\n"


def duration_line(duration_label: float) -> str:
    return PROMPTS["duration_line"].format(duration=duration_label)


def high_caption_line(index: int, start: float, end: float, caption: str) -> str:
    return PROMPTS["high_caption_line"].format(index=index, start=start, end=end, caption=caption)


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def initial_messages(
    *,
    question: str,
    options: Sequence[str],
    width: int,
    duration_label: float,
    high_captions: Sequence[tuple[float, float, str]],
) -> list[Message]:
    """System prompt + the first user message (question, duration, one part per high caption).

    ``high_captions`` holds ``(start_label, end_label, caption)`` in node order.
    """
    parts = [_text(question_text(question, options)), _text(duration_line(duration_label))]
    parts += [
        _text(high_caption_line(i, start, end, caption))
        for i, (start, end, caption) in enumerate(high_captions, start=1)
    ]
    return [
        {"role": "system", "content": navigation_system_prompt(width)},
        {"role": "user", "content": parts},
    ]


def assistant_message(reply: str) -> Message:
    return {"role": "assistant", "content": [_text(reply)]}


def observation_message(text: str) -> Message:
    return {"role": "user", "content": [_text(text)]}


def last_round_message() -> Message:
    return {"role": "user", "content": [_text(PROMPTS["last_round_notice"])]}


def think_first_message() -> Message:
    # The reference sends this one notice as a plain string, not a list of parts.
    return {"role": "user", "content": PROMPTS["think_first_notice"]}


def caption_observation(node: NodeId, start: float, end: float, caption: str) -> str:
    """What the policy reads back after ``get_caption`` on a medium or low node."""
    if len(node) == MEDIUM:
        h, m = node
        return PROMPTS["medium_caption_observation"].format(
            h=h, m=m, start=start, end=end, caption=caption
        )
    if len(node) == LOW:
        h, m, low = node
        return PROMPTS["low_caption_observation"].format(
            h=h, m=m, l=low, start=start, end=end, caption=caption
        )
    raise InvalidInput(f"get_caption observations exist for medium and low nodes, got {node!r}")


def video_qa_observation(answer: str) -> str:
    return PROMPTS["video_qa_observation"].format(answer=answer)


# --- reading the policy's reply --------------------------------------------------------

def extract_tag(text: str, tag: str) -> str | None:
    """The stripped text of the first ``<tag>…</tag>``, or None.

    What the regex ``<tag>(.*?)</tag>`` finds, in linear time: if the first opening tag has
    no closing tag after it, no later one has. (The regex tries every opening tag against
    the rest of the text: a reply of many unclosed ``<think>`` tags took it seconds per
    hundred kilobytes, on the worker's event loop.)
    """
    opening, closing = f"<{tag}>", f"</{tag}>"
    start = text.find(opening)
    if start < 0:
        return None
    start += len(opening)
    end = text.find(closing, start)
    return text[start:end].strip() if end >= 0 else None


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """The first think / tool / answer of a reply; a missing tag is None."""

    think: str | None
    tool: str | None
    answer: str | None


def parse_reply(text: str) -> ParsedReply:
    return ParsedReply(
        think=extract_tag(text, "think"),
        tool=extract_tag(text, "tool"),
        answer=extract_tag(text, "answer"),
    )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A valid tool call: ``get_caption`` on a medium/low node or ``video_qa`` on a leaf."""

    name: str
    node: NodeId
    query: str | None = None


class ToolCallError(Exception):
    """A tool call the loop cannot serve; ``code`` names the protocol violation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


TOOL_NAMES = ("get_caption", "video_qa")
_CALL = re.compile(r"([A-Za-z_]\w*)\((.*)\)", re.DOTALL)


def _node_from(value: object, width: int, lengths: tuple[int, ...], call: str) -> NodeId:
    if not isinstance(value, tuple | list) or len(value) not in lengths:
        arity = " or ".join(str(n) for n in lengths)
        raise ToolCallError("bad_arguments", f"{call} needs a tuple of {arity} segment ids")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ToolCallError("bad_arguments", f"{call} segment ids must be integers")
    if not all(1 <= v <= width for v in value):
        raise ToolCallError("node_out_of_range", f"{call} segment ids run from 1 to {width}")
    return tuple(value)


def parse_tool_call(text: str, width: int) -> ToolCall:
    """Parse ``name(args)`` with ``ast.literal_eval``; raise ``ToolCallError`` if unusable."""
    if len(text) > MAX_TOOL_TEXT:
        raise ToolCallError("unparseable_tool_call", "the tool call is too long")
    match = _CALL.fullmatch(text.strip())
    if match is None:
        raise ToolCallError("unparseable_tool_call", "a tool call looks like name(arguments)")
    name, arg_text = match.group(1), match.group(2).strip()
    if name not in TOOL_NAMES:
        raise ToolCallError("unknown_tool", f"unknown tool {name!r}")
    try:
        args = ast.literal_eval(arg_text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ToolCallError(
            "unparseable_tool_call", f"the arguments are not a Python literal: {exc}"
        ) from None
    if name == "get_caption":
        return ToolCall(name, _node_from(args, width, (2, 3), "get_caption"))
    if not isinstance(args, tuple) or len(args) != 2:
        raise ToolCallError("bad_arguments", "video_qa needs ((h, m, l), query)")
    node = _node_from(args[0], width, (3,), "video_qa")
    query = args[1]
    if not isinstance(query, str):
        raise ToolCallError("bad_arguments", "the video_qa query must be a string")
    if not query.strip():
        raise ToolCallError("bad_arguments", "the video_qa query must not be empty")
    return ToolCall(name, node, query)


def _id_pattern(width: int) -> str:
    return "(" + "|".join(str(i) for i in range(width, 0, -1)) + ")"


def reply_regex(
    width: int, *, max_think: int = 1200, max_answer: int = 200, max_query: int = 200
) -> str:
    """A regex admitting only well-formed replies, for constrained decoding.

    ``<think>…</think>`` then either a ``<tool>`` with a get_caption / video_qa call on
    ids 1..width or an ``<answer>``; bounded lengths keep a small model from rambling.
    Plain groups and classes only, so grammar engines (xgrammar, outlines) accept it.
    """
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 99:
        raise InvalidInput(f"width must be an integer from 1 to 99, got {width!r}")
    for name, bound in (("max_think", max_think), ("max_answer", max_answer),
                        ("max_query", max_query)):
        if bound < 1:
            raise InvalidInput(f"{name} must be >= 1")
    i = _id_pattern(width)
    sep = ", ?"
    get_caption = rf"get_caption\(\({i}{sep}{i}({sep}{i})?\)\)"
    # Python source cannot hold NUL, so literal_eval would refuse a query containing one.
    query = rf'"[^"\\<\s\x00][^"\\<\n\r\x00]{{0,{max_query - 1}}}"'
    video_qa = rf"video_qa\(\({i}{sep}{i}{sep}{i}\){sep}{query}\)"
    think = rf"<think>[^<\s][^<]{{0,{max_think - 1}}}</think>"
    answer = rf"<answer>[^<\s][^<]{{0,{max_answer - 1}}}</answer>"
    return rf"{think}\n?(<tool>({get_caption}|{video_qa})</tool>|{answer})"


# --- the vision model requests ---------------------------------------------------------


def subtitles_at(lines: Sequence[SubtitleLine], time: float) -> list[str]:
    """Texts of the subtitle lines showing at ``time`` (start <= time <= end), in order."""
    return [line.text for line in lines if line.start <= time <= line.end and line.text]


def caption_system_prompt(level: int, num_frames: int, num_words: int) -> str:
    key = "caption_system_prompt_low" if level == LOW else "caption_system_prompt"
    return PROMPTS[key].format(num_frame=num_frames, num_words=num_words)


def caption_frame_text(time: float, subtitles: Sequence[str] = ()) -> str:
    if subtitles:
        return PROMPTS["caption_frame_label_with_subtitle"].format(
            time=time, subtitle=",".join(subtitles)
        )
    return PROMPTS["caption_frame_label"].format(time=time)


def _image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def caption_messages(
    *,
    level: int,
    frame_times: Sequence[float],
    image_urls: Sequence[str],
    frame_subtitles: Sequence[Sequence[str]] | None = None,
    num_words: int | None = None,
) -> list[Message]:
    """The captioner request for one node: system prompt, then per frame a label and image.

    ``frame_subtitles[i]`` are the subtitle texts showing at frame ``i`` (see
    ``subtitles_at``); ``num_words`` defaults to the paper's word limit for the level.
    """
    if level not in (1, 2, 3):
        raise InvalidInput(f"level must be 1, 2 or 3, got {level!r}")
    if len(frame_times) != len(image_urls) or not frame_times:
        raise InvalidInput("a caption request needs one image per frame time, at least one")
    if frame_subtitles is not None and len(frame_subtitles) != len(frame_times):
        raise InvalidInput("frame_subtitles must hold one entry per frame")
    words = TreeConfig().caption_words(level) if num_words is None else num_words
    parts: list[dict[str, Any]] = []
    for i, (time, url) in enumerate(zip(frame_times, image_urls, strict=True)):
        parts.append(_text(caption_frame_text(time, frame_subtitles[i] if frame_subtitles else ())))
        parts.append(_image(url))
    return [
        {"role": "system", "content": caption_system_prompt(level, len(frame_times), words)},
        {"role": "user", "content": parts},
    ]


def extract_caption(reply: str) -> str:
    """The caption inside ``<caption>…</caption>``, else the whole reply (stripped)."""
    caption = extract_tag(reply, "caption")
    return caption if caption is not None else reply.strip()


def video_qa_messages(
    *, query: str, frame_times: Sequence[float], image_urls: Sequence[str]
) -> list[Message]:
    """The video_qa request: the query, then per frame ``Video frame at {t} seconds:`` and image."""
    if len(frame_times) != len(image_urls) or not frame_times:
        raise InvalidInput("a video_qa request needs one image per frame time, at least one")
    parts: list[dict[str, Any]] = [_text(query)]
    for time, url in zip(frame_times, image_urls, strict=True):
        parts.append(_text(PROMPTS["video_qa_frame_label"].format(time=time)))
        parts.append(_image(url))
    return [
        {"role": "system", "content": PROMPTS["video_qa_system_prompt"]},
        {"role": "user", "content": parts},
    ]


def extract_video_qa_answer(reply: str) -> str:
    """The text inside ``<answer>…</answer>``, else the whole reply (stripped)."""
    answer = extract_tag(reply, "answer")
    return answer if answer is not None else reply.strip()
