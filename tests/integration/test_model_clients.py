"""The OpenAI-compatible model clients over real HTTP against the scripted server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.ports import NavigationState, SubtitleLine
from app.core.protocol import reply_regex
from app.core.tree import TreeConfig
from app.errors import InvalidInput, ModelError
from app.models.base import NodeFrames
from app.models.images import InvalidImage, JpegDataURI, to_jpeg_data_uri
from app.models.openai_client import OpenAIChatClient, encode_json_body, normalize_base_url
from app.models.openai_vision import OpenAICaptioner, OpenAIFrameQA
from app.models.policy import LLMPolicy
from app.settings import Settings
from tests.support.scripted_server import Reply, ScriptedServer

PROMPTS = json.loads(
    (Path(__file__).resolve().parents[2] / "app" / "core" / "prompts.json").read_text("utf-8")
)
USER = [{"role": "user", "content": "hello there"}]


def _client(server: ScriptedServer, **options: object) -> OpenAIChatClient:
    settings: dict[str, object] = {"role": "captioner", "base_url": server.url, "model": "vl",
                                   "retries": 2, "backoff_s": 0.01, "timeout_s": 5.0}
    settings.update(options)
    return OpenAIChatClient(**settings)  # type: ignore[arg-type]


def _frames(level: int, times: list[float], size: tuple[int, int] = (720, 1280),
            subtitles: tuple[SubtitleLine, ...] = ()) -> NodeFrames:
    rng = np.random.default_rng(7)
    images = tuple(rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in times)
    node = (1, 2, 3)[:level]
    return NodeFrames(node=node, level=level, frame_indices=tuple(range(len(times))),
                      frame_times=tuple(times), images=images, span=(times[0], times[-1]),
                      subtitles=subtitles)


def _jpeg_size(url: str) -> tuple[int, int]:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(url[len(prefix):]))) as image:
        assert image.format == "JPEG"
        return image.size


# --- the chat client ---------------------------------------------------------------------


async def test_chat_returns_text_usage_and_sends_sampling(scripted_server: ScriptedServer) -> None:
    scripted_server.latency_s = 0.05
    scripted_server.enqueue(Reply(text="hi!", usage={"prompt_tokens": 11,
                                                     "completion_tokens": 2}))
    async with _client(scripted_server, api_key="sk-test", temperature=0.2, max_tokens=64,
                       extra_body={"top_k": 5}) as client:
        text, usage = await client.chat(USER, seed=3)
    assert text == "hi!"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.model) == (11, 2, "vl")
    assert 0.05 <= usage.seconds < 1.0
    (request,) = scripted_server.chat_requests()
    assert request.body == {"model": "vl", "messages": USER, "temperature": 0.2,
                            "max_tokens": 64, "top_k": 5, "seed": 3}
    assert request.headers["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("failure", [500, 503, 429, 0])  # 0: the connection is dropped
async def test_transient_failures_are_retried(scripted_server: ScriptedServer,
                                              failure: int) -> None:
    scripted_server.fail_next(2, failure)
    scripted_server.enqueue("finally")
    async with _client(scripted_server, retries=2) as client:
        text, _ = await client.chat(USER)
    assert text == "finally"
    assert scripted_server.calls() == 3


async def test_retries_exhausted_is_a_clear_unavailable_error(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.fail_always(status=502)
    async with _client(scripted_server, retries=2) as client:
        with pytest.raises(ModelError) as caught:
            await client.chat(USER)
    error = caught.value
    assert (error.code, error.kind) == ("model_unavailable", "unavailable")
    assert "captioner" in error.message and scripted_server.base_url in error.message
    assert "HTTP 502" in error.message and "VIDNAV_CAPTIONER_BASE_URL" in error.message
    assert error.details["attempts"] == 3
    assert scripted_server.calls() == 3


async def test_client_errors_are_not_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue(Reply.error(400, "maximum context length is 32768 tokens"))
    async with _client(scripted_server, retries=3) as client:
        with pytest.raises(ModelError) as caught:
            await client.chat(USER)
    assert caught.value.code == "model_rejected"
    assert "32768" in caught.value.message and caught.value.details["status"] == 400
    assert scripted_server.calls() == 1


async def test_timeouts_are_retried_then_reported(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue(Reply.slow("late", 1.5), "in time")
    async with _client(scripted_server, timeout_s=0.5, retries=1) as client:
        assert (await client.chat(USER))[0] == "in time"
        scripted_server.set_handler(lambda body: Reply.slow("late", 1.5))
        with pytest.raises(ModelError) as caught:
            await client.chat(USER)
    assert caught.value.code == "model_timeout"
    assert "0.5s" in caught.value.message and "VIDNAV_MODEL_TIMEOUT_S" in caught.value.message
    assert scripted_server.calls() == 4


async def test_server_down_then_back(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue("back again")
    scripted_server.down_for(0.3)
    async with _client(scripted_server, retries=6, backoff_s=0.05) as client:
        text, usage = await client.chat(USER)
    assert text == "back again"
    # Backoff sleeps are not model time.
    assert usage.seconds < 0.3


async def test_server_gone_is_model_unavailable(scripted_server: ScriptedServer) -> None:
    scripted_server.stop()
    async with _client(scripted_server, retries=1) as client:
        with pytest.raises(ModelError) as caught:
            await client.chat(USER)
    assert caught.value.code == "model_unavailable"
    assert "ConnectError" in caught.value.message
    assert f"{scripted_server.base_url}/chat/completions" in caught.value.message


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b'{"object": "chat.completion"}',
                                  b'{"choices": [{"message": {"content": null}}]}'])
async def test_malformed_replies_are_bad_responses(scripted_server: ScriptedServer,
                                                   body: bytes) -> None:
    scripted_server.enqueue(Reply.raw(body))
    async with _client(scripted_server) as client:
        with pytest.raises(ModelError) as caught:
            await client.chat(USER)
    assert caught.value.code == "model_bad_response"
    assert scripted_server.calls() == 1


async def test_reasoning_split_out_by_the_server_is_put_back(
    scripted_server: ScriptedServer,
) -> None:
    message = {"role": "assistant", "content": "<answer>B</answer>",
               "reasoning_content": "it is B"}
    scripted_server.enqueue(Reply.raw(json.dumps({"choices": [{"message": message}]})))
    async with _client(scripted_server) as client:
        text, usage = await client.chat(USER)
    assert text == "<think>it is B</think><answer>B</answer>"
    assert usage.prompt_tokens is None


async def test_concurrency_is_capped(scripted_server: ScriptedServer) -> None:
    in_flight = peak = 0
    lock = threading.Lock()

    def handler(body: dict) -> Reply:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        threading.Event().wait(0.1)
        with lock:
            in_flight -= 1
        return Reply(text="ok")

    scripted_server.set_handler(handler)
    async with _client(scripted_server, concurrency=2) as client:
        replies = await asyncio.gather(*(client.chat(USER) for _ in range(6)))
    assert [text for text, _ in replies] == ["ok"] * 6
    assert peak == 2


def test_one_client_serves_successive_event_loops(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue("first loop", "second loop")
    client = _client(scripted_server, concurrency=1)
    assert asyncio.run(client.chat(USER))[0] == "first loop"
    assert asyncio.run(client.chat(USER))[0] == "second loop"
    asyncio.run(client.aclose())


def test_request_bodies_are_the_json_of_what_was_asked() -> None:
    uri = to_jpeg_data_uri(np.zeros((4, 4, 3), dtype=np.uint8), 8)
    assert isinstance(uri, JpegDataURI)
    value = {"model": "vl", "n": 3, "t": 0.2, "ok": True, "none": None,
             "text": 'quote " backslash \\ tab \t newline \n bell \x07 é 漢 🎬',
             "messages": [{"content": [{"type": "image_url", "image_url": {"url": uri}}]}],
             "tuple": (1, "two")}
    body = encode_json_body(value)
    assert json.loads(body) == {**value, "tuple": [1, "two"]}
    assert body == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    with pytest.raises(ValueError):
        encode_json_body({"t": float("nan")})
    with pytest.raises(TypeError):
        encode_json_body({1: "key"})


def test_base_urls_are_normalised_and_checked() -> None:
    assert normalize_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert normalize_base_url("https://h/api/openai/v1") == "https://h/api/openai/v1"
    for bad in ("h:8000", "ftp://h/v1", ""):
        with pytest.raises(InvalidInput):
            normalize_base_url(bad)


async def test_clients_for_roles_come_from_settings() -> None:
    settings = Settings(policy_base_url="http://127.0.0.1:9/v1", policy_max_tokens=99,
                        policy_concurrency=3, model_retries=1)
    async with OpenAIChatClient.for_role(settings, "policy") as client:
        assert (client.model, client.retries, client.sampling) == (
            "LongVideo-R1-Qwen3", 1, {"max_tokens": 99})
    with pytest.raises(InvalidInput, match="VIDNAV_VIDEOQA_BASE_URL"):
        OpenAIChatClient.for_role(settings, "video_qa")


async def test_roles_from_settings(scripted_server: ScriptedServer) -> None:
    url = scripted_server.base_url
    settings = Settings(policy_base_url=url, captioner_base_url=url, videoqa_base_url=url,
                        policy_constrained=True, low_frames=8, videoqa_max_side=640)
    policy = LLMPolicy.from_settings(settings)
    captioner = OpenAICaptioner.from_settings(settings)
    frame_qa = OpenAIFrameQA.from_settings(settings)
    try:
        assert policy.constrained and policy.client.model == "LongVideo-R1-Qwen3"
        assert captioner.config.low_frames == 8
        default = OpenAICaptioner.from_settings(Settings(captioner_base_url=url))
        await default.client.aclose()
        assert captioner.config_version != default.config_version
        await frame_qa.answer(_frames(3, [1.0]), "what?")
        image = scripted_server.chat_requests()[0].messages[1]["content"][2]["image_url"]
        assert _jpeg_size(image["url"]) == (640, 360)
    finally:
        for role in (policy, captioner, frame_qa):
            await role.client.aclose()


# --- the policy ------------------------------------------------------------------------


async def test_constrained_policy_sends_the_reply_regex(scripted_server: ScriptedServer) -> None:
    reply = '<think>leaf 2 has it</think>\n<tool>video_qa((1,4,2), "who speaks?")</tool>'
    scripted_server.enqueue(reply, reply)
    state = NavigationState(question="q", options=(), width=4, duration=100.0)
    async with _client(scripted_server, role="policy", model="r1") as client:
        constrained = await LLMPolicy(client, constrained=True).reply(USER, state)
        free = await LLMPolicy(client).reply(USER, state)
    assert constrained.text == free.text == reply
    assert constrained.usage.completion_tokens == len(reply.split())
    first, second = scripted_server.chat_requests()
    regex = first.body["structured_outputs"]["regex"]
    assert regex == reply_regex(4)
    assert re.fullmatch(regex, reply)
    assert not re.fullmatch(regex, reply.replace("(1,4,2)", "(1,5,2)"))
    assert "structured_outputs" not in second.body


# --- the vision roles -------------------------------------------------------------------


async def test_captioner_request_matches_the_protocol(scripted_server: ScriptedServer) -> None:
    subtitles = (SubtitleLine(0.9, 2.0, "hello"), SubtitleLine(1.0, 1.5, "world"))
    frames = _frames(3, [0.5, 1.0, 2.5], subtitles=subtitles)
    async with _client(scripted_server) as client:
        output = await OpenAICaptioner(client).caption(frames)
    assert output.text == "This clip (video) runs from 0.5s to 2.5s; frames at 0.5s, 1.0s, " \
                          "2.5s. Someone says: hello,world."
    assert output.raw_reply == f"<caption>{output.text}</caption>"
    assert output.usage.completion_tokens is not None and output.usage.seconds > 0
    (request,) = scripted_server.chat_requests()
    system, user = request.messages
    assert system == {"role": "system", "content": PROMPTS["caption_system_prompt_low"]
                      .replace("{num_frame}", "3").replace("{num_words}", "200")}
    labels = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert labels == ["Frame at 0.5s", "1.0s. Subtitle: hello,world.", "Frame at 2.5s"]
    images = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    assert [p["type"] for p in user["content"]] == ["text", "image_url"] * 3
    assert {_jpeg_size(url) for url in images} == {(512, 288)}


async def test_high_captions_use_the_high_prompt_and_side(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue("no tags here")
    async with _client(scripted_server) as client:
        config = TreeConfig(high_caption_words=50)
        output = await OpenAICaptioner(client, config).caption(_frames(1, [0.0, 8.0]))
    assert output.text == "no tags here"
    system, user = scripted_server.chat_requests()[0].messages
    assert system["content"] == PROMPTS["caption_system_prompt"].replace(
        "{num_frame}", "2").replace("{num_words}", "50")
    assert _jpeg_size(user["content"][1]["image_url"]["url"]) == (256, 144)


async def test_frame_qa_request_matches_the_protocol(scripted_server: ScriptedServer) -> None:
    frames = _frames(3, [4.0, 4.5], size=(1080, 1920))
    async with _client(scripted_server, role="video_qa") as client:
        output = await OpenAIFrameQA(client).answer(frames, "what colour is the door?")
    assert output.text == "Between 4.0s to 4.5s: what colour is the door?"
    system, user = scripted_server.chat_requests()[0].messages
    assert system == {"role": "system", "content": PROMPTS["video_qa_system_prompt"]}
    texts = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert texts == ["what colour is the door?", "Video frame at 4.0 seconds:",
                     "Video frame at 4.5 seconds:"]
    assert _jpeg_size(user["content"][2]["image_url"]["url"]) == (1024, 576)


async def test_vision_roles_reject_bad_input_without_a_call(
    scripted_server: ScriptedServer,
) -> None:
    frames = _frames(3, [1.0, 2.0])
    broken = NodeFrames(node=(1, 1, 1), level=3, frame_indices=(0,), frame_times=(1.0, 2.0),
                        images=frames.images[:1], span=(1.0, 2.0))
    async with _client(scripted_server) as client:
        with pytest.raises(InvalidInput):
            await OpenAICaptioner(client).caption(broken)
        with pytest.raises(InvalidInput):
            await OpenAIFrameQA(client).answer(frames, "  ")
    assert scripted_server.calls() == 0


async def test_prepared_frames_send_what_caption_would_have_encoded(
    scripted_server: ScriptedServer,
) -> None:
    frames = _frames(3, [0.5, 1.0, 2.5])
    async with _client(scripted_server) as client:
        captioner = OpenAICaptioner(client)
        (prepared,) = await asyncio.to_thread(captioner.prepare_frames, [frames])
        await captioner.caption(frames)
        await captioner.caption(prepared)
    assert prepared.image_urls == tuple(to_jpeg_data_uri(i, 512) for i in frames.images)
    plain, ahead = scripted_server.chat_requests()
    assert plain.body == ahead.body


def test_prepare_frames_encodes_a_shared_frame_once_and_only_a_truly_shared_one() -> None:
    class Unused:
        model = "vl"

        async def chat(self, messages: list, **extra: object) -> tuple:
            raise AssertionError("not called")

    rng = np.random.default_rng(3)
    a, b, c = (rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(3))

    def node(ids: tuple[int, ...], level: int, indices: tuple[int, ...],
             images: tuple[np.ndarray, ...]) -> NodeFrames:
        times = tuple(float(i) for i in indices)
        return NodeFrames(node=ids, level=level, frame_indices=indices, frame_times=times,
                          images=images, span=(times[0], times[-1]))

    leaf = node((1, 1, 1), 3, (0, 0, 1), (a, a, b))
    parent = node((1, 1), 2, (0, 1), (a.copy(), b))  # equal pixels, another array
    other = node((1, 1, 2), 3, (1, 2), (c, c))  # frame 1 here is not the picture of frame 1
    prepared = OpenAICaptioner(Unused()).prepare_frames([leaf, parent, other])
    assert [p.node for p in prepared] == [(1, 1, 1), (1, 1), (1, 1, 2)]
    urls = [p.image_urls for p in prepared]
    assert urls[0][0] is urls[0][1] is urls[1][0]  # frame 0 was encoded once
    assert urls[0][2] is urls[1][1]
    assert urls[2][0] == to_jpeg_data_uri(c, 512) != urls[0][2]
    mismatched = NodeFrames(node=(1, 1, 3), level=3, frame_indices=(4,), frame_times=(4.0, 5.0),
                            images=(a, b), span=(4.0, 5.0))
    with pytest.raises(InvalidInput):
        OpenAICaptioner(Unused()).prepare_frames([mismatched])


def test_captioner_config_version_tracks_what_captions_depend_on() -> None:
    class Named:
        def __init__(self, model: str) -> None:
            self.model = model

        async def chat(self, messages: list, **extra: object) -> tuple:
            raise AssertionError("not called")

    base = OpenAICaptioner(Named("a")).config_version
    assert base == OpenAICaptioner(Named("a")).config_version
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    changed = {
        OpenAICaptioner(Named("b")).config_version,
        OpenAICaptioner(Named("a"), TreeConfig(low_frames=8)).config_version,
        OpenAICaptioner(Named("a"), TreeConfig(low_caption_words=100)).config_version,
    }
    assert base not in changed and len(changed) == 3


# --- frames as data URIs ----------------------------------------------------------------


def test_jpeg_data_uris_downscale_but_never_upscale() -> None:
    wide = np.zeros((720, 1280, 3), dtype=np.uint8)
    assert _jpeg_size(to_jpeg_data_uri(wide, 512)) == (512, 288)
    small = np.full((50, 100, 3), 200, dtype=np.uint8)
    assert _jpeg_size(to_jpeg_data_uri(small, 512)) == (100, 50)
    grey = np.zeros((300, 30), dtype=np.uint8)
    assert _jpeg_size(to_jpeg_data_uri(grey, 100)) == (10, 100)


@pytest.mark.parametrize("image, side", [
    (np.zeros((4, 4, 3), dtype=np.float32), 64),
    (np.zeros((4, 4, 4), dtype=np.uint8), 64),
    (np.zeros((0, 4, 3), dtype=np.uint8), 64),
    ([[0, 0]], 64),
    (np.zeros((4, 4, 3), dtype=np.uint8), 0),
])
def test_bad_frames_are_typed_errors(image: object, side: int) -> None:
    with pytest.raises(InvalidImage):
        to_jpeg_data_uri(image, side)  # type: ignore[arg-type]
