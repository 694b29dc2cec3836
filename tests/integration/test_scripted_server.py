"""The scripted model server answers over real HTTP exactly as each test scripts it."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from PIL import Image

from tests.support.scripted_server import Reply, ScriptedServer

JPEG = "data:image/jpeg;base64,"


def _jpeg_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="JPEG")
    return JPEG + base64.b64encode(buffer.getvalue()).decode()


def _chat(server: ScriptedServer, model: str = "m", content: object = "hi",
          system: str | None = None, timeout: float = 5.0) -> httpx.Response:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    return httpx.post(f"{server.base_url}/chat/completions",
                      json={"model": model, "messages": messages}, timeout=timeout)


def _text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_starts_and_stops_within_a_second() -> None:
    began = time.monotonic()
    server = ScriptedServer().start()
    assert httpx.get(f"{server.url}/health", timeout=2).json() == {"status": "ok"}
    server.stop()
    assert time.monotonic() - began < 1.0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2)


def test_queued_replies_are_served_in_order_then_per_model(scripted_server: ScriptedServer) -> None:
    scripted_server.enqueue("first", "second")
    scripted_server.enqueue("for-b", model="b")
    assert _text(_chat(scripted_server, "b")) == "for-b"
    assert _text(_chat(scripted_server, "a")) == "first"
    assert _text(_chat(scripted_server, "b")) == "second"
    assert scripted_server.stats()["calls"] == {"a": 1, "b": 2}


def test_handler_sees_the_request_and_usage_is_reported(scripted_server: ScriptedServer) -> None:
    scripted_server.set_handler(lambda body: "echo " + body["messages"][-1]["content"])
    response = _chat(scripted_server, content="one two three")
    assert _text(response) == "echo one two three"
    usage = response.json()["usage"]
    assert usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert scripted_server.chat_requests()[0].messages[-1]["content"] == "one two three"


def test_failures_drops_and_delays(scripted_server: ScriptedServer) -> None:
    scripted_server.fail_next(2, 503)
    assert _chat(scripted_server).status_code == 503
    assert _chat(scripted_server).status_code == 503
    scripted_server.enqueue("ok", Reply.dropped(), Reply.slow("late", 0.3), Reply.error(429))
    assert _text(_chat(scripted_server)) == "ok"
    with pytest.raises(httpx.RemoteProtocolError):
        _chat(scripted_server)
    with pytest.raises(httpx.ReadTimeout):
        _chat(scripted_server, timeout=0.1)
    assert _chat(scripted_server).status_code == 429
    scripted_server.fail_always("bad")
    assert _chat(scripted_server, "bad").status_code == 500
    scripted_server.recover("bad")
    scripted_server.enqueue("back")
    assert _text(_chat(scripted_server, "bad")) == "back"
    assert scripted_server.stats()["failures"] == 3
    assert scripted_server.calls() == 8


def test_fixed_latency_delays_every_reply(scripted_server: ScriptedServer) -> None:
    scripted_server.latency_s = 0.2
    scripted_server.enqueue("x")
    began = time.monotonic()
    assert _text(_chat(scripted_server)) == "x"
    assert time.monotonic() - began >= 0.2


def test_down_for_a_while_then_back(scripted_server: ScriptedServer) -> None:
    scripted_server.down_for(0.3)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{scripted_server.url}/health", timeout=1)
    time.sleep(0.5)
    assert httpx.get(f"{scripted_server.url}/health", timeout=1).status_code == 200


def test_rejects_malformed_requests_like_a_real_server(scripted_server: ScriptedServer) -> None:
    bad_json = httpx.post(f"{scripted_server.base_url}/chat/completions", content=b"{nope",
                          headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert "not JSON" in bad_json.json()["error"]["message"]
    not_jpeg = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    assert _chat(scripted_server, content=not_jpeg).status_code == 400
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(8)).decode()
    for payload, why in [(_jpeg_uri()[len(JPEG):-1], "not valid base64"),
                         (_jpeg_uri()[len(JPEG):-8] + "AA$A====", "not valid base64"),
                         ("/9j/" + "A===", "not valid base64"),
                         (png, "does not hold a JPEG")]:
        image = [{"type": "image_url", "image_url": {"url": JPEG + payload}}]
        reply = _chat(scripted_server, content=image)
        assert reply.status_code == 400 and why in reply.json()["error"]["message"], payload
    assert httpx.get(f"{scripted_server.url}/nowhere").status_code == 404


def test_role_behaviours_follow_the_protocol(scripted_server: ScriptedServer) -> None:
    image = {"type": "image_url", "image_url": {"url": _jpeg_uri()}}
    caption = _text(_chat(
        scripted_server, "vl",
        system="\n    ### Task:\n        You are a video understanding expert.",
        content=[{"type": "text", "text": "Frame at 1.5s"}, image,
                 {"type": "text", "text": "3.0s. Subtitle: hello there."}, image],
    ))
    assert caption.startswith("<caption>") and "1.5s" in caption and "3.0s" in caption
    assert "hello there" in caption
    answer = _text(_chat(
        scripted_server, "vl", system="You are a video question-answering model.",
        content=[{"type": "text", "text": "what colour?"},
                 {"type": "text", "text": "Video frame at 4.0 seconds:"}, image],
    ))
    assert "<answer>" in answer and "what colour?" in answer and "4.0s" in answer
    assert scripted_server.stats()["roles"] == {"captioner": 1, "video_qa": 1}
    models = httpx.get(f"{scripted_server.base_url}/models").json()["data"]
    assert [m["id"] for m in models] == ["vl"]


def test_subprocess_server_counts_and_can_be_told_to_fail(scripted_server_process) -> None:
    base = scripted_server_process.base_url
    system = {"role": "system", "content": "You are a video question-answering model."}
    body = {"model": "qa", "messages": [system, {"role": "user", "content": "why?"}]}
    assert httpx.post(f"{base}/chat/completions", json=body).status_code == 200
    scripted_server_process.control("fail_always", model="qa")
    assert httpx.post(f"{base}/chat/completions", json=body).status_code == 500
    stats = scripted_server_process.stats()
    assert stats["calls"] == {"qa": 2} and stats["roles"] == {"video_qa": 2}
    assert stats["failures"] == 1
