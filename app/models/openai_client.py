"""An async client for one OpenAI-compatible chat endpoint (vLLM, or any such server).

Each model role (policy, captioner, video_qa) gets one client, built once at start-up and
shared: it holds the HTTP connection pool, caps concurrent requests, retries transient
failures with exponential backoff, and turns every failure into a ``ModelError`` that
names the role and the URL, so an operator knows which server to look at.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Literal

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from app.core.ports import Message, ModelUsage
from app.errors import InvalidInput, ModelError
from app.models.images import JpegDataURI
from app.settings import Settings

__all__ = ["ModelError", "ModelRole", "OpenAIChatClient"]

log = logging.getLogger(__name__)

ModelRole = Literal["policy", "captioner", "video_qa"]

_ENV_PREFIX: dict[str, str] = {
    "policy": "VIDNAV_POLICY", "captioner": "VIDNAV_CAPTIONER", "video_qa": "VIDNAV_VIDEOQA",
}


class _TransientStatus(Exception):
    """A 429 or 5xx answer, worth another attempt."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}: {_error_text(response)}")
        self.response = response


def _error_text(response: httpx.Response) -> str:
    """The server's own error message, short enough for a log line or a job's error."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return str(payload)[:300]


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TransientStatus | httpx.TimeoutException | httpx.NetworkError
                      | httpx.RemoteProtocolError)


_JSON_HEADERS = {"Content-Type": "application/json"}
_escape = json.encoder.encode_basestring


def encode_json_body(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, as httpx's ``json=`` would send it, except that the
    frames (``JpegDataURI``) are copied in without an escaping pass: they are most of a
    vision request's bytes and hold nothing to escape."""
    out: list[str] = []
    _encode_into(value, out)
    return "".join(out).encode("utf-8")


