"""Builds the three model roles (policy, captioner, frame_qa) for a deployment profile."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from app.core.ports import Policy
from app.models.base import Captioner, FrameQA
from app.settings import Settings


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


def build_models(settings: Settings) -> ModelRoles:
    """The model roles for ``settings``: local CPU models, OpenAI-compatible endpoints, or
    a mix (each role runs on the CPU unless its ``VIDNAV_<ROLE>_BASE_URL`` is set)."""
    cpu = settings.cpu_roles
    if not cpu:
        return _build_remote_models(settings)
    from app.models import cpu as cpu_models

    if cpu == {"policy", "captioner", "video_qa"}:
        return cpu_models.build_cpu_models(settings)
    from app.models.openai_vision import OpenAICaptioner, OpenAIFrameQA
    from app.models.policy import LLMPolicy

    return ModelRoles(
        policy=cpu_models.cpu_policy(settings) if "policy" in cpu
        else LLMPolicy.from_settings(settings),
        captioner=cpu_models.cpu_captioner(settings) if "captioner" in cpu
        else OpenAICaptioner.from_settings(settings),
        frame_qa=cpu_models.cpu_frame_qa(settings) if "video_qa" in cpu
        else OpenAIFrameQA.from_settings(settings),
    )


def _build_remote_models(settings: Settings) -> ModelRoles:
    from app.errors import InvalidInput
    from app.models.openai_vision import OpenAICaptioner, OpenAIFrameQA
    from app.models.policy import LLMPolicy

    missing = [
        name for name, url in (
            ("VIDNAV_POLICY_BASE_URL", settings.policy_base_url),
            ("VIDNAV_CAPTIONER_BASE_URL", settings.captioner_base_url),
            ("VIDNAV_VIDEOQA_BASE_URL", settings.videoqa_base_url),
        ) if not url
    ]
    if missing:
        raise InvalidInput(
            "the remote profile needs an endpoint per model role; set " + ", ".join(missing),
            code="models_not_configured",
        )
    return ModelRoles(
        policy=LLMPolicy.from_settings(settings),
        captioner=OpenAICaptioner.from_settings(settings),
        frame_qa=OpenAIFrameQA.from_settings(settings),
    )
