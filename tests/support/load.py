"""The load scenario shared by the CI test (reduced numbers) and ``bench/load.py`` (full):
many questions asked at once through the API over several videos, then many concurrent
pollers of job status against several API processes.

Clients are asyncio ``httpx``; the pollers run in a few spawned processes so one client
process's event loop is not the bottleneck being measured.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.throwaway import free_port


class ApiServers:
    """``uvicorn app.api.app:create_app --factory --workers N`` on a free loopback port."""

    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path, workers: int) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.api.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
             "--log-level", "warning"],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the API exited:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def upload_videos(base_url: str, key: str, paths: Sequence[Path]) -> list[str]:
    ids = []
    with httpx.Client(base_url=base_url, timeout=120,
                      headers={"Authorization": f"Bearer {key}"}) as client:
        for path in paths:
            with path.open("rb") as fh:
                response = client.post("/v1/videos", data={"caption_mode": "eager"},
                                       files={"file": (path.name, fh, "video/mp4")})
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


async def _ask_all(base_url: str, key: str, video_ids: Sequence[str], n: int,
                   connections: int) -> list[str]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async def ask(i: int) -> str:
            response = await client.post(
                f"/v1/videos/{video_ids[i % len(video_ids)]}/questions",
                json={"question": f"What happens around second {i % 20}? (#{i})"},
                headers={"Idempotency-Key": f"load-{i}"})
            if response.status_code != 202:
                raise RuntimeError(f"question {i}: {response.status_code} {response.text}")
            return str(response.json()["id"])

        return list(await asyncio.gather(*(ask(i) for i in range(n))))


def ask_concurrently(base_url: str, key: str, video_ids: Sequence[str], n: int, *,
                     connections: int = 50) -> list[str]:
    """Ask ``n`` questions at once (each with its own Idempotency-Key) over at most
    ``connections`` connections (each API request holds a Postgres connection while it
    commits, and Postgres's ``max_connections`` is shared); their job ids."""
    return asyncio.run(_ask_all(base_url, key, video_ids, n, connections))


@dataclass(frozen=True)
class PollResult:
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _poll(base_url: str, key: str, job_ids: Sequence[str], pollers: int,
                duration_s: float) -> tuple[list[float], int]:
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration_s
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:
        async def poller(i: int) -> None:
            nonlocal errors
            n = i
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    response = await client.get(f"/v1/jobs/{job_ids[n % len(job_ids)]}")
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok
                n += 1

        await asyncio.gather(*(poller(i) for i in range(pollers)))
    return latencies, errors


def _poll_process(args: tuple[str, str, list[str], int, float]) -> tuple[list[float], int]:
    return asyncio.run(_poll(*args))


def poll_concurrently(base_url: str, key: str, job_ids: Sequence[str], pollers: int,
                      duration_s: float, processes: int = 4) -> PollResult:
    """``pollers`` clients polling job status for ``duration_s``, over ``processes``."""
    share = math.ceil(pollers / processes)
    counts = [min(share, pollers - i * share) for i in range(processes)]
    work = [(base_url, key, list(job_ids), c, duration_s) for c in counts if c > 0]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(len(work)) as pool:
        parts = pool.map(_poll_process, work)
    seconds = time.monotonic() - started
    latencies = sorted(x for lat, _ in parts for x in lat)
    errors = sum(e for _, e in parts)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    del seconds  # spawning the client processes is not polling time
    return PollResult(len(latencies), errors, pct(0.50), pct(0.99), duration_s)
