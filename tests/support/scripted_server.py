"""A real OpenAI-compatible chat server on loopback whose replies each test scripts.

Tests of the model clients, the navigation loop, the workers and the API talk to it over
real HTTP instead of mocking a client. Only the standard library is used so that it
starts in well under a second, in a thread (``ScriptedServer``) or as a process
(``python -m tests.support.scripted_server --port 0``).

What a chat request gets, first match wins: a pending ``fail_next`` failure, an
always-failing model, the model's queued replies, the queue for any model, the model's
handler, the handler for any model, then the deterministic role behaviour (captioner,
video_qa, policy), recognised from the system prompt of the LongVideo-R1 protocol.

Besides ``/v1/chat/completions``, ``/v1/models`` and ``/health``: ``GET /_stats`` (call
counts per model and role) and ``POST /_control`` with ``{"action": ...}`` one of
``fail_always`` / ``fail_next`` (``model``, ``status``, ``n``), ``recover``, ``enqueue``
(``model``, ``replies``), ``latency`` (``ms``), ``down_for`` (``seconds``), ``reset``, so a
test can script a server that runs in another process.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import contextlib
import json
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POLICY = "policy"
CAPTIONER = "captioner"
VIDEO_QA = "video_qa"
ROLES = (POLICY, CAPTIONER, VIDEO_QA)

ANY_MODEL: str | None = None


@dataclass(frozen=True)
class Reply:
    """One scripted outcome of a chat request."""

    text: str | None = None
    status: int = 200
    delay_s: float = 0.0  # added to the server's fixed latency
    drop: bool = False  # close the connection without answering
    raw_body: bytes | None = None  # sent verbatim instead of a chat completion
    usage: dict[str, int] | None = None  # overrides the computed token counts
    message: str = "scripted failure"  # error message when status is not 200

    @classmethod
    def error(cls, status: int, message: str = "scripted failure") -> Reply:
        return cls(status=status, message=message)

    @classmethod
    def dropped(cls) -> Reply:
        return cls(drop=True)

    @classmethod
    def slow(cls, text: str, delay_s: float) -> Reply:
        return cls(text=text, delay_s=delay_s)

    @classmethod
    def raw(cls, body: bytes | str, status: int = 200) -> Reply:
        return cls(raw_body=body.encode() if isinstance(body, str) else body, status=status)


Handler = Callable[[dict[str, Any]], "str | Reply"]


@dataclass(frozen=True)
class RecordedRequest:
    """A request body the server received, in arrival order."""

    path: str
    body: Any
    model: str | None
    role: str | None
    at: float  # time.monotonic() on arrival
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


# --- what a request carries --------------------------------------------------------------

_FRAME_LABEL = re.compile(r"^Frame at (\d+(?:\.\d+)?)s$")
_FRAME_LABEL_SUB = re.compile(r"^(\d+(?:\.\d+)?)s\. Subtitle: (.*)\.$", re.S)
_QA_FRAME_LABEL = re.compile(r"^Video frame at (\d+(?:\.\d+)?) seconds:$")
_WIDTH = re.compile(r"divided into (\d+) major segments")
_MEDIUM_OBS = re.compile(r"^Medium-level Caption from tool get_caption\(\((\d+),(\d+)\)\)")
_LOW_OBS = re.compile(r"^Low-level Caption from tool get_caption\(\((\d+),(\d+),(\d+)\)\)")
_HIGH_LINE = re.compile(r"^High-level Caption (\d+) from [^:]*:(.*)$", re.S)
_OPTION = re.compile(r"^([A-Z])\. (.*)$")
_WORD = re.compile(r"[a-z0-9]+")
_LAST_ROUND = "This is the last round. You must provide the final answer in this round."


def _parts(content: Any) -> list[dict[str, Any]]:
    """A message's content as a list of parts (a plain string is one text part)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [p for p in content if isinstance(p, dict)]
    return []


def _texts(content: Any) -> list[str]:
    return [str(p.get("text", "")) for p in _parts(content) if p.get("type") == "text"]


def _image_urls(content: Any) -> list[str]:
    urls = []
    for part in _parts(content):
        if part.get("type") == "image_url":
            image = part.get("image_url")
            urls.append(str(image.get("url", "")) if isinstance(image, dict) else "")
    return urls


