"""Builds the three model roles (policy, captioner, frame_qa) for a deployment profile: the
one factory, for the CPU profile, OpenAI-compatible endpoints, or a mix of the two."""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.core.ports import Policy
from app.models.base import Captioner, FrameQA
from app.settings import Settings

if TYPE_CHECKING:
    from app.models.cpu.captioner import CPUCaptioner
    from app.models.cpu.policy import RetrievalPolicy
    from app.models.cpu.video_qa import CPUFrameQA


@dataclass(slots=True)
class ModelRoles:
    """The models one process talks to, built once and shared by every task it runs."""

    policy: Policy
    captioner: Captioner
    frame_qa: FrameQA

    async def aclose(self) -> None:
        """Close the roles' connection pools (each once, as roles may share a client)."""
        seen: set[int] = set()
        for role in (self.policy, self.captioner, self.frame_qa):
            for target in (role, getattr(role, "client", None)):
                if target is None or id(target) in seen:
                    continue
                seen.add(id(target))
                close: Any = getattr(target, "aclose", None)
                if close is not None and inspect.iscoroutinefunction(close):
                    await close()


class LazyModels:
    """The model roles of ``settings``, built on first use: an API process of the full
    stack never calls a model, so it never pays for building them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._roles: ModelRoles | None = None
        self._lock = threading.Lock()

    def get(self) -> ModelRoles:
        if self._roles is None:
            with self._lock:
                if self._roles is None:
                    self._roles = build_models(self._settings)
        return self._roles

    async def aclose(self) -> None:
        """Close the roles if they were built."""
        if self._roles is not None:
            await self._roles.aclose()


def build_models(settings: Settings) -> ModelRoles:
    """The model roles for ``settings``: each role runs on the CPU unless its
    ``VIDNAV_<ROLE>_BASE_URL`` is set (``Settings.cpu_roles``; the settings refuse the
    remote profile without all three URLs)."""
    from app.models.openai_vision import OpenAICaptioner, OpenAIFrameQA
    from app.models.policy import LLMPolicy

    cpu = settings.cpu_roles
    return ModelRoles(
        policy=cpu_policy(settings) if "policy" in cpu else LLMPolicy.from_settings(settings),
        captioner=cpu_captioner(settings) if "captioner" in cpu
        else OpenAICaptioner.from_settings(settings),
        frame_qa=cpu_frame_qa(settings) if "video_qa" in cpu
        else OpenAIFrameQA.from_settings(settings),
    )


def cpu_policy(settings: Settings) -> RetrievalPolicy:
    """The retrieval navigator; its own round budget never exceeds ``max_rounds``."""
    from app.models.cpu.policy import DEFAULT_MAX_STEPS, RetrievalPolicy

    return RetrievalPolicy(max_steps=min(settings.max_rounds, DEFAULT_MAX_STEPS))


def cpu_captioner(settings: Settings) -> CPUCaptioner:
    """The CPU captioner; the frame counts it is given are part of its cache keys."""
    from app.models.cpu.captioner import CPUCaptioner

    return CPUCaptioner(
        frame_counts=(settings.high_frames, settings.medium_frames, settings.low_frames)
    )


def cpu_frame_qa(settings: Settings) -> CPUFrameQA:
    """The CPU video_qa (transcript and on-screen text of a leaf)."""
    from app.models.cpu.video_qa import CPUFrameQA

    return CPUFrameQA()
