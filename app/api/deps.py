"""Request dependencies: the runtime, the calling tenant (auth + rate limit), the unit of work."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session

from app.db.repositories import AsyncJobReader
from app.services.auth import Authenticator, TenantContext, parse_bearer
from app.services.ratelimit import RateLimited, RateLimiter, UploadReservations
from app.services.runtime import Runtime

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Declared for OpenAPI only (the "Authorize" button); parsing is ours, for our error shape.
bearer_scheme = HTTPBearer(auto_error=False, description="A tenant API key: `Bearer vn_...`")


@dataclass
class ApiState:
    """What the routes need beyond the runtime, built once per app."""

    runtime: Runtime
    authenticator: Authenticator
    limiter: RateLimiter
    uploads: UploadReservations
    sse_heartbeat_s: float
    sse_poll_s: float
    registry: CollectorRegistry  # what /metrics exposes
    job_reader: AsyncJobReader | None = None  # Postgres only; else reads go to a thread


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def api_state_dependency(request: Request) -> ApiState:
    # async: a plain function dependency would cost a thread-pool hop per request.
    return api_state(request)


async def authenticate_request(request: Request) -> TenantContext:
    """The tenant behind the request's Bearer key; counts the request against its rate
    limit. Runs on the event loop: a recently seen key and the leased counter need no I/O."""
    return await authenticate_key(request, parse_bearer(request.headers.get("authorization")))


async def authenticate_key(request: Request, key: str) -> TenantContext:
    """The tenant owning ``key`` (however the request carried it), rate limit counted."""
    state = api_state(request)
    tenant = await state.authenticator.aauthenticate(key)
    limit = tenant.rate_limit_per_minute or state.runtime.settings.rate_limit_per_minute
    decision = await state.limiter.ahit(tenant.tenant_id, limit)
    request.state.rate_limit_headers = decision.headers()
    if not decision.allowed:
        raise RateLimited(decision)
    return tenant


async def current_tenant(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> TenantContext:
    """``authenticate_request`` as a dependency (declaring the Bearer scheme in OpenAPI)."""
    return await authenticate_request(request)


# For routes that call ``authenticate_request`` themselves (the polled hot path, where each
# dependency FastAPI resolves costs measurable CPU): the same OpenAPI security entry.
BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


async def read_only(state: ApiState, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` with a session in a worker thread, for reads with nothing to commit."""

    def run() -> T:
        with state.runtime.session_factory() as session:
            return fn(session)

    return await run_in_threadpool(run)


class UnitOfWork:
    """One request's transaction: a session plus work to run after commit or on rollback."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._after_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the transaction has committed (enqueueing, deleting files)."""
        self._after_commit.append(fn)

    def on_rollback(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` if the transaction rolls back (removing files written for it)."""
        self._on_rollback.append(fn)

    def _run(self, callbacks: list[Callable[[], None]], when: str) -> None:
        for fn in callbacks:
            try:
                fn()
            except Exception:
                # The transaction's outcome is settled; a failed follow-up must not undo it.
                logger.exception("%s callback failed", when)


def unit_of_work(request: Request) -> Iterator[UnitOfWork]:
    """Commit when the route returns, roll back when it raises; then run the callbacks."""
    uow = UnitOfWork(api_state(request).runtime.session_factory())
    try:
        yield uow
        uow.session.commit()
    except BaseException:
        uow.session.rollback()
        uow.session.close()
        uow._run(uow._on_rollback, "rollback")
        raise
    uow.session.close()
    uow._run(uow._after_commit, "post-commit")


Tenant = Annotated[TenantContext, Depends(current_tenant)]
# scope="function": commit before the response is sent, so a client never sees an
# uncommitted row and a failed commit becomes an error response.
UoW = Annotated[UnitOfWork, Depends(unit_of_work, scope="function")]
State = Annotated[ApiState, Depends(api_state_dependency)]
