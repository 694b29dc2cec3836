"""The start-up wait of full-stack processes, against real Postgres and Redis servers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.errors import Unavailable
from app.services.startup import missing_dependencies, wait_for_dependencies
from app.settings import Settings
from tests.integration.conftest import TEST_REDIS_URL, _admin_url

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def empty_database(pg_url: str) -> Iterator[str]:
    """A database that exists but was never migrated."""
    admin, name = _admin_url(pg_url)
    empty = f"{name}_unmigrated"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{empty}"')
        conn.execute(f'CREATE DATABASE "{empty}"')
    yield f"{pg_url.rpartition('/')[0]}/{empty}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{empty}" WITH (FORCE)')


def test_a_migrated_stack_is_ready_at_once(pg_url: str) -> None:
    settings = Settings(database_url=pg_url, redis_url=TEST_REDIS_URL, startup_wait_s=5)
    waits: list[list[str]] = []
    started = time.monotonic()
    wait_for_dependencies(settings, schema=True, on_wait=waits.append)
    assert waits == []
    assert time.monotonic() - started < 5


def test_waits_for_a_redis_that_starts_late(pg_url: str, tmp_path) -> None:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    settings = Settings(database_url=pg_url, redis_url=f"redis://127.0.0.1:{port}/0",
                        startup_wait_s=30)
    procs: list[subprocess.Popen[bytes]] = []

    def start_later() -> None:
        time.sleep(1.5)
        procs.append(subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    waits: list[list[str]] = []
    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        wait_for_dependencies(settings, schema=True, on_wait=waits.append)
    finally:
        starter.join()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    assert waits, "the first check ran before Redis was started, so it must have waited"
    assert all(len(problems) == 1 and f"Redis at 127.0.0.1:{port}" in problems[0]
               for problems in waits)


def test_gives_up_naming_what_is_missing_without_the_password() -> None:
    pg_port, redis_port = free_port(), free_port()
    settings = Settings(
        database_url=f"postgresql://vidnav:s3cret-pw@127.0.0.1:{pg_port}/vidnav",
        redis_url=f"redis://:other-s3cret@127.0.0.1:{redis_port}/0", startup_wait_s=1.5)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        wait_for_dependencies(settings, schema=False)
    assert time.monotonic() - started < 10
    message = caught.value.message
    assert caught.value.code == "dependency_unavailable"
    assert f"Postgres at 127.0.0.1:{pg_port}/vidnav is not answering" in message
    assert f"Redis at 127.0.0.1:{redis_port} is not answering" in message
    assert "s3cret" not in message


def test_an_unmigrated_database_is_missing_its_schema(empty_database: str) -> None:
    settings = Settings(database_url=empty_database, redis_url=TEST_REDIS_URL,
                        startup_wait_s=1)
    assert missing_dependencies(settings, schema=False) == []
    [problem] = missing_dependencies(settings, schema=True)
    assert "schema revision none" in problem and "vidnav db upgrade" in problem
    with pytest.raises(Unavailable, match="vidnav db upgrade"):
        wait_for_dependencies(settings, schema=True)


def test_the_embedded_default_needs_nothing(tmp_path) -> None:
    assert missing_dependencies(Settings(data_dir=tmp_path), schema=True) == []


def test_a_sqlite_database_url_is_checked_too(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'other.db'}", data_dir=tmp_path)
    assert missing_dependencies(settings, schema=False) == []
    [problem] = missing_dependencies(settings, schema=True)
    assert problem.startswith("the database sqlite:///") and "vidnav db upgrade" in problem


# --- the CLI's entry points ------------------------------------------------------------------


def cli_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDNAV_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", VIDNAV_DATA_DIR=str(tmp_path),
               **values)
    return env


FULL_STACK_COMMANDS = {
    "serve": ["serve", "--port", "0"],
    "serve --workers 2": ["serve", "--port", "0", "--workers", "2"],
    "worker": ["worker", "-Q", "navigate", "-c", "1"],
    "db upgrade": ["db", "upgrade"],
    "tenants create": ["tenants", "create", "acme"],
}


@pytest.mark.parametrize("command", sorted(FULL_STACK_COMMANDS))
def test_every_full_stack_command_waits_then_gives_up_with_one_line(
    command: str, tmp_path: Path
) -> None:
    pg_port, redis_port = free_port(), free_port()
    env = cli_env(tmp_path, VIDNAV_STARTUP_WAIT_S="2",
                  VIDNAV_DATABASE_URL=f"postgresql://vidnav:s3cret-pw@127.0.0.1:{pg_port}/v",
                  VIDNAV_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
    proc = subprocess.run([sys.executable, "-m", "app.cli", *FULL_STACK_COMMANDS[command]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # a dependency, not the input, is at fault
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("waiting: Postgres at 127.0.0.1:"), proc.stderr
    assert lines[-1].startswith("error [dependency_unavailable] gave up after 2 s "
                                "(VIDNAV_STARTUP_WAIT_S): "), proc.stderr
    assert f"Redis at 127.0.0.1:{redis_port} is not answering" in lines[-1]
    assert "s3cret" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert "celery" not in proc.stderr.lower()  # the worker gave up before becoming Celery


def test_several_api_processes_are_refused_on_the_embedded_default(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--workers", "2"],
                          cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error [workers_need_full_stack] several API "
                                          "processes need the full stack")
    assert not (tmp_path / "vidnav.db").exists()  # refused before any work


def test_a_worker_on_a_ready_stack_becomes_the_celery_worker(pg_url: str,
                                                               tmp_path: Path) -> None:
    env = cli_env(tmp_path, VIDNAV_DATABASE_URL=pg_url, VIDNAV_REDIS_URL=TEST_REDIS_URL,
                  VIDNAV_STARTUP_WAIT_S="10")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "-Q", "navigate",
                             "-c", "1"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    became: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            argv = cmdline.read_bytes().split(b"\0")
            if b"celery" in argv:
                became = [a.decode() for a in argv if a]
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, stderr = proc.communicate()
    # The same process (exec, not a child): the wait found everything and handed over.
    assert became, f"still not Celery after 60 s: {stderr}"
    assert became[became.index("celery"):] == [
        "celery", "-A", "workers.celery_app", "worker", "-Q", "navigate", "-c", "1",
        "--loglevel", "info"], stderr
    assert "waiting:" not in stderr
