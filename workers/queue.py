"""``CeleryQueue``: the ``TaskQueue`` of the full stack; sends tasks by name over Redis."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from app.settings import Settings
from workers.celery_app import TASK_QUEUES, make_celery


class CeleryQueue:
    """Enqueues the worker tasks; call only after committing the rows they read."""

    def __init__(self, settings: Settings) -> None:
        # Its own app without the task modules: an API process only sends by name.
        self.app = make_celery(settings, include_tasks=False)

    def _send(self, name: str, *args: object) -> None:
        self.app.send_task(name, args=list(args), queue=TASK_QUEUES[name])

    def enqueue_ingest(self, video_id: uuid.UUID) -> None:
        self._send("vidnav.ingest", str(video_id))

    def enqueue_caption(self, video_id: uuid.UUID, node_keys: Sequence[str] | None = None) -> None:
        self._send("vidnav.caption", str(video_id), None if node_keys is None else list(node_keys))

    def enqueue_navigate(self, job_id: uuid.UUID) -> None:
        self._send("vidnav.navigate", str(job_id))

    def enqueue_webhook(self, delivery_id: uuid.UUID) -> None:
        self._send("vidnav.webhook", str(delivery_id))

    def close(self) -> None:
        self.app.close()
