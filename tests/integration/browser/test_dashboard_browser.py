"""The dashboard in headless Chromium, against a live vidnav whose jobs really run: the key
form, the jobs page, a job asked through the video page's form and followed live while
it runs, a finished evaluation job (visited nodes and rounds as the trace API has them,
a click on a node seeks the player), the export opened as a file, and another tenant's
job. Screenshots at 1280x800 and at a phone size go to tests/artifacts/."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

from selenium.webdriver.common.by import By
from sqlalchemy import select

from app.db.models import Job
from tests.integration.browser.conftest import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    POLICY_MODEL,
    Stack,
    screenshot,
    viewport,
    wait_until,
)
from tests.integration.workers.conftest import make_video
from tests.support.scripted_server import policy_reply


def upload_ready_video(stack: Stack) -> dict[str, Any]:
    """A 64-second test pattern, uploaded, ingested, captioned (top level) and pictured."""
    data = make_video(64, fps=10, size="320x180").read_bytes()
    with stack.client("acme") as api:
        video = api.post("/v1/videos", files={"file": ("pattern.mp4", data, "video/mp4")}).json()
        wait_until(lambda: api.get(f"/v1/videos/{video['id']}").json()["status"] == "ready",
                   timeout=90, what="the video to be ready")
        wait_until(lambda: api.get(f"/v1/videos/{video['id']}/thumbnails").status_code == 200,
                   what="thumbnails")
        return dict(api.get(f"/v1/videos/{video['id']}").json())


def sign_in(browser: Any, stack: Stack, path: str, tenant: str) -> None:
    browser.delete_all_cookies()
    browser.get(stack.url + path)
    form = browser.find_element(By.ID, "key-form")
    form.find_element(By.NAME, "key").send_keys(stack.keys[tenant])
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(lambda: "key-form" not in browser.page_source, what="the key form to go")


def page_status(browser: Any) -> str:
    return str(browser.find_element(By.ID, "app").get_attribute("data-status"))


def page_rounds(browser: Any) -> list[tuple[int, str, str | None]]:
    items = browser.find_elements(By.CSS_SELECTOR, "#rounds li.round")
    return [(int(li.get_attribute("data-index")), li.get_attribute("data-kind"),
             li.get_attribute("data-node") or None) for li in items]


def page_visits(browser: Any) -> dict[str, str]:
    """Highlighted nodes of the timeline and the visit numbers shown on them."""
    numbers = {mark.get_attribute("data-key"): mark.text
               for mark in browser.find_elements(By.CSS_SELECTOR, "#timeline .visit-num")}
    highlighted = {node.get_attribute("data-key")
                   for node in browser.find_elements(By.CSS_SELECTOR, "#timeline .node.visited")}
    assert highlighted == set(numbers)
    return numbers


def trace_of(stack: Stack, job_id: str) -> dict[str, Any]:
    with stack.client("acme") as api:
        return dict(api.get(f"/v1/jobs/{job_id}/trace").json())


def expected_visits(trace: dict[str, Any]) -> dict[str, str]:
    numbers: dict[str, list[str]] = {}
    calls = [r for r in trace["rounds"] if r["kind"] in ("get_caption", "video_qa")
             and r["node_key"]]
    for n, rnd in enumerate(calls, start=1):
        numbers.setdefault(rnd["node_key"], []).append(str(n))
    return {key: "·".join(ns) for key, ns in numbers.items()}


def check_page_matches_trace(browser: Any, stack: Stack, job_id: str) -> dict[str, Any]:
    trace = trace_of(stack, job_id)
    assert page_rounds(browser) == [(r["index"], r["kind"], r["node_key"])
                                    for r in trace["rounds"]]
    visits = expected_visits(trace)
    assert visits, "the navigation visited no node"
    assert page_visits(browser) == visits
    return trace


def test_jobs_finished_and_running_in_a_browser(browser, stack: Stack) -> None:
    video = upload_ready_video(stack)
    questions = f"/v1/videos/{video['id']}/questions"
    with stack.client("acme") as api:
        finished = api.post(questions, json={
            "question": "What does the test pattern show first?",
            "options": ["A moving box", "A person", "A landscape"],
            "reference": {"answer": "A", "clues": [[0.0, 12.0]]}}).json()
        wait_until(lambda: api.get(f"/v1/jobs/{finished['id']}").json()["status"] == "succeeded",
                   timeout=60, what="the first job")

    # From now on the policy answers its first call, then waits for the gate.
    gate = threading.Event()
    calls: list[int] = []

    def gated_policy(body: dict[str, Any]) -> str:
        calls.append(1)
        if len(calls) > 1:
            gate.wait(60)
        return policy_reply(body)

    stack.models.set_handler(gated_policy, model=POLICY_MODEL)
    viewport(browser, DESKTOP)
    try:
        sign_in(browser, stack, "/ui/jobs", "acme")
        assert browser.current_url == stack.url + "/ui/jobs"
        cookie = browser.get_cookie("vidnav_key")
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
        assert browser.execute_script("return document.cookie") == ""

        # Ask on the video page; the form lands on the new job's page.
        browser.get(f"{stack.url}/ui/videos/{video['id']}")
        wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#top-nodes .caption"))
                   == video["tree_width"], what="the top-level captions")
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#top-nodes .thumb"),
                   what="the top-level thumbnails")
        screenshot(browser, "video-desktop.png")
        browser.find_element(By.NAME, "question").send_keys("Where is the moving box?")
        browser.find_element(By.CSS_SELECTOR, "#ask button[type=submit]").click()
        wait_until(lambda: "/ui/jobs/" in browser.current_url, what="the job page")
        running_id = browser.current_url.rsplit("/", 1)[1]
        wait_until(lambda: len(page_rounds(browser)) == 1 and page_status(browser) == "running",
                   what="the first round of the running job")

        # The jobs page lists both, each with its status.
        browser.get(stack.url + "/ui/jobs")
        rows = wait_until(lambda: {row.get_attribute("data-job-id"): row.get_attribute(
            "data-status") for row in browser.find_elements(By.CSS_SELECTOR, "#jobs-table tr")
            if row.get_attribute("data-job-id")}, what="the jobs table")
        assert rows == {finished["id"]: "succeeded", running_id: "running"}
        screenshot(browser, "jobs-desktop.png")

        # The running job's page takes its rounds from the event stream, without a reload.
        browser.get(f"{stack.url}/ui/jobs/{running_id}")
        wait_until(lambda: len(page_rounds(browser)) == 1, what="the replayed round")
        assert page_status(browser) == "running"
        browser.execute_script("window.__sameDocument = true;")
        screenshot(browser, "job-running-desktop.png")
        gate.set()
        wait_until(lambda: page_status(browser) == "succeeded", timeout=60,
                   what="the running job to finish on its page")
        assert browser.execute_script("return window.__sameDocument === true")
        trace = wait_until(lambda: check_page_matches_trace(browser, stack, running_id),
                           what="the page to show the trace's rounds")
        assert len(trace["rounds"]) == 4
        with stack.client("acme") as api:
            answer = api.get(f"/v1/jobs/{running_id}").json()["answer"]
        assert browser.find_element(By.ID, "answer-text").text == answer
        # The jobs page followed too.
        browser.get(stack.url + "/ui/jobs")
        wait_until(lambda: browser.find_element(
            By.CSS_SELECTOR, f'tr[data-job-id="{running_id}"]').get_attribute("data-status")
            == "succeeded", what="the jobs page to show the finish")
    finally:
        gate.set()

    # The finished evaluation job: visits, clues, verdict, and a click that seeks the player.
    browser.get(f"{stack.url}/ui/jobs/{finished['id']}")
    wait_until(lambda: page_status(browser) == "succeeded", what="the finished job page")
    trace = check_page_matches_trace(browser, stack, finished["id"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#clues .clue")) == 1
    assert browser.find_element(By.CSS_SELECTOR, "#evaluation .verdict").text in ("right",
                                                                                  "wrong")
    wait_until(lambda: browser.execute_script(
        "return document.getElementById('player').readyState") >= 1, what="video metadata")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#timeline .node .thumb"),
               what="thumbnails on the timeline")
    looked = next(r for r in trace["rounds"] if r["kind"] == "get_caption")
    node = browser.find_element(By.CSS_SELECTOR,
                                f'#timeline .node[data-key="{looked["node_key"]}"]')
    node.click()
    start = float(node.get_attribute("data-start"))
    assert abs(start - looked["start_s"]) < 1e-6
    wait_until(lambda: abs(browser.execute_script(
        "return document.getElementById('player').currentTime") - start) < 0.05,
        what="the player to seek to the node")
    caption = browser.find_element(By.ID, "node-caption").text  # the caption the policy read
    assert caption and looked["round"]["observation"].endswith(caption)
    assert "selected" in node.get_attribute("class")
    screenshot(browser, "job-desktop.png")
    viewport(browser, PHONE, mobile=True)
    browser.get(f"{stack.url}/ui/jobs/{finished['id']}")
    wait_until(lambda: page_visits(browser), what="the job page on a phone")
    screenshot(browser, "job-phone.png")
    browser.get(stack.url + "/ui/jobs")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#jobs-table tr[data-job-id]"),
               what="the jobs page on a phone")
    screenshot(browser, "jobs-phone.png")

    # The export is one file that renders the same job with nothing fetched.
    viewport(browser, DESKTOP)
    with stack.client("acme") as api:
        page = api.get(f"/v1/jobs/{finished['id']}/export").text
    export = ARTIFACTS / "job-export.html"
    export.write_text(page, "utf-8")
    browser.get(export.as_uri())
    wait_until(lambda: page_visits(browser) == expected_visits(trace), what="the exported page")
    assert page_rounds(browser) == [(r["index"], r["kind"], r["node_key"]) for r in trace["rounds"]]
    assert browser.find_elements(By.TAG_NAME, "video") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline .node .thumb")
    screenshot(browser, "job-export-desktop.png")


def test_key_form_and_another_tenants_job_in_a_browser(browser, stack: Stack) -> None:
    data = make_video(8, fps=5, size="160x90").read_bytes()
    with stack.client("acme") as api:
        video = api.post("/v1/videos", files={"file": ("short.mp4", data, "video/mp4")}).json()
        job = api.post(f"/v1/videos/{video['id']}/questions", json={"question": "Hm?"}).json()
    viewport(browser, DESKTOP)
    browser.delete_all_cookies()
    browser.get(f"{stack.url}/ui/jobs/{job['id']}")
    assert browser.find_element(By.CSS_SELECTOR, "#key-form h1").text == "Your API key"
    screenshot(browser, "key-form-desktop.png")
    form = browser.find_element(By.ID, "key-form")
    form.find_element(By.NAME, "key").send_keys("vn_wrong")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(lambda: "not valid" in browser.find_element(By.CSS_SELECTOR, "#key-form").text,
               what="the wrong key to be refused")
    assert browser.get_cookie("vidnav_key") is None

    # Signed in as another tenant, the job is simply not there.
    sign_in(browser, stack, f"/ui/jobs/{job['id']}", "globex")
    assert browser.current_url == f"{stack.url}/ui/jobs/{job['id']}"
    assert browser.find_element(By.CSS_SELECTOR, "#message h1").text == "Job not found"
    assert "Hm?" not in browser.page_source
    browser.get(f"{stack.url}/ui/videos/{video['id']}")
    assert browser.find_element(By.CSS_SELECTOR, "#message h1").text == "Video not found"
    browser.get(stack.url + "/ui/jobs")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#jobs-table tr.empty"),
               what="an empty jobs table")


def test_jobs_page_pages_to_older_jobs_in_a_browser(browser, stack: Stack) -> None:
    data = make_video(8, fps=5, size="160x90").read_bytes()
    with stack.client("acme") as api:
        video = api.post("/v1/videos", files={"file": ("short.mp4", data, "video/mp4")}).json()
        api.post(f"/v1/videos/{video['id']}/questions", json={"question": "Oldest?"})
    with stack.runtime.session_factory() as session:  # 100 newer jobs, ended, a second apart
        oldest = session.scalars(select(Job)).one()
        columns = {c.name: getattr(oldest, c.name) for c in Job.__table__.columns}
        for i in range(1, 101):
            session.add(Job(**{**columns, "id": uuid.uuid4(), "question": f"Newer {i}?",
                               "status": "cancelled", "idempotency_key": None,
                               "created_at": columns["created_at"] + timedelta(seconds=i)}))
        session.commit()
    viewport(browser, DESKTOP)
    sign_in(browser, stack, "/ui/jobs", "acme")
    rows = "#jobs-table tr[data-job-id]"
    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, rows)) == 100,
               what="the newest 100 jobs")
    assert browser.find_elements(By.CSS_SELECTOR, rows)[0].text.count("Newer 100?") == 1
    browser.find_element(By.ID, "older-jobs").click()
    wait_until(lambda: [r.get_attribute("data-job-id") for r in
                        browser.find_elements(By.CSS_SELECTOR, rows)] == [str(oldest.id)],
               what="the page of older jobs")
    assert "cursor=" in browser.current_url and not browser.find_elements(By.ID, "older-jobs")
    browser.find_element(By.ID, "newest-jobs").click()
    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, rows)) == 100,
               what="the newest jobs again")