def _encode_into(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        if type(value) is JpegDataURI:
            out += ('"', value, '"')
        else:
            out.append(_escape(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            out += ("," if i else "", _escape(key), ":")
            _encode_into(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode_into(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value, allow_nan=False))


def normalize_base_url(base_url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both become ``http://host:8000/v1``;
    any other path is kept as given (a proxy may mount the API elsewhere)."""
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidInput(f"model base URL {base_url!r} is not a URL: {exc}",
                           code="invalid_model_url") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidInput(f"model base URL {base_url!r} must be http(s)://host[:port][/v1]",
                           code="invalid_model_url")
    text = str(url).rstrip("/")
    return text + "/v1" if url.path in ("", "/") else text


class OpenAIChatClient:
    """Chat completions against one endpoint and model, for one role."""

    def __init__(
        self,
        *,
        role: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        retries: int = 4,
        concurrency: int = 8,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if timeout_s <= 0 or retries < 0 or concurrency < 1 or backoff_s < 0:
            raise InvalidInput(
                f"{role} model client needs timeout_s > 0, retries >= 0, concurrency >= 1 "
                "and backoff_s >= 0", code="invalid_model_config",
            )
        if not model:
            raise InvalidInput(f"{role} model client needs a model name",
                               code="invalid_model_config")
        self.role = role
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sampling: dict[str, Any] = {}
        if temperature is not None:
            self.sampling["temperature"] = temperature
        if max_tokens is not None:
            self.sampling["max_tokens"] = max_tokens
        self.sampling.update(extra_body or {})
        self._url = f"{self.base_url}/chat/completions"
        self.concurrency = concurrency
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self._transport = transport
        # One TLS context for all connections: making one costs tens of milliseconds.
        self._tls = httpx.create_ssl_context()
        # Bounds requests in flight from this process; more would only queue at the server.
        self._slots = asyncio.Semaphore(concurrency)
        # One single-connection HTTP client per slot in use, lent to one request at a time.
        # httpcore walks every connection of a pool on each request and each reply (with a
        # socket poll for each idle one); with one connection per pool that walk stays one
        # step long instead of growing with the concurrency limit.
        self._idle: list[httpx.AsyncClient] = []
        self._opened: list[httpx.AsyncClient] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def _connection(self) -> httpx.AsyncClient:
        """An idle connection (the most recently used, so still warm), or a new one; the
        caller holds a slot, so there are never more than ``concurrency``."""
        if self._idle:
            return self._idle.pop()
        http = httpx.AsyncClient(
            headers=self._headers, timeout=self._timeout, transport=self._transport,
            verify=self._tls,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._opened.append(http)
        return http

    def _bind_loop(self) -> None:
        """Pooled connections and the semaphore belong to one event loop; a caller that runs
        each job under its own ``asyncio.run`` gets fresh ones instead of a crash."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            self._loop = loop
            self._idle, self._opened = [], []
            self._slots = asyncio.Semaphore(self.concurrency)

    @classmethod
    def for_role(cls, settings: Settings, role: ModelRole, **overrides: Any) -> OpenAIChatClient:
        """The client for a role as configured by ``VIDNAV_<ROLE>_*`` settings."""
        prefix = {"policy": "policy", "captioner": "captioner", "video_qa": "videoqa"}[role]
        base_url = getattr(settings, f"{prefix}_base_url")
        if not base_url:
            raise InvalidInput(f"{_ENV_PREFIX[role]}_BASE_URL is not set",
                               code="invalid_model_config")
        options: dict[str, Any] = {
            "role": role,
            "base_url": base_url,
            "model": getattr(settings, f"{prefix}_model"),
            "api_key": getattr(settings, f"{prefix}_api_key").get_secret_value(),
            "timeout_s": settings.model_timeout_s,
            "retries": settings.model_retries,
            "concurrency": getattr(settings, f"{prefix}_concurrency"),
        }
        if role == "policy":
            options["temperature"] = settings.policy_temperature
            options["max_tokens"] = settings.policy_max_tokens
        elif role == "captioner":
            options["max_tokens"] = settings.captioner_max_tokens
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:
        return f"OpenAIChatClient(role={self.role!r}, url={self._url!r}, model={self.model!r})"

    async def __aenter__(self) -> OpenAIChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (those left on a finished event loop are just dropped)."""
        opened, self._idle, self._opened = self._opened, [], []
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._loop = None
            return
        for http in opened:
            await http.aclose()

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff, stretched to a 429/503's ``Retry-After`` when it says so."""
        delay = float(min(self.max_backoff_s, self.backoff_s * 2 ** (state.attempt_number - 1)))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _TransientStatus):
            retry_after = exc.response.headers.get("retry-after", "")
            if retry_after.replace(".", "", 1).isdigit():
                delay = max(delay, min(float(retry_after), self.max_backoff_s))
        return delay

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s model at %s: attempt %d of %d failed (%s); retrying",
                    self.role, self._url, state.attempt_number, self.retries + 1,
                    _describe(exc))

    async def chat(self, messages: list[Message], **extra: Any) -> tuple[str, ModelUsage]:
        """Send one chat completion; return the reply text and what it cost.

        ``extra`` goes into the request body beside the client's sampling parameters
        (e.g. ``structured_outputs``). ``usage.seconds`` sums the time spent inside HTTP
        calls, excluding backoff sleeps and waiting for a concurrency slot.
        """
        self._bind_loop()
        body = encode_json_body(
            {"model": self.model, "messages": messages, **self.sampling, **extra})
        spent = 0.0
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1), wait=self._wait,
            retry=retry_if_exception(_is_transient), before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    async with self._slots:
                        http = self._connection()
                        began = time.perf_counter()
                        try:
                            response = await http.post(self._url, content=body,
                                                       headers=_JSON_HEADERS)
                        finally:
                            spent += time.perf_counter() - began
                            if not http.is_closed:  # aclose() may have run meanwhile
                                self._idle.append(http)
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _TransientStatus(response)
        except httpx.TimeoutException as exc:
            raise self._error(
                "model_timeout", f"did not answer within {self._timeout.read}s, {attempts} "
                f"attempt(s) ({_describe(exc)}); raise VIDNAV_MODEL_TIMEOUT_S if it is just "
                "slow", attempts) from None
        except (_TransientStatus, httpx.TransportError) as exc:
            raise self._error(
                "model_unavailable", f"is unavailable after {attempts} attempt(s): "
                f"{_describe(exc)}; check that the server is running and "
                f"{_ENV_PREFIX.get(self.role, 'the role')}_BASE_URL points at it", attempts,
            ) from None
        if response.status_code != 200:
            raise self._error(
                "model_rejected", f"rejected the request with HTTP {response.status_code}: "
                f"{_error_text(response)}", attempts, status=response.status_code)
        text, usage = self._read(response, attempts)
        return text, ModelUsage(seconds=spent, model=self.model, **usage)

    def _read(self, response: httpx.Response, attempts: int) -> tuple[str, dict[str, int | None]]:
        """The reply text and token counts of a chat completion body."""
        try:
            payload = response.json()
            message = payload["choices"][0]["message"]
            content = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise self._error(
                "model_bad_response", f"answered something that is not a chat completion: "
                f"{response.text[:200]!r}", attempts) from None
        # vLLM with a reasoning parser moves <think> text out of content; the protocol
        # needs it back where the policy wrote it.
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if not isinstance(content, str) and not reasoning:
            raise self._error("model_bad_response", "answered a chat completion without "
                              "text content", attempts)
        text = content if isinstance(content, str) else ""
        if isinstance(reasoning, str) and reasoning and "<think>" not in text:
            text = f"<think>{reasoning}</think>{text}"
        text = _storable(text)
        usage = payload.get("usage") if isinstance(payload, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return text, {
            "prompt_tokens": _int_or_none(usage.get("prompt_tokens")),
            "completion_tokens": _int_or_none(usage.get("completion_tokens")),
        }

    def _error(self, code: str, what: str, attempts: int, *, status: int | None = None
               ) -> ModelError:
        return ModelError(
            f"the {self.role} model {self.model!r} at {self._url} {what}",
            code=code,
            details={"role": self.role, "url": self._url, "model": self.model,
                     "attempts": attempts, "status": status},
        )


def _storable(text: str) -> str:
    """The reply without what no store can hold: NUL characters (Postgres text and JSON
    refuse them) and lone surrogates (JSON escapes that are not UTF-8; as '?'). A reply
    holding either once failed its job when the round was saved."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
