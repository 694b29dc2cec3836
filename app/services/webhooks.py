"""Job-completion webhooks: signed with the tenant's secret, one recorded attempt per call.

The body is JSON; ``X-Vidnav-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` under the
tenant's ``webhook_secret``, and ``X-Vidnav-Timestamp`` repeats the body's ``timestamp`` so a
receiver can refuse stale replays. Retrying is the caller's schedule (``retry_delay_s``).

Callback URLs must point at public addresses unless ``webhook_allow_private`` is set: a
question is refused when its URL names a loopback, private, link-local or otherwise
non-public address or ``localhost``, and a delivery is failed (not retried) when the host
resolves to one, so a tenant cannot make workers call services inside the deployment.
Redirects are not followed. A delivery resolves the host once, checks every address, and
connects to a checked address (the Host header and the TLS server name stay the URL's), so
a name that answers differently a moment later (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.models import Job, Tenant, WebhookDelivery
from app.errors import InvalidInput, NotFound

SIGNATURE_HEADER = "X-Vidnav-Signature"
TIMESTAMP_HEADER = "X-Vidnav-Timestamp"
EVENT_JOB_FINISHED = "job.finished"
PINNED_ADDRESSES_TRIED = 3  # a delivery tries the name's first addresses in order

# ``socket.getaddrinfo``'s shape: (host, port, proto=...) -> [(family, type, proto, name, sockaddr)]
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class CallbackNotPublic(InvalidInput):
    code = "callback_url_not_public"


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _host(url: httpx.URL) -> str:
    """The URL's host in ASCII (IDNA), lower case, without a trailing dot."""
    return url.raw_host.decode("ascii").rstrip(".").lower()


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _refuse_blocked(host: str, addresses: Sequence[str]) -> None:
    blocked = sorted({a for a in addresses if not _public(a)})
    if blocked:
        raise CallbackNotPublic(
            f"the callback URL's host {host!r} is not a public address ({', '.join(blocked)})",
            details={"host": host, "addresses": blocked})


def _refuse_local_names(host: str) -> None:
    if host == "localhost" or host.endswith(".localhost") or not host:
        raise CallbackNotPublic(f"the callback URL's host {host!r} is not a public address",
                                details={"host": host})


