"""Property-based API tests from the OpenAPI schema: no 5xx, and every response (status,
content type, headers, body) matches what the schema declares.

Each generated case runs as generated (random ids: mostly 404s) and again aimed at a real
video and job of the tenant, so the happy paths and conflicts are fuzzed too.
"""

from __future__ import annotations

import uuid

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.db.models import Job, TraceStep, utcnow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 25


def test_api_conforms_to_its_schema(app, runtime, make_tenant, small_video):  # type: ignore[no-untyped-def]
    # A limit no run reaches: a 429 here would hide every other response.
    tenant = make_tenant("fuzz", rate_limit_per_minute=1_000_000)
    with TestClient(app) as http:
        video = http.post("/v1/videos", headers=tenant.headers,
                          files={"file": ("c.mp4", small_video, "video/mp4")}).json()
        job = http.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                        json={"question": "What is shown?"}).json()
    # A finished job with a round: its event stream ends, so it can be fuzzed too.
    with runtime.session_factory() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        row.status, row.answer, row.started_at, row.finished_at = (
            "succeeded", "a clock", utcnow(), utcnow())
        session.add(TraceStep(job_id=row.id, round_index=0, kind="answer", payload={"index": 0}))
        session.commit()
    real = {"video_id": video["id"], "job_id": job["id"]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    statuses: set[int] = set()

    def fuzz(operation):  # type: ignore[no-untyped-def]
        aimable = operation.method.upper() != "DELETE"

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):  # type: ignore[no-untyped-def]
            statuses.add(case.call_and_validate(headers=tenant.headers, checks=CHECKS)
                         .status_code)
            params = case.path_parameters or {}
            if params and aimable:
                case.path_parameters = {k: real.get(k, v) for k, v in params.items()}
                statuses.add(case.call_and_validate(headers=tenant.headers, checks=CHECKS)
                             .status_code)

        check()

    for operation in operations:
        fuzz(operation)
    # The fuzzing reached successes, client errors and conflicts, not only one kind.
    assert statuses >= {200, 202, 400, 404, 409, 422}
