"""The HTTP deployment: a running ``vidnav serve`` (or the full stack) through its public
routes, as any client would: upload the video (``POST /v1/videos``), attach its subtitles
(``POST /v1/videos/{id}/subtitles``), wait until it is ready, ask
(``POST /v1/videos/{id}/questions``), poll the job (``GET /v1/jobs/{id}``) and read its
rounds (``GET /v1/jobs/{id}/trace``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from app.core.trace import TraceRound
from app.errors import VidnavError
from app.services.evaluation.items import BenchItem
from app.services.evaluation.records import Answered

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class HttpDeployment:
    def __init__(self, base_url: str, api_key: str | None = None, *, poll_s: float = 0.5,
                 timeout_s: float = 3600.0, client: httpx.Client | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = client or httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                             timeout=120.0)
        self.poll_s, self.timeout_s = poll_s, timeout_s
        self._lock = threading.Lock()
        self._videos: dict[Path, tuple[str, float]] = {}

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise VidnavError(f"{method} {url}: {exc}", code="server_unreachable",
                              kind="unavailable") from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", response.text[:200]
            raise VidnavError(f"{method} {url}: {response.status_code} {message}", code=code,
                              kind="invalid" if response.status_code < 500 else "unavailable")
        body: dict[str, Any] | list[Any] = response.json()
        return body if isinstance(body, dict) else {"items": body}

    def _wait(self, url: str, done: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            body = self._call("GET", url)
            if done(body):
                return body
            if time.monotonic() > deadline:
                raise VidnavError(f"{what} did not finish in {self.timeout_s:.0f} s",
                                  code="stalled", kind="unavailable")
            time.sleep(self.poll_s)

    def _video(self, item: BenchItem) -> tuple[str, float]:
        with self._lock:
            if item.video in self._videos:
                return self._videos[item.video][0], 0.0
            if not item.video.is_file():
                raise VidnavError(f"{item.video} is not a readable file",
                                  code="video_not_found", kind="invalid")
            started = time.perf_counter()
            with item.video.open("rb") as fh:
                video = self._call("POST", "/v1/videos",
                                   files={"file": (item.video.name, fh, "video/mp4")})
            vid = str(video["id"])
            if item.subtitles is not None and not self._call(
                    "GET", f"/v1/videos/{vid}/subtitles")["items"]:
                with item.subtitles.open("rb") as fh:
                    self._call("POST", f"/v1/videos/{vid}/subtitles",
                               files={"file": (item.subtitles.name, fh, "application/x-subrip")})
            video = self._wait(f"/v1/videos/{vid}",
                               lambda v: v["status"] in ("ready", "failed"), "preparing the video")
            if video["status"] == "failed":
                error = video.get("error") or {}
                raise VidnavError(f"the video could not be prepared: {error.get('message')}",
                                  code=str(error.get("code") or "video_failed"), kind="invalid")
            spent = time.perf_counter() - started
            self._videos[item.video] = (vid, spent)
            return vid, spent

    def answer(self, item: BenchItem, max_rounds: int | None) -> Answered:
        vid, prepare_s = self._video(item)
        body: dict[str, Any] = {"question": item.question}
        if item.options:
            body["options"] = list(item.options)
        if max_rounds:
            body["budgets"] = {"max_rounds": max_rounds}
        started = time.perf_counter()
        job = self._call("POST", f"/v1/videos/{vid}/questions", json=body)
        job = self._wait(f"/v1/jobs/{job['id']}", lambda j: j["status"] in FINISHED, "the job")
        wall_s = time.perf_counter() - started
        trace = self._call("GET", f"/v1/jobs/{job['id']}/trace")
        rounds = [TraceRound.from_dict(step["round"]) for step in trace["rounds"]]
        error = job.get("error") or None
        return Answered(answer=job.get("answer"), status=str(job["status"]), rounds=rounds,
                        summary=dict(job.get("summary") or {}), wall_s=wall_s,
                        prepare_s=prepare_s,
                        error=f"[{error['code']}] {error['message']}" if error else None)