def resolve_host(host: str, port: int, resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """The name's TCP addresses in the resolver's order, each once (``OSError`` when none)."""
    addresses: list[str] = []
    for info in resolver(host, port, proto=socket.IPPROTO_TCP):
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise OSError(f"{host!r} has no addresses")
    return addresses


def check_callback_url(url: str, *, resolve: bool,
                       resolver: Resolver = socket.getaddrinfo) -> None:
    """Refuse a callback URL whose host is not public: an IP literal or ``localhost`` name
    always, a DNS name's addresses when ``resolve`` (at delivery, not at request time)."""
    host = _host(httpx.URL(url))
    if resolve:
        try:
            pinned_requests(url, allow_private=False, resolver=resolver)
        except OSError as exc:
            raise CallbackNotPublic(f"the callback URL's host {host!r} does not resolve: {exc}",
                                    details={"host": host}) from exc
    elif _literal(host):
        _refuse_blocked(host, [host])
    else:
        _refuse_local_names(host)


@dataclass(frozen=True, slots=True)
class PinnedRequest:
    """Where one attempt connects: ``url`` names an address, not the host."""

    url: httpx.URL
    headers: dict[str, str]  # Host: the callback URL's own host (and port)
    extensions: dict[str, Any]  # sni_hostname: the name TLS sends and verifies


def pinned_requests(url: str, *, allow_private: bool,
                    resolver: Resolver = socket.getaddrinfo) -> list[PinnedRequest]:
    """The requests one delivery attempt may make to ``url``, one per checked address (the
    first few, in the resolver's order), from a single resolution of its host.

    Raises ``CallbackNotPublic`` for a host that is, or resolves to, a non-public address
    (unless ``allow_private``), and ``OSError`` when the name does not resolve."""
    parsed = httpx.URL(url)
    host = _host(parsed)
    if _literal(host):
        if not allow_private:
            _refuse_blocked(host, [host])
        return [PinnedRequest(parsed, {}, {})]
    if not allow_private:
        _refuse_local_names(host)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = resolve_host(host, port, resolver)
    if not allow_private:
        _refuse_blocked(host, addresses)
    headers = {"Host": parsed.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return [PinnedRequest(parsed.copy_with(host=address.split("%", 1)[0]), headers, extensions)
            for address in addresses[:PINNED_ADDRESSES_TRIED]]


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def create_delivery(session: Session, job: Job) -> WebhookDelivery | None:
    """Record a pending delivery for a finished job with a callback URL (None without one)."""
    if not job.callback_url:
        return None
    delivery = WebhookDelivery(job_id=job.id, url=job.callback_url, event=EVENT_JOB_FINISHED)
    session.add(delivery)
    session.flush()
    return delivery


def job_event_body(job: Job, delivery: WebhookDelivery, timestamp: int) -> dict[str, Any]:
    return {
        "event": delivery.event, "delivery_id": str(delivery.id), "timestamp": timestamp,
        "job": {
            "id": str(job.id), "video_id": str(job.video_id), "status": job.status,
            "question": job.question, "options": job.options, "answer": job.answer,
            "error_code": job.error_code, "error": job.error, "rounds": job.progress_round,
            "created_at": job.created_at.isoformat(),
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        },
    }


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    state: str  # delivered | pending (try again later) | failed (gave up)
    attempt: int
    status_code: int | None
    error: str | None

    @property
    def retry(self) -> bool:
        return self.state == "pending"


def retry_delay_s(attempt: int, *, base_s: float = 2.0, cap_s: float = 300.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, capped."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt - 1)))


def _post(http_client: httpx.Client, targets: list[PinnedRequest], body: bytes,
          headers: dict[str, str]) -> tuple[int | None, str | None]:
    """POST ``body`` to the first address that takes the connection: its status code (or
    None) and the error to record (None for a 2xx reply)."""
    status_code: int | None = None
    error: str | None = None
    for target in targets:
        try:
            response = http_client.post(target.url, content=body,
                                        headers={**headers, **target.headers},
                                        extensions=target.extensions)
        except httpx.ConnectError as exc:  # this address refused: try the next
            error = f"{type(exc).__name__}: {exc}"[:2000]
            continue
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            break
        status_code = response.status_code
        error = (None if 200 <= status_code < 300
                 else f"the receiver answered HTTP {status_code}")
        break
    return status_code, error


def deliver(
    session_factory: sessionmaker[Session], delivery_id: uuid.UUID, http_client: httpx.Client,
    *, max_attempts: int = 5, allow_private: bool = False,
    resolver: Resolver = socket.getaddrinfo,
) -> DeliveryResult:
    """Make one attempt at a delivery and record it; a 2xx reply marks it delivered, a
    callback host that is not public fails it at once. The host is resolved once, with
    ``resolver``, and only the addresses so checked are connected to."""
    with session_factory() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            raise NotFound("no such webhook delivery", code="webhook_delivery_not_found")
        if delivery.state != "pending":
            return DeliveryResult(delivery.state, delivery.attempt, delivery.status_code,
                                  delivery.error)
        job = session.get(Job, delivery.job_id)
        tenant = session.get(Tenant, job.tenant_id) if job is not None else None
        if job is None or tenant is None:
            raise NotFound("the delivery's job is gone", code="job_not_found")
        timestamp = int(time.time())
        body = json.dumps(job_event_body(job, delivery, timestamp), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
            "User-Agent": "vidnav-webhooks",
        }
        if tenant.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(tenant.webhook_secret, body)
        status_code: int | None = None
        error: str | None = None
        try:
            targets = pinned_requests(delivery.url, allow_private=allow_private,
                                      resolver=resolver)
        except CallbackNotPublic as exc:
            delivery.attempt += 1
            delivery.error = str(exc)
            delivery.state = "failed"
            session.commit()
            return DeliveryResult(delivery.state, delivery.attempt, None, delivery.error)
        except OSError as exc:  # the name does not resolve (now): try again later
            targets = []
            error = f"the callback URL's host does not resolve: {exc}"[:2000]
        if targets:
            status_code, error = _post(http_client, targets, body, headers)
        delivery.attempt += 1
        delivery.status_code = status_code
        delivery.error = error
        if error is None:
            delivery.state = "delivered"
            delivery.delivered_at = utcnow()
        elif delivery.attempt >= max_attempts:
            delivery.state = "failed"
        session.commit()
        return DeliveryResult(delivery.state, delivery.attempt, status_code, error)
