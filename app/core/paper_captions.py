"""The ``paper`` caption preset's requests: the authors' offline caption script (the one
behind the paper's table and the policy's training data), not their online demo.

Differences from the demo protocol (``protocol.caption_messages``): the prompts of
``data/constant.py`` (``prompts_paper.json``), frame labels ``{t}s.`` or
``{t}s. Subtitle: {lines}.``, and the reply kept whole, ``<caption>`` tags included, which
is what the policy then reads (a reply without the tags is wrapped in them, as the script
does). Frame counts, word limits, image sides and ``max_tokens`` come with the preset's
settings (``app.settings``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from app.core.protocol import extract_tag
from app.core.tree import LOW
from app.errors import InvalidInput


def _load() -> dict[str, str]:
    text = resources.files("app.core").joinpath("prompts_paper.json").read_text("utf-8")
    return {k: str(v) for k, v in json.loads(text).items()}


PAPER_PROMPTS: Mapping[str, str] = _load()


def paper_caption_messages(*, level: int, frame_times: Sequence[float],
                           image_urls: Sequence[str], frame_subtitles: Sequence[Sequence[str]],
                           num_words: int) -> list[dict[str, Any]]:
    """System prompt (the low one for leaves, the other for high and medium nodes), then
    per frame its label and its image."""
    if len(frame_times) != len(image_urls) or not frame_times:
        raise InvalidInput("a caption request needs one image per frame time, at least one")
    if len(frame_subtitles) != len(frame_times):
        raise InvalidInput("frame_subtitles must hold one entry per frame")
    key = "caption_system_prompt_low" if level == LOW else "caption_system_prompt"
    system = PAPER_PROMPTS[key].format(num_frame=len(frame_times), num_words=num_words)
    parts: list[dict[str, Any]] = []
    for time, url, lines in zip(frame_times, image_urls, frame_subtitles, strict=True):
        label = (PAPER_PROMPTS["caption_frame_label_with_subtitle"].format(
            time=time, subtitle=",".join(lines)) if lines
            else PAPER_PROMPTS["caption_frame_label"].format(time=time))
        parts += [{"type": "text", "text": label},
                  {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "system", "content": system}, {"role": "user", "content": parts}]


def paper_caption_text(reply: str) -> str:
    """The caption as stored: the whole reply, wrapped in ``<caption>`` tags if it has none."""
    if extract_tag(reply, "caption") is not None:
        return reply
    return f"<caption> {reply} </caption>"
