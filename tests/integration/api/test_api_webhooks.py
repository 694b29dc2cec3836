"""Webhooks to a real HTTP receiver on loopback: signed body, recorded attempts, the log."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from app.db.models import Job, WebhookDelivery, utcnow
from app.services import webhooks


class Receiver:
    """An HTTP server recording each POST and answering with the next scripted status."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers.items()), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def integration_settings(integration_settings):  # type: ignore[no-untyped-def]
    # The receiver listens on loopback, which is refused by default (see the tests below).
    return integration_settings.model_copy(update={"webhook_allow_private": True})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def finished_job(client, tenant, small_video, runtime, url: str | None) -> str:
    video = (await client.post("/v1/videos", headers=tenant.headers,
                               files={"file": ("c.mp4", small_video, "video/mp4")})).json()
    body = {"question": "Who?"} | ({"callback_url": url} if url else {})
    job = (await client.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                             json=body)).json()
    with runtime.session_factory() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        row.status, row.answer, row.started_at, row.finished_at = (
            "succeeded", "the rabbit", utcnow(), utcnow())
        session.commit()
    return job["id"]


async def test_delivery_is_signed_and_logged(client, tenant, small_video, runtime, receiver):
    job_id = await finished_job(client, tenant, small_video, runtime, receiver.url)
    with runtime.session_factory() as session:
        delivery = webhooks.create_delivery(session, session.get(Job, uuid.UUID(job_id)))
        session.commit()
    assert delivery is not None
    with httpx.Client(timeout=5) as http:
        result = webhooks.deliver(runtime.session_factory, delivery.id, http, allow_private=True)
    assert (result.state, result.attempt, result.status_code) == ("delivered", 1, 204)

    [(headers, body)] = receiver.requests
    assert webhooks.verify(tenant.webhook_secret, body, headers["X-Vidnav-Signature"])
    assert not webhooks.verify("another-secret", body, headers["X-Vidnav-Signature"])
    assert not webhooks.verify(tenant.webhook_secret, body + b" ", headers["X-Vidnav-Signature"])
    payload = json.loads(body)
    assert payload["event"] == "job.finished"
    assert str(payload["timestamp"]) == headers["X-Vidnav-Timestamp"]
    assert payload["job"]["id"] == job_id
    assert (payload["job"]["status"], payload["job"]["answer"]) == ("succeeded", "the rabbit")

    log = (await client.get(f"/v1/jobs/{job_id}/webhooks", headers=tenant.headers)).json()
    [entry] = log["items"]
    assert (entry["state"], entry["attempts"], entry["status_code"], entry["url"]) == \
        ("delivered", 1, 204, receiver.url)
    # Delivered is final: another call sends nothing.
    with httpx.Client(timeout=5) as http:
        again = webhooks.deliver(runtime.session_factory, delivery.id, http, allow_private=True)
        assert again.state == "delivered"
    assert len(receiver.requests) == 1


async def test_failed_attempts_are_recorded_until_given_up(client, tenant, small_video, runtime,
                                                           receiver):
    job_id = await finished_job(client, tenant, small_video, runtime, receiver.url)
    receiver.statuses = [500, 503, 500]
    with runtime.session_factory() as session:
        delivery = webhooks.create_delivery(session, session.get(Job, uuid.UUID(job_id)))
        session.commit()
    with httpx.Client(timeout=5) as http:
        results = [webhooks.deliver(runtime.session_factory, delivery.id, http,
                                    allow_private=True, max_attempts=3)
                   for _ in range(3)]
    assert [(r.state, r.attempt, r.status_code) for r in results] == [
        ("pending", 1, 500), ("pending", 2, 503), ("failed", 3, 500)]
    assert results[0].retry and not results[2].retry
    assert webhooks.retry_delay_s(1) < webhooks.retry_delay_s(2) <= webhooks.retry_delay_s(20)
    log = (await client.get(f"/v1/jobs/{job_id}/webhooks", headers=tenant.headers)).json()
    assert log["items"][0]["state"] == "failed"
    assert "HTTP 500" in log["items"][0]["error"]


async def test_unreachable_receiver_is_a_recorded_failure(client, tenant, small_video, runtime):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    job_id = await finished_job(client, tenant, small_video, runtime, url)
    with runtime.session_factory() as session:
        delivery = webhooks.create_delivery(session, session.get(Job, uuid.UUID(job_id)))
        session.commit()
    with httpx.Client(timeout=2) as http:
        result = webhooks.deliver(runtime.session_factory, delivery.id, http, allow_private=True)
    assert result.state == "pending" and result.status_code is None
    assert "ConnectError" in (result.error or "")


async def test_no_callback_no_delivery(client, tenant, small_video, runtime, rows):
    job_id = await finished_job(client, tenant, small_video, runtime, None)
    with runtime.session_factory() as session:
        assert webhooks.create_delivery(session, session.get(Job, uuid.UUID(job_id))) is None
    assert rows(WebhookDelivery) == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://api.localhost./x",
    "http://10.0.0.7/hook", "http://[::1]/hook", "http://169.254.169.254/latest/meta-data",
    "http://[::ffff:192.168.1.1]/x", "http://0.0.0.0/x",
])
def test_non_public_callback_hosts_are_refused(url):
    with pytest.raises(webhooks.CallbackNotPublic):
        webhooks.check_callback_url(url, resolve=True)


def test_public_hosts_pass_and_names_resolve_only_at_delivery():
    webhooks.check_callback_url("https://93.184.215.14/hook", resolve=True)
    webhooks.check_callback_url("https://hooks.example.com/x", resolve=False)
    with pytest.raises(webhooks.CallbackNotPublic, match="does not resolve"):
        webhooks.check_callback_url("https://no-such-host.invalid/x", resolve=True)


async def test_a_delivery_to_a_non_public_host_fails_at_once(client, tenant, small_video,
                                                             runtime, receiver):
    job_id = await finished_job(client, tenant, small_video, runtime, receiver.url)
    with runtime.session_factory() as session:
        delivery = webhooks.create_delivery(session, session.get(Job, uuid.UUID(job_id)))
        session.commit()
    with httpx.Client(timeout=5) as http:
        result = webhooks.deliver(runtime.session_factory, delivery.id, http)
    assert (result.state, result.attempt, result.status_code) == ("failed", 1, None)
    assert "not a public address (127.0.0.1)" in (result.error or "")
    assert receiver.requests == []  # nothing was sent