def detect_role(body: dict[str, Any], roles_by_model: dict[str, str]) -> str | None:
    """The protocol role of a chat request: from its system prompt, else its model name."""
    for message in body.get("messages", []):
        if isinstance(message, dict) and message.get("role") == "system":
            system = " ".join(_texts(message.get("content")))
            if "video question-answering model" in system:
                return VIDEO_QA
            if "video understanding expert" in system:
                return CAPTIONER
            if "reasoning assistant designed to answer questions about a long video" in system:
                return POLICY
    model = body.get("model")
    return roles_by_model.get(model) if isinstance(model, str) else None


def _validate_chat(body: Any) -> str | None:
    """Why vLLM would reject this request body, or None when it is well-formed."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "'model' must be a string"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system", "user", "assistant"
        ):
            return f"messages[{i}] needs a role of system, user or assistant"
        content = message.get("content")
        if not isinstance(content, str | list):
            return f"messages[{i}].content must be a string or a list of parts"
        for url in _image_urls(content):
            problem = _check_data_uri(url)
            if problem:
                return f"messages[{i}]: {problem}"
    return None


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _check_data_uri(url: str) -> str | None:
    """Strict base64 (alphabet, padding, length) holding a JPEG. Only the first bytes are
    decoded: decoding whole frames would cost this process, which shares the machine with
    the service under test, more than checking them proves (the bytes are not looked at)."""
    prefix = "data:image/jpeg;base64,"
    if not url.startswith(prefix):
        return "image_url must be a data:image/jpeg;base64 URI"
    payload = url[len(prefix):]
    if len(payload) % 4 or not _BASE64.fullmatch(payload):
        return "image_url is not valid base64"
    try:
        head = base64.b64decode(payload[:4], validate=True)
    except (binascii.Error, ValueError):
        return "image_url is not valid base64"
    if not head.startswith(b"\xff\xd8"):
        return "image_url does not hold a JPEG"
    return None


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


# --- the deterministic role behaviours --------------------------------------------------


def captioner_reply(body: dict[str, Any]) -> str:
    """A caption naming every frame time it was shown (and the subtitles it was given)."""
    times: list[str] = []
    subtitles: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        for text in _texts(message.get("content")):
            if m := _FRAME_LABEL.match(text):
                times.append(m.group(1))
            elif m := _FRAME_LABEL_SUB.match(text):
                times.append(m.group(1))
                subtitles.append(m.group(2))
    if not times:
        return "<caption>This clip (video) has no frames.</caption>"
    listed = ", ".join(f"{t}s" for t in times)
    caption = f"This clip (video) runs from {times[0]}s to {times[-1]}s; frames at {listed}."
    if subtitles:
        caption += " Someone says: " + " / ".join(dict.fromkeys(subtitles)) + "."
    return f"<caption>{caption}</caption>"


def video_qa_reply(body: dict[str, Any]) -> str:
    """An answer that repeats the query and the span of frames it was shown."""
    query = ""
    times: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") != "user":
            continue
        for text in _texts(message.get("content")):
            if m := _QA_FRAME_LABEL.match(text):
                times.append(m.group(1))
            elif not query:
                query = text
    span = f"{times[0]}s to {times[-1]}s" if times else "no frames"
    return (
        f"<reasoning>I looked at {len(times)} frames from {span}.</reasoning>"
        f"<answer>Between {span}: {query}</answer>"
    )


def policy_reply(body: dict[str, Any]) -> str:
    """A navigation that reads the conversation: best high node, its first medium node,
    that node's first leaf, a video_qa on it, then an answer (a letter for options)."""
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    system = " ".join(t for m in messages if m.get("role") == "system" for t in _texts(
        m.get("content")))
    width_match = _WIDTH.search(system)
    width = int(width_match.group(1)) if width_match else 1
    user_texts = [t for m in messages if m.get("role") == "user" for t in _texts(m.get("content"))]
    question = user_texts[0] if user_texts else ""
    highs: dict[int, str] = {}
    medium: tuple[int, int] | None = None
    low: tuple[int, int, int] | None = None
    information: list[str] = []
    seen_text: list[str] = []
    last_round = False
    for text in user_texts[1:]:
        if m := _HIGH_LINE.match(text):
            highs[int(m.group(1))] = m.group(2)
        elif m := _MEDIUM_OBS.match(text):
            medium = (int(m.group(1)), int(m.group(2)))
        elif m := _LOW_OBS.match(text):
            low = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif text.startswith("<information>"):
            information.append(text.removeprefix("<information>").removesuffix("</information>"))
        elif text == _LAST_ROUND:
            last_round = True
        seen_text.append(text)

    if last_round or information:
        answer = _pick_answer(question, seen_text)
        return f"<think>I have seen enough.</think>\n<answer>{answer}</answer>"
    if low is not None:
        h, m, leaf = low
        return (
            f"<think>Leaf ({h},{m},{leaf}) may show it; I will look at the frames.</think>\n"
            f'<tool>video_qa(({h},{m},{leaf}), "What happens in this clip?")</tool>'
        )
    if medium is not None:
        h, m = medium
        return f"<think>Medium ({h},{m}) is relevant; I need its first leaf.</think>\n" \
               f"<tool>get_caption(({h},{m},1))</tool>"
    q_words = _words(question)
    best = max(range(1, width + 1), key=lambda i: (len(q_words & _words(highs.get(i, ""))), -i))
    return f"<think>Segment {best} looks relevant; I need finer captions.</think>\n" \
           f"<tool>get_caption(({best},1))</tool>"


