"""What each caption mode captions ahead of questions (the modes are ``settings.CaptionMode``)."""

from __future__ import annotations

from app.core.ports import NodeId
from app.core.tree import HIGH, LEVELS, VideoGeometry
from app.settings import CaptionMode

_LEVELS_AHEAD: dict[str, tuple[int, ...]] = {"eager": LEVELS, "online": (HIGH,), "lazy": ()}


def levels_ahead(mode: CaptionMode | str) -> tuple[int, ...]:
    """The levels a caption mode captions before any question: all, the high one, or none."""
    try:
        return _LEVELS_AHEAD[mode]
    except KeyError:
        raise ValueError(f"unknown caption mode {mode!r}") from None


def scheduled_nodes(geometry: VideoGeometry, mode: CaptionMode | str) -> list[NodeId]:
    """The nodes a caption mode captions ahead of questions, coarse levels first."""
    return [node for level in levels_ahead(mode) for node in geometry.iter_nodes(level)]
