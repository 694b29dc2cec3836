"""The ``paper`` caption preset: the request the authors' offline caption script sends,
pinned against the recording scripted server; the setting brings its numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.ports import SubtitleLine
from app.core.tree import TreeConfig
from app.models.openai_vision import OpenAICaptioner, tree_config
from app.settings import Settings
from tests.integration.test_model_clients import _client, _frames, _jpeg_size
from tests.support.scripted_server import ScriptedServer

PAPER = json.loads((Path(__file__).resolve().parents[2] / "app" / "core" /
                    "prompts_paper.json").read_text("utf-8"))


def test_the_paper_preset_brings_the_scripts_numbers() -> None:
    settings = Settings(caption_preset="paper")
    assert (settings.high_frames, settings.medium_frames, settings.low_frames) == (128, 64, 32)
    assert (settings.high_caption_words, settings.low_caption_words) == (400, 200)
    assert settings.captioner_max_tokens == 2048
    assert Settings(caption_preset="paper", low_frames=8).low_frames == 8  # explicit wins
    demo = Settings()
    assert (demo.caption_preset, demo.high_frames, demo.high_caption_words) == ("demo", 64, 300)
    assert tree_config(settings).caption_words(2) == 400  # medium nodes: the high prompt


async def test_paper_low_request_and_the_reply_kept_whole(scripted_server: ScriptedServer
                                                          ) -> None:
    subtitles = (SubtitleLine(0.9, 2.0, "hello"), SubtitleLine(1.0, 1.5, "world"))
    frames = _frames(3, [0.5, 1.0, 2.5], subtitles=subtitles)
    config = tree_config(Settings(caption_preset="paper"))
    async with _client(scripted_server, max_tokens=2048) as client:
        captioner = OpenAICaptioner(client, config, preset="paper")
        output = await captioner.caption(frames)
    assert output.text == output.raw_reply  # tags and all: what the policy reads
    assert output.text.startswith("<caption>") and output.text.endswith("</caption>")
    (request,) = scripted_server.chat_requests()
    assert request.body["max_tokens"] == 2048
    system, user = request.messages
    assert system == {"role": "system", "content": PAPER["caption_system_prompt_low"]
                      .replace("{num_frame}", "3").replace("{num_words}", "200")}
    labels = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert labels == ["0.5s.", "1.0s. Subtitle: hello,world.", "2.5s."]
    assert [p["type"] for p in user["content"]] == ["text", "image_url"] * 3
    images = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    assert {_jpeg_size(url) for url in images} == {(512, 288)}  # 512 / sqrt(1)


@pytest.mark.parametrize(("level", "side"), [(1, (256, 144)), (2, (362, 204))])
async def test_paper_high_and_medium_requests(scripted_server: ScriptedServer, level: int,
                                             side: tuple[int, int]) -> None:
    scripted_server.enqueue("no tags here")
    config = tree_config(Settings(caption_preset="paper"))
    async with _client(scripted_server) as client:
        output = await OpenAICaptioner(client, config, preset="paper").caption(
            _frames(level, [0.0, 8.0]))
    assert output.text == "<caption> no tags here </caption>"  # wrapped, as the script does
    system, user = scripted_server.chat_requests()[0].messages
    prompt = PAPER["caption_system_prompt"]
    assert "{num_words} words" in prompt and "{num_word}" not in prompt.replace(
        "{num_words}", "")
    assert system["content"] == prompt.replace("{num_frame}", "2").replace("{num_words}", "400")
    assert system["content"].rstrip().endswith("Your output should be controlled within 400 "
                                               "words.")
    assert _jpeg_size(user["content"][1]["image_url"]["url"]) == side


async def test_presets_key_their_captions_apart(scripted_server: ScriptedServer) -> None:
    async with _client(scripted_server) as client:
        demo = OpenAICaptioner(client, TreeConfig())
        paper = OpenAICaptioner(client, TreeConfig(), preset="paper")
        assert demo.config_version != paper.config_version
