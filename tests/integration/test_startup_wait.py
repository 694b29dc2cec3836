"""The start-up wait of full-stack processes, against real Postgres and Redis servers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from app.errors import Unavailable
from app.services.startup import missing_dependencies, wait_for_dependencies
from app.settings import Settings
from tests.integration.conftest import TEST_REDIS_URL, _admin_url


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
