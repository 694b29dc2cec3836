"""A ``TaskQueue`` that records what a process enqueues and runs nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence


class RecordingQueue:
    """Records each enqueue as ``(task, id)``; nothing runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, uuid.UUID]] = []

    def enqueue_ingest(self, video_id: uuid.UUID) -> None:
        self.calls.append(("ingest", video_id))

    def enqueue_caption(self, video_id: uuid.UUID, node_keys: Sequence[str] | None = None) -> None:
        self.calls.append(("caption", video_id))

    def enqueue_navigate(self, job_id: uuid.UUID) -> None:
        self.calls.append(("navigate", job_id))

    def enqueue_webhook(self, delivery_id: uuid.UUID) -> None:
        self.calls.append(("webhook", delivery_id))

    def close(self) -> None:
        return None
