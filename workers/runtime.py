"""The worker process's one ``Runtime``, built on first use (after any fork) by the
composition root from the settings the worker app was started with."""

from __future__ import annotations

import threading

from app.bootstrap import build_runtime
from app.services.runtime import Runtime
from app.settings import get_settings

_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = build_runtime(get_settings())
    return _runtime


def close_runtime() -> None:
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()
