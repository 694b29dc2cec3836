"""api: the REST service's read path and upload path, measured against baselines in one run.

(1) ``GET /v1/jobs/{id}`` (auth, rate limit in Redis, the job body from memory or Postgres)
    under 64 concurrent keep-alive clients, beside a trivial FastAPI endpoint (``async def``
    returning a constant) served the same way: one uvicorn process each, loaded one at a
    time by ``wrk`` on this machine. The job is read four ways: as configured (bodies kept
    in memory until Postgres NOTIFYs a change, served by the fast path beneath FastAPI's
    router), the same while another connection updates the job 10 times a second (a
    running job's rounds), through FastAPI's route only (the fast path off), and with the
    cache turned off (``VIDNAV_JOB_READ_CACHE=false``: every read goes to Postgres).
    Targets: at least half the trivial endpoint's throughput, and p99 under 50 ms.
(2) A 1 GiB upload streamed to ``POST /v1/videos`` (a real MP4 padded with a ``free`` box,
    so it probes and is stored like any upload): throughput, and the server's peak RSS
    growth sampled every 20 ms. Target: under 64 MB growth.

Needs Postgres and Redis and ``wrk`` (``apt-get install wrk``); it recreates its own
database (``vidnav_bench_api``, or ``VIDNAV_BENCH_API_DATABASE_URL``) and uses Redis db 12.
The results replace the "api" section of bench/RESULTS.md.

Run: ``.venv/bin/python -m bench.api [--duration S] [--upload-mib N]`` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import psycopg
from fastapi import FastAPI

from bench.results import finish, load_average

ROOT = Path(__file__).resolve().parent.parent
NAME = "api"
WORK = ROOT / "bench" / "_work" / "api"
DATABASE_URL = os.environ.get("VIDNAV_BENCH_API_DATABASE_URL",
                              "postgresql://postgres@127.0.0.1:5432/vidnav_bench_api")
REDIS_URL = os.environ.get("VIDNAV_BENCH_API_REDIS_URL", "redis://127.0.0.1:6379/12")
CONNECTIONS = 64
THROUGHPUT_TARGET = 0.5
P99_TARGET_MS = 50.0
MEMORY_TARGET_MB = 64.0

trivial_app = FastAPI()


@trivial_app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


def route_only_app() -> FastAPI:
    """vidnav with ``GET /v1/jobs/{id}`` served by its FastAPI route only."""
    from app.api.app import create_app

    return create_app(job_read_fast_path=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_database() -> tuple[str, str]:
    """A fresh, migrated bench database with one tenant and one finished job: (key, job id)."""
    from app.db import migrate
    from app.db.models import Job, TraceStep, Video, utcnow
    from app.db.session import make_engine, make_session_factory
    from app.services.tenants import create_tenant
    from app.settings import Settings

    base, _, name = DATABASE_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    settings = Settings(database_url=DATABASE_URL)
    migrate.upgrade(settings)
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            tenant, key = create_tenant(session, "bench", rate_limit_per_minute=10**9)
            video = Video(tenant_id=tenant.id, sha256="0" * 64, original_name="bench.mp4",
                          size_bytes=1, storage_path="/nonexistent", status="ready",
                          duration_s=600.0, num_frames=14315, fps=23.86, tree_width=4)
            session.add(video)
            session.flush()
            now = utcnow()
            job = Job(tenant_id=tenant.id, video_id=video.id, question="What happens first?",
                      options=["a", "b", "c", "d"], budgets={"max_rounds": 30},
                      status="succeeded", answer="b", progress_round=7, started_at=now,
                      finished_at=now, summary={"rounds": 7, "captions_cached": 5,
                                                "captions_generated": 2})
            session.add(job)
            session.flush()
            for index in range(7):
                session.add(TraceStep(job_id=job.id, round_index=index, kind="get_caption",
                                      payload={"index": index}))
            session.commit()
            return key, str(job.id)
    finally:
        engine.dispose()


class Server:
    """A uvicorn process on a loopback port."""

    def __init__(self, target: str, *, factory: bool, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1",
               "--port", str(self.port), "--no-access-log", "--log-level", "warning"]
        if factory:
            cmd.append("--factory")
        self._log = log.open("w")
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}); see its log")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server at {self.url} not ready after {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


def wrk(url: str, duration: float, headers: dict[str, str], pid: int | None = None
        ) -> tuple[float, float, float]:
    """(requests per second, p99 latency in ms, server CPU ms per request) from one wrk run
    with 64 connections; the CPU figure counts the server process ``pid`` only."""
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration:.0f}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    proc = psutil.Process(pid) if pid is not None else None
    cpu_before = sum(proc.cpu_times()[:2]) if proc is not None else 0.0
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60,
                         check=True).stdout
    cpu_used = sum(proc.cpu_times()[:2]) - cpu_before if proc is not None else 0.0
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"wrk saw error responses from {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\n\s+99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99_ms, 1000.0 * cpu_used / max(1, total)


def make_padded_video(path: Path, total_bytes: int) -> None:
    """A real MP4 followed by one ``free`` box up to ``total_bytes``: valid, and probes fast."""
    from scripts.fetch_videos import fetch_video

    source = fetch_video("bbb")
    pad = total_bytes - source.stat().st_size
    if pad < 8 or pad >= 2**32:
        raise ValueError("padding must fit one 32-bit free box")
    shutil.copyfile(source, path)
    block = b"\0" * (1 << 20)
    with path.open("ab") as fh:
        fh.write(struct.pack(">I4s", pad, b"free"))
        left = pad - 8
        while left:
            fh.write(block[: min(left, len(block))])
            left -= min(left, len(block))


def multipart_body(path: Path, boundary: str) -> Iterator[bytes]:
    yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
           f"filename=\"big.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            yield block
    yield f"\r\n--{boundary}--\r\n".encode()


def upload_run(server: Server, pid: int, key: str, path: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS growth in MB, status) of one streamed upload of ``path``."""
    proc = psutil.Process(pid)
    baseline = proc.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    boundary = uuid.uuid4().hex
    started = time.perf_counter()
    with httpx.Client(timeout=600) as http:
        response = http.post(
            f"{server.url}/v1/videos", content=multipart_body(path, boundary),
            headers={"Authorization": f"Bearer {key}",
                     "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if response.status_code == 201:
        with httpx.Client(timeout=60) as http:
            http.delete(f"{server.url}/v1/videos/{response.json()['id']}",
                        headers={"Authorization": f"Bearer {key}"})
    return seconds, (peak - baseline) / 1e6, response.status_code


class JobUpdater:
    """Bumps the job's round ``per_s`` times a second from its own connection while in use,
    as a navigation in progress does."""

    def __init__(self, job_id: str, per_s: float) -> None:
        self.job_id = job_id
        self.per_s = per_s
        self.updates = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            while not self._stop.wait(1.0 / self.per_s):
                conn.execute("UPDATE jobs SET progress_round = progress_round + 1 "
                             "WHERE id = %s", (uuid.UUID(self.job_id),))
                self.updates += 1

    def latest_round(self) -> int:
        with psycopg.connect(DATABASE_URL) as conn:
            row = conn.execute("SELECT progress_round FROM jobs WHERE id = %s",
                               (uuid.UUID(self.job_id),)).fetchone()
        assert row is not None
        return int(row[0])

    def __enter__(self) -> JobUpdater:
        if self.per_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def medians(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    rps, p99, cpu = (statistics.median(column) for column in zip(*runs, strict=True))
    return rps, p99, cpu



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs per endpoint")
    parser.add_argument("--upload-mib", type=int, default=1024)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/api.py needs wrk (apt-get install wrk)")

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    key, job_id = prepare_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDNAV_")}
    env.update(VIDNAV_DATABASE_URL=DATABASE_URL, VIDNAV_REDIS_URL=REDIS_URL,
               VIDNAV_DATA_DIR=str(WORK / "data"), PYTHONPATH=str(ROOT))
    vidnav = Server("app.api.app:create_app", factory=True, env=env, log=WORK / "vidnav.log")
    uncached = Server("app.api.app:create_app", factory=True,
                      env={**env, "VIDNAV_JOB_READ_CACHE": "false"}, log=WORK / "uncached.log")
    route_only = Server("bench.api:route_only_app", factory=True, env=env,
                        log=WORK / "route_only.log")
    trivial = Server("bench.api:trivial_app", factory=False, env=env, log=WORK / "trivial.log")
    auth = {"Authorization": f"Bearer {key}"}
    try:
        vidnav.wait_ready("/healthz")
        uncached.wait_ready("/healthz")
        route_only.wait_ready("/healthz")
        trivial.wait_ready("/ping")
        job_path = f"/v1/jobs/{job_id}"
        assert httpx.get(vidnav.url + job_path, headers=auth).json()["status"] == "succeeded"
        runs = {  # name: (url, headers, server, updates per second during the run)
            "trivial": (trivial.url + "/ping", {}, trivial, 0),
            "healthz": (vidnav.url + "/healthz", {}, vidnav, 0),
            "job": (vidnav.url + job_path, auth, vidnav, 0),
            "job_updating": (vidnav.url + job_path, auth, vidnav, 10),
            "job_route": (route_only.url + job_path, auth, route_only, 0),
            "job_uncached": (uncached.url + job_path, auth, uncached, 0),
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
        for url, headers, _, _ in runs.values():  # warm-up
            wrk(url, 2, headers)
        updates = 0
        for _ in range(args.rounds):  # interleaved, so load from neighbours hits all alike
            for name, (url, headers, server, per_s) in runs.items():
                with JobUpdater(job_id, per_s) as updater:
                    results[name].append(wrk(url, args.duration, headers, server.process.pid))
                updates += updater.updates
                print(f"{name} {results[name][-1]}", flush=True)
        # After all that, both servers answer with the job's latest state.
        latest = updater.latest_round()
        for server in (vidnav, uncached, route_only):
            body = httpx.get(server.url + job_path, headers=auth).json()
            assert body["rounds"] == latest, (body["rounds"], latest)

        trivial.stop()
        uncached.stop()
        route_only.stop()
        upload_path = WORK / "upload.mp4"
        make_padded_video(upload_path, args.upload_mib * 1024 * 1024)
        seconds, growth_mb, status = upload_run(vidnav, vidnav.process.pid, key, upload_path)
        upload_path.unlink()
        if status != 201:
            raise RuntimeError(f"the upload answered {status}; see {WORK / 'vidnav.log'}")
    finally:
        vidnav.stop()
        uncached.stop()
        route_only.stop()
        trivial.stop()

    trivial_rps, trivial_p99, trivial_cpu = medians(results["trivial"])
    job_rps, job_p99, job_cpu = medians(results["job"])
    rows = {name: medians(runs) for name, runs in results.items()}
    ratio = job_rps / trivial_rps
    mib_s = args.upload_mib / seconds
    load = load_average()
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    labels = {
        "trivial": "trivial FastAPI `GET /ping`",
        "healthz": "vidnav's own `GET /healthz` (no auth, no I/O: the app's floor)",
        "job": "`GET /v1/jobs/{id}` as configured (body from memory while unchanged)",
        "job_updating": "the same, job updated 10 times a second meanwhile",
        "job_route": "`GET /v1/jobs/{id}` through FastAPI's route (fast path off)",
        "job_uncached": "`GET /v1/jobs/{id}`, cache off (Postgres every time)",
    }
    table = [
        "| endpoint | requests/s | / trivial | p99 latency | server CPU per request |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (rps, p99, cpu) in rows.items():
        table.append(f"| {labels[name]} | {rps:,.0f} | {rps / trivial_rps:.2f} | "
                     f"{p99:.1f} ms | {cpu:.3f} ms |")
    worst = min(rows["job"][0], rows["job_updating"][0]) / trivial_rps
    worst_p99 = max(rows["job"][1], rows["job_updating"][1])
    section = "\n".join([
        f"## {NAME}", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs shared with other work; one uvicorn "
        f"process per app, wrk -t2 -c{CONNECTIONS}, {args.rounds} interleaved runs of "
        f"{args.duration:.0f} s per row (medians). Postgres and Redis on the same "
        "machine; every request authenticates and is counted by the Redis rate limiter. "
        "Command: `.venv/bin/python -m bench.api`.", "",
        *table, "",
        f"Server CPU per request is the uvicorn process's only (Postgres and Redis not "
        f"counted). The updating row saw {updates} updates in all; after the runs all three "
        "vidnav servers answered with the job's latest round (checked).", "",
        f"Throughput ratio job / trivial = {ratio:.2f}, {worst:.2f} while the job changes "
        f"(target >= {THROUGHPUT_TARGET}: {met(worst >= THROUGHPUT_TARGET)}); job p99 "
        f"{worst_p99:.1f} ms at worst (target < {P99_TARGET_MS:.0f} ms: "
        f"{met(worst_p99 < P99_TARGET_MS)}). With the cache off the ratio is "
        f"{rows['job_uncached'][0] / trivial_rps:.2f} and p99 {rows['job_uncached'][1]:.1f} ms: "
        "each read then costs a Postgres round trip on the same 2 CPUs. Through FastAPI's "
        f"route alone (fast path off) the ratio is {rows['job_route'][0] / trivial_rps:.2f} "
        f"and p99 {rows['job_route'][1]:.1f} ms: the fast path skips the router, exception "
        "middleware and parameter solving that the trivial endpoint still pays for, which is "
        "why the job read can outrun it. vidnav's own no-op `/healthz` (all of that plus "
        f"vidnav's route table) reaches {rows['healthz'][0] / trivial_rps:.2f} "
        f"(p99 {rows['healthz'][1]:.1f} ms).", "",
        "Every API process freezes the objects alive after start-up out of cyclic garbage "
        "collection (`VIDNAV_GC_FREEZE`, on by default). Before, full collections over some "
        "150,000 import-time objects paused the event loop for about 80 ms every few seconds "
        "under this load, and were the whole p99 tail (about 100 ms at every vidnav row).", "",
        f"Upload of {args.upload_mib} MiB (streamed multipart, hashed, probed, stored): "
        f"{seconds:.1f} s = {mib_s:.0f} MiB/s; server peak RSS growth {growth_mb:.1f} MB "
        f"(target < {MEMORY_TARGET_MB:.0f} MB: {met(growth_mb < MEMORY_TARGET_MB)}). "
        f"Load average at the end: {load}.", "",
    ])
    finish(NAME, section, write=not args.no_write)


if __name__ == "__main__":
    main()
