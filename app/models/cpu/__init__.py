"""The CPU model profile: small models shipped inside Python packages, run offline.

- captioner: speech transcript / subtitles, RapidOCR on-screen text, visual measurements;
- policy: a retrieval navigator (all-MiniLM-L6-v2) that speaks the LongVideo-R1 protocol;
- video_qa: the leaf's speech and on-screen text ranked against the query.

Models load lazily, once per process, from package files; nothing touches the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.models.cpu.captioner import CPUCaptioner
from app.models.cpu.policy import DEFAULT_MAX_STEPS, RetrievalPolicy
from app.models.cpu.video_qa import CPUFrameQA

if TYPE_CHECKING:
    from app.models.factory import ModelRoles
    from app.settings import Settings

__all__ = ["CPUCaptioner", "CPUFrameQA", "RetrievalPolicy", "build_cpu_models", "cpu_captioner",
           "cpu_frame_qa", "cpu_policy"]


def cpu_policy(settings: Settings) -> RetrievalPolicy:
    """The retrieval navigator; its own round budget never exceeds ``max_rounds``."""
    return RetrievalPolicy(max_steps=min(settings.max_rounds, DEFAULT_MAX_STEPS))


def cpu_captioner(settings: Settings) -> CPUCaptioner:
    """The CPU captioner; the frame counts it is given are part of its cache keys."""
    return CPUCaptioner(
        frame_counts=(settings.high_frames, settings.medium_frames, settings.low_frames)
    )


def cpu_frame_qa(settings: Settings) -> CPUFrameQA:
    """The CPU video_qa (transcript and on-screen text of a leaf)."""
    return CPUFrameQA()


def build_cpu_models(settings: Settings) -> ModelRoles:
    """All three roles on the CPU."""
    from app.models.factory import ModelRoles

    return ModelRoles(policy=cpu_policy(settings), captioner=cpu_captioner(settings),
                      frame_qa=cpu_frame_qa(settings))
