"""Live job events (each trace round as it happens, then the result) for SSE streams.

Redis pub/sub in the full stack; an in-process bus in the embedded default.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol


class EventBus(Protocol):
    def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None:
        """Publish one event; events carry ``type`` ("round" | "status" | "result") and data."""
        ...

    def subscribe(
        self, job_id: uuid.UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        """Subscribe before reading persisted rounds, so nothing falls in between."""
        ...
