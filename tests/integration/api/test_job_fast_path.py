"""``GET /v1/jobs/{id}`` answers alike through the fast path and through FastAPI's route.

Two apps share one runtime (Postgres, Redis): one with the fast path (the default), one
without. Each request goes to both; status, body and headers must match, and a spy beneath
the fast path records which requests it handed down to FastAPI.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from app.api.app import create_app
from app.api.fastpath import JobReadFastPath
from app.db.models import Job
from tests.integration.api.test_api_jobs import ask

# Headers whose values may differ between two requests a moment apart.
VOLATILE = {"date", "ratelimit-remaining", "ratelimit-reset", "retry-after"}


class PassedDown:
    """Wraps the layer beneath the fast path; records the paths handed to it."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def fast_path_of(app) -> JobReadFastPath:  # type: ignore[no-untyped-def]
    layer = app.middleware_stack
    while not isinstance(layer, JobReadFastPath):
        layer = layer.app
    return layer


@pytest.fixture
async def both(runtime) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, PassedDown]]:
    fast_app = create_app(runtime, auth_cache_ttl_s=0.0)
    plain_app = create_app(runtime, auth_cache_ttl_s=0.0, job_read_fast_path=False)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=fast_app),
                          base_url="http://vidnav.test") as fast,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=plain_app),
                          base_url="http://vidnav.test") as plain,
    ):
        await fast.get("/healthz")  # builds the middleware stack
        middleware = fast_path_of(fast_app)
        spy = PassedDown(middleware.app)
        middleware.app = spy
        yield fast, plain, spy
    for app in (fast_app, plain_app):
        await app.state.api.limiter.aclose()
        if app.state.api.job_reader is not None:
            await app.state.api.job_reader.aclose()


def same(a: httpx.Response, b: httpx.Response) -> None:
    assert (a.status_code, a.content) == (b.status_code, b.content)
    assert ({k: v for k, v in a.headers.items() if k not in VOLATILE}
            == {k: v for k, v in b.headers.items() if k not in VOLATILE})
    assert {k for k in a.headers if k in VOLATILE} == {k for k in b.headers if k in VOLATILE}


async def test_fast_path_answers_like_the_route(both, client, tenant, other_tenant, video,
                                                runtime):
    fast, plain, spy = both
    job = (await ask(client, tenant, video["id"])).json()
    job_id = job["id"]
    served_fast = {  # name: (method, path, headers)
        "own job": ("GET", f"/v1/jobs/{job_id}", tenant.headers),
        "upper-case id": ("GET", f"/v1/jobs/{job_id.upper()}", tenant.headers),
        "with a query": ("GET", f"/v1/jobs/{job_id}?x=1", tenant.headers),
        "another tenant's job": ("GET", f"/v1/jobs/{job_id}", other_tenant.headers),
        "no such job": ("GET", f"/v1/jobs/{uuid.uuid4()}", tenant.headers),
        "no key": ("GET", f"/v1/jobs/{job_id}", {}),
        "wrong scheme": ("GET", f"/v1/jobs/{job_id}", {"Authorization": f"Basic {tenant.key}"}),
        "unknown key": ("GET", f"/v1/jobs/{job_id}", {"Authorization": "Bearer vn_nope"}),
    }
    passed_down = {
        "id without hyphens": ("GET", f"/v1/jobs/{uuid.UUID(job_id).hex}", tenant.headers),
        "braced id": ("GET", f"/v1/jobs/{{{job_id}}}", tenant.headers),
        "not an id": ("GET", "/v1/jobs/not-a-uuid", tenant.headers),
        "id too long": ("GET", f"/v1/jobs/{job_id}0", tenant.headers),
        "trailing slash": ("GET", f"/v1/jobs/{job_id}/", tenant.headers),
        "trace": ("GET", f"/v1/jobs/{job_id}/trace", tenant.headers),
        "list": ("GET", "/v1/jobs", tenant.headers),
        "HEAD": ("HEAD", f"/v1/jobs/{job_id}", tenant.headers),
        "POST": ("POST", f"/v1/jobs/{job_id}", tenant.headers),
    }
    statuses = {}
    for name, (method, path, headers) in {**served_fast, **passed_down}.items():
        before = len(spy.paths)
        a = await fast.request(method, path, headers=headers)
        b = await plain.request(method, path, headers=headers)
        same(a, b)
        statuses[name] = a.status_code
        handed_down = len(spy.paths) > before
        assert handed_down == (name in passed_down), name
    assert statuses["own job"] == statuses["upper-case id"] == 200
    assert statuses["another tenant's job"] == statuses["no such job"] == 404
    assert statuses["no key"] == statuses["unknown key"] == 401
    assert statuses["not an id"] == 422 and statuses["id without hyphens"] == 200

    # A change to the row shows through the fast path too.
    with runtime.session_factory() as session:
        row = session.get(Job, uuid.UUID(job_id))
        row.status, row.answer = "succeeded", "red"
        session.commit()
    for _ in range(100):
        body = (await fast.get(f"/v1/jobs/{job_id}", headers=tenant.headers)).json()
        if body["status"] == "succeeded":
            break
    same(await fast.get(f"/v1/jobs/{job_id}", headers=tenant.headers),
         await plain.get(f"/v1/jobs/{job_id}", headers=tenant.headers))
    assert body["answer"] == "red"

    # Counted under the route's template.
    metrics = (await fast.get("/metrics")).text
    assert 'route="/v1/jobs/{job_id}",status="200"' in metrics
    assert 'route="/v1/jobs/{job_id}",status="404"' in metrics


async def test_fast_path_rate_limits_like_the_route(both, client, make_tenant, video):
    fast, plain, spy = both
    limited = make_tenant("limited", rate_limit_per_minute=3)
    path = f"/v1/jobs/{uuid.uuid4()}"
    statuses = [(await fast.get(path, headers=limited.headers)).status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    over = await fast.get(path, headers=limited.headers)
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"
    assert over.headers["RateLimit-Remaining"] == "0" and int(over.headers["Retry-After"]) >= 1
    again = await plain.get(path, headers=limited.headers)
    # The two answers may fall either side of a second boundary: the seconds to wait may
    # differ by one; everything else must be the same.
    waits = [r.json()["error"]["details"]["retry_after_s"] for r in (over, again)]
    assert abs(waits[0] - waits[1]) <= 1
    assert (over.status_code, _without_wait(over)) == (again.status_code, _without_wait(again))
    assert ({k: v for k, v in over.headers.items() if k not in VOLATILE | {"content-length"}}
            == {k: v for k, v in again.headers.items() if k not in VOLATILE | {"content-length"}})
    assert spy.paths == []


def _without_wait(response: httpx.Response) -> dict:
    body = response.json()
    del body["error"]["details"]["retry_after_s"]
    return body
