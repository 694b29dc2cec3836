"""Webhooks to a real HTTP receiver on loopback: signed body, recorded attempts, the log."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import trustme

from app.db.models import Job, WebhookDelivery, utcnow
from app.services import webhooks


class Receiver:
    """An HTTP server recording each POST and answering with the next scripted status
    (HTTPS with ``tls``, a server-side SSL context)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
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
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
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


class TableResolver:
    """``socket.getaddrinfo`` for names that exist only in this test: each name answers with
    its next list of addresses (the last one repeats; an empty one does not resolve), and
    every call is recorded."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, *args: object, **kwargs: object
                 ) -> list[tuple[object, ...]]:
        answered = self.calls.count(host)
        self.calls.append(host)
        table = self.answers[host]
        addresses = table[min(answered, len(table) - 1)]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
                for a in addresses]


async def pending_delivery(client, tenant, small_video, runtime, url: str):  # type: ignore[no-untyped-def]
    job_id = await finished_job(client, tenant, small_video, runtime, url)
    with runtime.session_factory() as session:
        delivery = webhooks.create_delivery(session, session.get(Job, uuid.UUID(job_id)))
        session.commit()
    return delivery.id


async def test_a_delivery_connects_to_the_address_it_resolved(client, tenant, small_video,
                                                              runtime, receiver):
    # receiver.test exists nowhere but in the resolver: only the pinned address can reach it.
    # 127.0.0.2 is loopback with nothing listening: refused, so the next address is tried.
    resolver = TableResolver({"receiver.test": [["127.0.0.2", "127.0.0.1"]]})
    delivery_id = await pending_delivery(client, tenant, small_video, runtime,
                                         f"http://receiver.test:{receiver.port}/hook")
    with httpx.Client(timeout=5) as http:
        result = webhooks.deliver(runtime.session_factory, delivery_id, http,
                                  allow_private=True, resolver=resolver)
    assert (result.state, result.status_code) == ("delivered", 204)
    [(headers, _)] = receiver.requests
    assert headers["Host"] == f"receiver.test:{receiver.port}"
    assert resolver.calls == ["receiver.test"]


async def test_a_name_that_rebinds_after_the_check_is_not_followed(client, tenant, small_video,
                                                                   runtime, receiver):
    # Public when checked, loopback a moment later: the attempt connects to the public
    # address it checked (unreachable from here), never to the loopback receiver.
    resolver = TableResolver({"receiver.test": [["93.184.215.14"], ["127.0.0.1"]]})
    delivery_id = await pending_delivery(client, tenant, small_video, runtime,
                                         f"http://receiver.test:{receiver.port}/hook")
    with httpx.Client(timeout=1) as http:
        first = webhooks.deliver(runtime.session_factory, delivery_id, http, resolver=resolver)
        assert resolver.calls == ["receiver.test"]
        assert first.state == "pending" and first.status_code is None
        # The next attempt resolves again, sees loopback, and gives up at once.
        second = webhooks.deliver(runtime.session_factory, delivery_id, http, resolver=resolver)
    assert (second.state, second.attempt) == ("failed", 2)
    assert "not a public address (127.0.0.1)" in (second.error or "")
    assert receiver.requests == []


async def test_a_name_that_does_not_resolve_is_tried_again_later(client, tenant, small_video,
                                                                 runtime, receiver):
    resolver = TableResolver({"receiver.test": [[], ["127.0.0.1"]]})
    delivery_id = await pending_delivery(client, tenant, small_video, runtime,
                                         f"http://receiver.test:{receiver.port}/hook")
    with httpx.Client(timeout=5) as http:
        first = webhooks.deliver(runtime.session_factory, delivery_id, http,
                                 allow_private=True, resolver=resolver)
        assert first.state == "pending" and "does not resolve" in (first.error or "")
        second = webhooks.deliver(runtime.session_factory, delivery_id, http,
                                  allow_private=True, resolver=resolver)
    assert (second.state, second.attempt) == ("delivered", 2)


@pytest.mark.parametrize("cert_name,delivered", [("receiver.test", True), ("other.test", False)])
async def test_https_deliveries_verify_the_callback_host_name(
        client, tenant, small_video, runtime, cert_name, delivered):
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_name).configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    receiver = Receiver(tls=server_tls)
    try:
        resolver = TableResolver({"receiver.test": [["127.0.0.1"]]})
        delivery_id = await pending_delivery(client, tenant, small_video, runtime,
                                             f"https://receiver.test:{receiver.port}/hook")
        with httpx.Client(timeout=5, verify=client_tls) as http:
            result = webhooks.deliver(runtime.session_factory, delivery_id, http,
                                      allow_private=True, resolver=resolver)
    finally:
        receiver.close()
    if delivered:
        assert (result.state, result.status_code) == ("delivered", 204)
        assert len(receiver.requests) == 1
    else:  # the certificate names another host: the connection is refused, nothing is sent
        assert result.state == "pending"
        assert "certificate" in (result.error or "").lower()
        assert receiver.requests == []
