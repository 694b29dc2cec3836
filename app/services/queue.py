"""Where services hand work to the workers. Enqueue only after the commit that created the row.

Implementations: ``workers.queue.CeleryQueue`` (Redis broker) and ``InlineQueue`` below
(the embedded default: the same task functions run in this process).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol


class TaskQueue(Protocol):
    def enqueue_ingest(self, video_id: uuid.UUID) -> None: ...

    def enqueue_caption(self, video_id: uuid.UUID, node_keys: Sequence[str] | None = None) -> None:
        """Caption these nodes (None: what the video's caption mode schedules ahead)."""
        ...

    def enqueue_navigate(self, job_id: uuid.UUID) -> None: ...

    def enqueue_webhook(self, delivery_id: uuid.UUID) -> None: ...
