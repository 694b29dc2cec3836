"""Uploads under process and disk faults, through a real API process: kill -9 mid-upload
leaves no row, and its partial file is swept; a full disk answers 507 in the error shape
and leaves nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db.models import Video
from app.db.session import session_scope
from app.services.tenants import create_tenant
from tests.integration.workers.conftest import Stack, make_video
from tests.integration.workers.test_full_stack_http import ApiProcess
from tests.support.hostile_report import Tally

FAST_SWEEP = {"upload_stale_s": 1.0, "reconcile_interval_s": 0.3}


def _key(stack: Stack) -> str:
    with session_scope(stack.sessions) as session:
        _tenant, key = create_tenant(session, f"uploads-{uuid.uuid4().hex[:6]}")
    return key


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_kill_9_of_the_api_mid_upload_leaves_no_row_and_the_part_file_is_swept(
        make_stack, tally: Tally) -> None:
    stack: Stack = make_stack(**FAST_SWEEP)
    data = Path(stack.settings.data_dir)
    key = _key(stack)
    api = ApiProcess(stack)
    boundary = "vidnavboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"clip.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
    declared = len(head) + 50 * 1024**2
    sock = socket.create_connection(("127.0.0.1", api.port))
    try:
        sock.sendall((f"POST /v1/videos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                      f"Content-Length: {declared}\r\n\r\n").encode() + head)
        for _ in range(4):
            sock.sendall(os.urandom(1024**2))
        deadline = time.monotonic() + 20
        while not list((data / "uploads").glob("*.part")):
            assert time.monotonic() < deadline, "the upload never reached the disk"
            time.sleep(0.05)
        api.process.kill()  # kill -9, mid-body
        api.process.wait(timeout=10)
    finally:
        sock.close()
    assert stack.count_rows(Video) == 0
    assert [p.suffix for p in _files(data / "uploads")] == [".part"]  # what a kill leaves
    # A kill between moving the file into place and committing its row leaves a folder.
    orphan = data / "videos" / str(uuid.uuid4())
    orphan.mkdir(parents=True)
    (orphan / "source.mp4").write_bytes(b"x")
    time.sleep(1.2)  # both are older than VIDNAV_UPLOAD_STALE_S now

    api = ApiProcess(stack)  # the restarted API's reconciler sweeps them
    try:
        deadline = time.monotonic() + 20
        while _files(data / "uploads") or orphan.exists():
            assert time.monotonic() < deadline, _files(data)
            time.sleep(0.1)
        with httpx.Client(base_url=api.base_url, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as client, \
                make_video(10).open("rb") as fh:
            after = client.post("/v1/videos", files={"file": ("c.mp4", fh, "video/mp4")})
        assert after.status_code == 201, after.text  # and uploads work as before
    finally:
        api.stop()
    tally.add("faults_process")
    tally.add("leftovers", 0)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs as the data folder (needs root's mount)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_upload_disk_answers_507_and_leaves_nothing(make_stack, tiny_disk: Path,
                                                          tally: Tally) -> None:
    stack: Stack = make_stack(data_dir=str(tiny_disk))
    key = _key(stack)
    api = ApiProcess(stack)
    try:
        with httpx.Client(base_url=api.base_url, timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            big = os.urandom(6 * 1024**2)
            response = client.post("/v1/videos", files={"file": ("big.mp4", big, "video/mp4")})
            assert response.status_code == 507, response.text
            error = response.json()["error"]
            assert error["code"] == "insufficient_storage"
            assert str(tiny_disk) not in response.text
            # Space is back once the refused upload is gone: a small one is stored.
            with make_video(10).open("rb") as fh:
                small = client.post("/v1/videos", files={"file": ("c.mp4", fh, "video/mp4")})
            assert small.status_code == 201, small.text
    finally:
        api.stop()
    assert stack.count_rows(Video) == 1
    assert not list((tiny_disk / "uploads").glob("*.part"))
    tally.add("faults_process")
    tally.add("leftovers", 0)
