"""Which model serves each role: the CPU profile unless the role's endpoint is set."""

from __future__ import annotations

import pytest

from app.models.cpu.captioner import CPUCaptioner
from app.models.cpu.policy import RetrievalPolicy
from app.models.cpu.video_qa import CPUFrameQA
from app.models.factory import build_models
from app.models.openai_vision import OpenAICaptioner, OpenAIFrameQA
from app.models.policy import LLMPolicy
from app.settings import Settings


@pytest.fixture(autouse=True)
def _no_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PROFILE", "POLICY_BASE_URL", "CAPTIONER_BASE_URL", "VIDEOQA_BASE_URL",
                 "TRANSCRIBE"):
        monkeypatch.delenv(f"VIDNAV_{name}", raising=False)


async def test_no_urls_is_all_cpu_and_transcribes() -> None:
    settings = Settings(_env_file=None)
    roles = build_models(settings)
    assert isinstance(roles.policy, RetrievalPolicy)
    assert isinstance(roles.captioner, CPUCaptioner)
    assert isinstance(roles.frame_qa, CPUFrameQA)
    assert settings.should_transcribe
    await roles.aclose()


async def test_a_remote_captioner_beside_the_cpu_policy() -> None:
    settings = Settings(_env_file=None, captioner_base_url="http://127.0.0.1:9/v1")
    roles = build_models(settings)
    assert isinstance(roles.captioner, OpenAICaptioner)
    assert isinstance(roles.policy, RetrievalPolicy)
    assert isinstance(roles.frame_qa, CPUFrameQA)
    assert settings.cpu_roles == {"policy", "video_qa"}
    assert settings.should_transcribe  # the CPU video_qa reads speech from the transcript
    await roles.aclose()


async def test_all_urls_is_remote_and_profile_cpu_overrides_them() -> None:
    urls = {"policy_base_url": "http://127.0.0.1:9/v1",
            "captioner_base_url": "http://127.0.0.1:9/v1",
            "videoqa_base_url": "http://127.0.0.1:9/v1"}
    remote = Settings(_env_file=None, **urls)
    roles = build_models(remote)
    assert isinstance(roles.policy, LLMPolicy)
    assert isinstance(roles.frame_qa, OpenAIFrameQA)
    assert remote.cpu_roles == frozenset() and not remote.should_transcribe
    await roles.aclose()
    forced = Settings(_env_file=None, profile="cpu", **urls)
    assert isinstance(build_models(forced).policy, RetrievalPolicy)


def test_remote_profile_without_every_url_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match="VIDNAV_PROFILE=remote"):
        Settings(_env_file=None, profile="remote", policy_base_url="http://127.0.0.1:9/v1")

