"""Service rules that need no I/O: signatures, cursors, rate windows, bearer parsing, errors."""

from __future__ import annotations

import typing
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from app.api.errors import STATUS_BY_KIND
from app.errors import ErrorKind, InvalidInput
from app.services import webhooks
from app.services.auth import Unauthorized, parse_bearer
from app.services.jobs import QuestionInput, decode_cursor, encode_cursor
from app.services.ratelimit import RateLimiter


def test_webhook_signature_binds_secret_and_body() -> None:
    header = webhooks.sign("s3cret", b'{"a":1}')
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert webhooks.verify("s3cret", b'{"a":1}', header)
    assert not webhooks.verify("other", b'{"a":1}', header)
    assert not webhooks.verify("s3cret", b'{"a":2}', header)
    assert not webhooks.verify("s3cret", b'{"a":1}', None)


def test_retry_delays_grow_then_cap() -> None:
    delays = [webhooks.retry_delay_s(n) for n in range(1, 12)]
    assert delays == sorted(delays) and delays[0] == 2.0 and delays[-1] == 300.0


def test_cursor_round_trip_and_rejects() -> None:
    job = SimpleNamespace(created_at=datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
                          id=uuid.uuid4())
    assert decode_cursor(encode_cursor(job)) == (job.created_at, job.id)  # type: ignore[arg-type]
    naive = SimpleNamespace(created_at=datetime(2026, 1, 2), id=uuid.uuid4())
    assert decode_cursor(encode_cursor(naive))[0].tzinfo is not None  # type: ignore[arg-type]
    for bad in ("garbage", "", "!!!", "MjAyNnxub3QtYS11dWlk"):
        with pytest.raises(InvalidInput) as info:
            decode_cursor(bad)
        assert info.value.code == "invalid_cursor"


def test_in_memory_rate_window() -> None:
    limiter = RateLimiter(None)
    tenant, other = uuid.uuid4(), uuid.uuid4()
    decisions = [limiter.hit(tenant, 2) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [d.remaining for d in decisions] == [1, 0, 0]
    assert "Retry-After" not in decisions[0].headers()
    assert decisions[2].headers()["Retry-After"] == str(decisions[2].reset_s)
    assert 1 <= decisions[2].reset_s <= 60
    assert limiter.hit(other, 2).allowed


def test_bearer_parsing() -> None:
    assert parse_bearer("Bearer vn_abc") == "vn_abc"
    assert parse_bearer("bearer   vn_abc ") == "vn_abc"
    for header, code in ((None, "missing_api_key"), ("", "missing_api_key"),
                         ("Basic x", "invalid_authorization"), ("Bearer", "invalid_authorization"),
                         ("Bearer   ", "invalid_authorization")):
        with pytest.raises(Unauthorized) as info:
            parse_bearer(header)
        assert info.value.code == code


def test_every_error_kind_has_a_status() -> None:
    assert set(STATUS_BY_KIND) == set(typing.get_args(ErrorKind))


def test_request_hash_tells_requests_apart() -> None:
    video = uuid.uuid4()
    five = {"max_rounds": 5}
    base = QuestionInput("Why?", ("a", "b"), five, None)
    same = QuestionInput("Why?", ("a", "b"), {"max_rounds": 5}, None)
    assert base.request_hash(video) == same.request_hash(video)
    for other in (QuestionInput("Why not?", ("a", "b"), five, None),
                  QuestionInput("Why?", ("b", "a"), five, None),
                  QuestionInput("Why?", None, five, None),
                  QuestionInput("Why?", ("a", "b"), {"max_rounds": 6}, None),
                  QuestionInput("Why?", ("a", "b"), {**five, "max_video_qa_calls": 1}, None),
                  QuestionInput("Why?", ("a", "b"), five, "http://x/")):
        assert other.request_hash(video) != base.request_hash(video)
    assert base.request_hash(uuid.uuid4()) != base.request_hash(video)
