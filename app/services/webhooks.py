"""Job-completion webhooks: signed with the tenant's secret, one recorded attempt per call.

The body is JSON; ``X-Vidnav-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` under the
tenant's ``webhook_secret``, and ``X-Vidnav-Timestamp`` repeats the body's ``timestamp`` so a
receiver can refuse stale replays. Retrying is the caller's schedule (``retry_delay_s``).

Callback URLs must point at public addresses unless ``webhook_allow_private`` is set: a
question is refused when its URL names a loopback, private, link-local or otherwise
non-public address or ``localhost``, and a delivery is failed (not retried) when the host
resolves to one, so a tenant cannot make workers call services inside the deployment.
Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
import uuid
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


class CallbackNotPublic(InvalidInput):
    code = "callback_url_not_public"


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_callback_url(url: str, *, resolve: bool) -> None:
    """Refuse a callback URL whose host is not public: an IP literal or ``localhost`` name
    always, a DNS name's addresses when ``resolve`` (at delivery, not at request time)."""
    host = (httpx.URL(url).host or "").rstrip(".").lower()
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [host]
    elif host == "localhost" or host.endswith(".localhost") or not host:
        raise CallbackNotPublic(f"the callback URL's host {host!r} is not a public address",
                                details={"host": host})
    elif resolve:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise CallbackNotPublic(f"the callback URL's host {host!r} does not resolve: {exc}",
                                    details={"host": host}) from exc
        addresses = [str(info[4][0]) for info in infos]
    else:
        return
    blocked = sorted({a for a in addresses if not _public(a)})
    if blocked:
        raise CallbackNotPublic(
            f"the callback URL's host {host!r} is not a public address ({', '.join(blocked)})",
            details={"host": host, "addresses": blocked})


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


def deliver(
    session_factory: sessionmaker[Session], delivery_id: uuid.UUID, http_client: httpx.Client,
    *, max_attempts: int = 5, allow_private: bool = False,
) -> DeliveryResult:
    """Make one attempt at a delivery and record it; a 2xx reply marks it delivered, a
    callback host that is not public fails it at once."""
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
        if not allow_private:
            try:
                check_callback_url(delivery.url, resolve=True)
            except CallbackNotPublic as exc:
                delivery.attempt += 1
                delivery.error = str(exc)
                delivery.state = "failed"
                session.commit()
                return DeliveryResult(delivery.state, delivery.attempt, None, delivery.error)
        try:
            response = http_client.post(delivery.url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"the receiver answered HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
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
