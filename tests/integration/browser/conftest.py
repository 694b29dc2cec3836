"""Browser test fixtures: Debian's Chromium driven through chromium-driver (Selenium), and a
live vidnav on the test Postgres and Redis whose tasks run in process against a scripted
model server, so jobs really ingest, caption and navigate while the browser watches.

Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.app import create_app
from app.bootstrap import build_runtime
from app.bootstrap.inline_queue import InlineQueue
from app.services.runtime import Runtime
from app.services.tenants import create_tenant
from app.settings import Settings
from tests.integration.api.conftest import LiveServer
from tests.integration.conftest import TEST_REDIS_URL
from tests.support.scripted_server import ScriptedServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
POLICY_MODEL = "policy-model"
DESKTOP = (1280, 800)
PHONE = (390, 844)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (a fresh profile, nothing fetched online)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: scripts/setup_env.sh --dev installs it")
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup_env.sh --dev)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="vidnav-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def viewport(driver: Any, size: tuple[int, int], *, mobile: bool = False) -> None:
    """Make the page exactly ``size`` CSS pixels (a phone also gets touch and mobile layout)."""
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def wait_until(predicate: Callable[[], Any], *, timeout: float = 30, what: str = "condition"
               ) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - an element not there yet
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Stack:
    """vidnav served on loopback with its tasks in process, and who may use it."""

    url: str
    runtime: Runtime
    models: ScriptedServer
    keys: dict[str, str]  # tenant name -> API key

    def client(self, tenant: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.keys[tenant]}"})


@pytest.fixture
def stack(clean_db, redis_client, pg_url: str, tmp_path: Path) -> Iterator[Stack]:
    models = ScriptedServer().start()
    settings = Settings(
        database_url=pg_url, redis_url=TEST_REDIS_URL, data_dir=tmp_path / "data",
        profile="remote", transcribe=False, caption_mode="online",
        policy_base_url=models.base_url, captioner_base_url=models.base_url,
        videoqa_base_url=models.base_url, policy_model=POLICY_MODEL, model_retries=0,
        navigate_wait_s=0.2, task_retry_backoff_s=0.1,
        high_frames=8, medium_frames=8, low_frames=4, videoqa_frames=4,
    )
    # Tasks run in this process (on Redis, build_runtime would send them to Celery).
    queue = InlineQueue()
    runtime = build_runtime(settings, queue=queue)
    queue.bind(runtime)
    keys = {}
    with runtime.session_factory() as session:
        for name in ("acme", "globex"):
            keys[name] = create_tenant(session, name)[1]
        session.commit()
    server = LiveServer(create_app(runtime, sse_heartbeat_s=1.0, sse_poll_s=0.3,
                                   auth_cache_ttl_s=0.0)).start()
    try:
        yield Stack(server.url, runtime, models, keys)
    finally:
        server.stop()
        runtime.close()
        models.stop()