def _pick_answer(question: str, seen_text: Iterable[str]) -> str:
    options = [m for line in question.splitlines() if (m := _OPTION.match(line.strip()))]
    evidence = _words(" ".join(seen_text))
    if options:
        best = max(options, key=lambda m: (len(_words(m.group(2)) & evidence), -ord(m.group(1))))
        return best.group(1)
    return "I could not find it." if not evidence else "The clip shows what was asked."


_ROLE_BEHAVIOURS: dict[str, Callable[[dict[str, Any]], str]] = {
    POLICY: policy_reply,
    CAPTIONER: captioner_reply,
    VIDEO_QA: video_qa_reply,
}


# --- the server ----------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A client opening its whole pool at once (16+ connections) must not overflow the
    # listen backlog (5 by default): a dropped SYN is retried only after a second.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: ScriptedServer) -> None:
        self.owner = owner
        super().__init__(address, _RequestHandler)


class ScriptedServer:
    """An OpenAI-compatible server on loopback whose chat replies a test scripts.

    Thread-safe: the test's event loop scripts it while handler threads serve requests.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, latency_s: float = 0.0,
        roles_by_model: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.latency_s = latency_s
        self.roles_by_model = dict(roles_by_model or {})
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._resume_timer: threading.Timer | None = None
        self.reset()

    # lifecycle ------------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind (a free port unless one was given) and serve in a daemon thread."""
        self._stopping.clear()
        self._listen()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection; safe to call twice."""
        self._stopping.set()
        if self._resume_timer is not None:
            self._resume_timer.cancel()
        self._close_listener()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pause(self) -> None:
        """Go down: new connections are refused and open ones are cut until ``resume``."""
        self._close_listener()

    def resume(self) -> None:
        """Come back on the same port."""
        if self._httpd is None and not self._stopping.is_set():
            self._listen()

    def down_for(self, seconds: float) -> None:
        """Go down now and come back by itself after ``seconds``."""
        self.pause()
        self._resume_timer = threading.Timer(seconds, self.resume)
        self._resume_timer.daemon = True
        self._resume_timer.start()

    def _listen(self) -> None:
        httpd = _HTTPServer((self.host, self.port), self)
        self.port = httpd.server_address[1]
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
            name=f"scripted-server-{self.port}", daemon=True,
        )
        self._httpd, self._thread = httpd, thread
        thread.start()

    def _close_listener(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=1.0)

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (with ``/v1``), as a client is configured with."""
        return f"{self.url}/v1"

    # scripting ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget scripts, failures, handlers and recorded requests."""
        with self._lock:
            self._queues: dict[str | None, collections.deque[Any]] = collections.defaultdict(
                collections.deque)
            self._handlers: dict[str | None, Handler] = {}
            self._fail_next: dict[str | None, list[Any]] = {}
            self._fail_always: dict[str | None, int] = {}
            self._requests: list[RecordedRequest] = []
            self._failures = 0

    def enqueue(self, *items: Any, model: str | None = ANY_MODEL) -> None:
        """Queue replies (text, ``Reply`` or ``fn(request_json) -> text | Reply``), used once
        each in order by requests for ``model`` (any model when None)."""
        with self._lock:
            self._queues[model].extend(items)

    def set_handler(self, handler: Handler | None, *, model: str | None = ANY_MODEL) -> None:
        """Answer every unqueued request for ``model`` with ``handler(request_json)``."""
        with self._lock:
            if handler is None:
                self._handlers.pop(model, None)
            else:
                self._handlers[model] = handler

    def fail_next(self, n: int, status: int = 500, *, model: str | None = ANY_MODEL) -> None:
        """Fail the next ``n`` chat requests for ``model`` with ``status`` (0: drop them)."""
        with self._lock:
            self._fail_next[model] = [n, status]

    def fail_always(self, model: str | None = ANY_MODEL, status: int = 500) -> None:
        """Fail every chat request for ``model`` with ``status`` until ``recover``."""
        with self._lock:
            self._fail_always[model] = status

    def recover(self, model: str | None = ANY_MODEL) -> None:
        with self._lock:
            self._fail_always.pop(model, None)
            self._fail_next.pop(model, None)

    # what was received ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (chat and others), in arrival order."""
        with self._lock:
            return list(self._requests)

    def chat_requests(
        self, model: str | None = ANY_MODEL, *, role: str | None = None
    ) -> list[RecordedRequest]:
        """The chat requests received, optionally only those for a model or a role."""
        return [
            r for r in self.requests
            if r.path == "/v1/chat/completions"
            and (model is None or r.model == model)
            and (role is None or r.role == role)
        ]

    def calls(self, model: str | None = ANY_MODEL, *, role: str | None = None) -> int:
        return len(self.chat_requests(model, role=role))

    def stats(self) -> dict[str, Any]:
        """Call counts per model and per role, as ``/_stats`` reports them."""
        chats = self.chat_requests()
        with self._lock:
            failures = self._failures
        return {
            "requests": len(chats),
            "failures": failures,
            "calls": dict(collections.Counter(r.model or "" for r in chats)),
            "roles": dict(collections.Counter(r.role or "unknown" for r in chats)),
        }

    # serving ----------------------------------------------------------------------------

    def _record(self, path: str, body: Any, headers: dict[str, str]) -> RecordedRequest:
        model = body.get("model") if isinstance(body, dict) else None
        role = detect_role(body, self.roles_by_model) if isinstance(body, dict) else None
        record = RecordedRequest(
            path=path, body=body, model=model if isinstance(model, str) else None, role=role,
            at=time.monotonic(), headers=headers,
        )
        with self._lock:
            self._requests.append(record)
        return record

    def _decide(self, record: RecordedRequest) -> Reply:
        """What to answer a recorded chat request with (the order is in the module doc)."""
        model = record.model
        with self._lock:
            for key in (model, ANY_MODEL):
                pending = self._fail_next.get(key)
                if pending and pending[0] > 0:
                    pending[0] -= 1
                    self._failures += 1
                    status = pending[1]
                    return Reply.dropped() if status == 0 else Reply.error(status)
            for key in (model, ANY_MODEL):
                if key in self._fail_always:
                    self._failures += 1
                    return Reply.error(self._fail_always[key], f"model {model} always fails")
            item: Any = None
            for key in (model, ANY_MODEL):
                queue = self._queues.get(key)
                if queue:
                    item = queue.popleft()
                    break
            if item is None:
                item = self._handlers.get(model) or self._handlers.get(ANY_MODEL)
        if item is None:
            behaviour = _ROLE_BEHAVIOURS.get(record.role or "")
            if behaviour is None:
                return Reply.error(400, f"no scripted reply for model {model!r}")
            item = behaviour
        if callable(item):
            try:
                item = item(record.body)
            except Exception as exc:  # a broken script must show up as an HTTP error
                return Reply.error(500, f"scripted handler raised {exc!r}")
        return Reply(text=item) if isinstance(item, str) else item

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _control(self, command: dict[str, Any]) -> dict[str, Any]:
        """Script a server running in another process (``POST /_control``)."""
        action = command.get("action")
        model = command.get("model")
        if action == "fail_always":
            self.fail_always(model, int(command.get("status", 500)))
        elif action == "fail_next":
            self.fail_next(int(command.get("n", 1)), int(command.get("status", 500)), model=model)
        elif action == "recover":
            self.recover(model)
        elif action == "enqueue":
            self.enqueue(*[str(t) for t in command.get("replies", [])], model=model)
        elif action == "latency":
            self.latency_s = float(command.get("ms", 0)) / 1000.0
        elif action == "reset":
            self.reset()
        elif action == "down_for":
            # Answer first; going down closes this very connection.
            threading.Timer(0.05, self.down_for, args=(float(command["seconds"]),)).start()
        else:
            raise ValueError(f"unknown action {action!r}")
        return {"ok": True}


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    """Deterministic token counts: words of text plus a flat cost per image."""
    prompt = 0
    for message in body.get("messages", []):
        content = message.get("content")
        prompt += sum(len(t.split()) for t in _texts(content)) + 64 * len(_image_urls(content))
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK
    # would add ~40 ms to every reply.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.owner._lock:
            self.server.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.owner._lock:
            self.server.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send_json(self, status: int, payload: Any) -> None:
        self._send_bytes(status, json.dumps(payload).encode())

    def _send_bytes(self, status: int, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client gave up (its timeout) before the reply was ready.
            self.close_connection = True

    def _error(self, status: int, message: str) -> None:
        kind = "BadRequestError" if status < 500 else "InternalServerError"
        self._send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _read_json(self) -> tuple[Any, str | None]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null"), None
        except (ValueError, UnicodeDecodeError) as exc:
            return None, f"request body is not JSON: {exc}"

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        owner = self.server.owner
        if self.path == "/health":
            self._send_json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            models = sorted({r.model for r in owner.chat_requests() if r.model}
                            | set(owner.roles_by_model))
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "vidnav-tests"} for m in models]})
        elif self.path == "/_stats":
            self._send_json(200, owner.stats())
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        owner = self.server.owner
        body, problem = self._read_json()
        if self.path == "/_control":
            try:
                self._send_json(200, owner._control(body if isinstance(body, dict) else {}))
            except (KeyError, TypeError, ValueError) as exc:
                self._error(400, str(exc))
            return
        if self.path != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        record = owner._record(self.path, body, dict(self.headers.items()))
        problem = problem or _validate_chat(body)
        if problem:
            self._error(400, problem)
            return
        reply = owner._decide(record)
        owner._sleep(owner.latency_s + reply.delay_s)
        if reply.drop or owner._stopping.is_set():
            self.close_connection = True
            return
        if reply.raw_body is not None:
            self._send_bytes(reply.status, reply.raw_body)
        elif reply.status != 200:
            self._error(reply.status, reply.message)
        else:
            text = reply.text or ""
            self._send_json(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": record.model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": reply.usage or _usage(body, text),
            })


def main(argv: list[str] | None = None) -> None:
    """Serve the deterministic role behaviours until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--policy-model", action="append", default=[])
    parser.add_argument("--captioner-model", action="append", default=[])
    parser.add_argument("--videoqa-model", action="append", default=[])
    parser.add_argument("--fail-model", action="append", default=[],
                        help="a model whose every request fails with HTTP 500")
    args = parser.parse_args(argv)
    roles = {m: POLICY for m in args.policy_model}
    roles.update({m: CAPTIONER for m in args.captioner_model})
    roles.update({m: VIDEO_QA for m in args.videoqa_model})
    server = ScriptedServer(args.host, args.port, latency_s=args.latency_ms / 1000.0,
                            roles_by_model=roles)
    for model in args.fail_model:
        server.fail_always(model)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start()
    print(f"scripted-server listening on {server.url}", flush=True)
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
