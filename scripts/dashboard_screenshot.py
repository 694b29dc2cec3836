"""Make the README's screenshot of a job page (docs/dashboard-job.png).

A real question about the narrated test clip on the embedded default (SQLite, tasks in
process) with the CPU model profile, served on loopback and shown in headless Chromium
(Debian's chromium and chromium-driver; `scripts/setup_env.sh --dev` installs them).

    .venv/bin/python scripts/dashboard_screenshot.py [OUT.png]
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.api.app import create_app  # noqa: E402
from app.bootstrap import open_runtime  # noqa: E402
from app.services.runtime import Runtime  # noqa: E402
from app.services.tenants import create_tenant  # noqa: E402
from app.settings import Settings  # noqa: E402

QUESTION = "What does the narrator say people can do together?"
SIZE = (1280, 1000)


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def serve(runtime: Runtime) -> tuple[uvicorn.Server, str]:
    """The app on a loopback port in a background thread, and its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), log_level="warning",
                                           lifespan="off"))
    threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                     daemon=True).start()
    wait(lambda: server.started, 30, "the server")
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def answered_job(url: str, key: str, video: Path) -> str:
    """Upload ``video``, ask the question and wait for the job to finish; its id."""
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    with video.open("rb") as fh:
        vid = api.post("/v1/videos", files={"file": (video.name, fh, "video/mp4")}
                       ).json()["id"]
    job = api.post(f"/v1/videos/{vid}/questions", json={"question": QUESTION}).json()["id"]
    wait(lambda: api.get(f"/v1/jobs/{job}").json()["status"] not in ("queued", "running"),
         600, "the answer")
    return str(job)


def shoot(url: str, key: str, job: str, out: Path, profile: str) -> None:
    """Sign in with headless Chromium, seek the job page's player to the last visited node
    and save the page."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1, "mobile": False})
        browser.get(f"{url}/ui/login")
        browser.find_element(By.NAME, "key").send_keys(key)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        browser.get(f"{url}/ui/jobs/{job}")
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#timeline .node .thumb"), 60,
             "thumbnails")
        visited = browser.find_elements(By.CSS_SELECTOR, "#timeline .node.visited")
        visited[-1].click()  # the leaf where the answer was found: seek there
        wait(lambda: browser.execute_script(
            "return document.getElementById('player').readyState") >= 2, 30, "the frame")
        time.sleep(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(out))
    finally:
        browser.quit()


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "dashboard-job.png"
    sys.path.insert(0, str(REPO / "scripts"))
    from fetch_videos import fetch_video  # type: ignore[import-not-found]

    video = Path(fetch_video("narrated"))
    with tempfile.TemporaryDirectory(prefix="vidnav-shot-") as tmp:
        settings = Settings(data_dir=Path(tmp), profile="cpu", caption_mode="eager")
        with open_runtime(settings) as runtime:  # migrates the embedded database first
            with runtime.session_factory() as session:
                key = create_tenant(session, "demo")[1]
                session.commit()
            server, url = serve(runtime)
            try:
                shoot(url, key, answered_job(url, key, video), out, f"{tmp}/chromium")
            finally:
                server.should_exit = True
    print(out)


if __name__ == "__main__":
    main()
