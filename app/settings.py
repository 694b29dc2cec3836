"""The one place vidnav reads its configuration from (environment, prefix ``VIDNAV_``).

Nothing else in the code base reads ``os.environ``: build a ``Settings`` once at start-up
(``get_settings()``) and hand it down.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import InvalidInput

CaptionMode = Literal["eager", "online", "lazy"]
CAPTION_MODES: tuple[CaptionMode, ...] = get_args(CaptionMode)
Profile = Literal["cpu", "remote"]
ROLES = frozenset({"policy", "captioner", "video_qa"})
CaptionPreset = Literal["demo", "paper"]
# The authors' offline caption script (data/videocaption_generation.py + data/constant.py):
# 32 base frames with scale factor 2, 400 / 200 words, max_tokens 2048. Values set
# explicitly win over the preset's.
PAPER_PRESET: dict[str, int] = {
    "high_frames": 128, "medium_frames": 64, "low_frames": 32,
    "high_caption_words": 400, "low_caption_words": 200, "captioner_max_tokens": 2048,
}
ENV_PREFIX = "VIDNAV_"


class SettingsError(InvalidInput):
    """A setting has a value vidnav cannot run with (one line: the variable, the value,
    what is allowed)."""

    code = "invalid_setting"


def _cpu_roles(profile: str | None, policy_url: str | None, captioner_url: str | None,
               videoqa_url: str | None) -> frozenset[str]:
    if profile is not None:
        return ROLES if profile == "cpu" else frozenset()
    urls = {"policy": policy_url, "captioner": captioner_url, "video_qa": videoqa_url}
    return frozenset(role for role, url in urls.items() if not url)


class Settings(BaseSettings):
    """All of vidnav's settings; invalid values fail at start-up, not at first use."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Path.home() / ".local" / "share" / "vidnav"
    database_url: str | None = None  # unset: SQLite under data_dir (the embedded default)
    redis_url: str | None = None  # unset: in-process queue, cache and events

    # --- models: one OpenAI-compatible endpoint per role --------------------------------
    profile: Profile | None = None  # unset: "cpu" when no model URL is set, else "remote"
    policy_base_url: str | None = None
    policy_model: str = "LongVideo-R1-Qwen3"
    policy_api_key: SecretStr = SecretStr("EMPTY")
    captioner_base_url: str | None = None
    captioner_model: str = "Qwen3-VL-32B-Instruct"
    captioner_api_key: SecretStr = SecretStr("EMPTY")
    videoqa_base_url: str | None = None
    videoqa_model: str = "Qwen3-VL-32B-Instruct"
    videoqa_api_key: SecretStr = SecretStr("EMPTY")
    model_timeout_s: float = Field(default=300.0, gt=0)
    model_retries: int = Field(default=4, ge=0, le=20)
    policy_concurrency: int = Field(default=32, ge=1)
    captioner_concurrency: int = Field(default=16, ge=1)
    videoqa_concurrency: int = Field(default=8, ge=1)
    policy_temperature: float | None = Field(default=None, ge=0)
    policy_max_tokens: int | None = Field(default=None, ge=1)
    captioner_max_tokens: int = Field(default=1024, ge=1)
    policy_constrained: bool = False  # send the reply grammar as vLLM structured_outputs

    # --- the tree and the protocol (paper defaults) -------------------------------------
    segment_len_s: float = Field(default=16.0, gt=0)
    min_width: int = Field(default=4, ge=1, le=16)
    max_width: int = Field(default=8, ge=1, le=16)
    high_frames: int = Field(default=64, ge=1, le=512)
    medium_frames: int = Field(default=32, ge=1, le=512)
    low_frames: int = Field(default=16, ge=1, le=512)
    videoqa_frames: int = Field(default=16, ge=1, le=512)
    videoqa_max_side: int = Field(default=1024, ge=32)
    high_caption_words: int = Field(default=300, ge=1)
    low_caption_words: int = Field(default=200, ge=1)
    max_rounds: int = Field(default=30, ge=1, le=200)
    # "demo": the authors' online demo (cli.py: 64/32/16 frames, 300/200 words, "Frame at
    # {t}s" labels, <caption> tags stripped); "paper": their offline caption script, behind
    # the paper's table and the policy's training (see PAPER_PRESET, app.core.paper_captions).
    caption_preset: CaptionPreset = "demo"

    # --- pipeline -------------------------------------------------------------------------
    # Unset: "eager" when the captioner is the CPU one (its captions are cheap, and a
    # question then only reads stored captions), else "online".
    caption_mode: CaptionMode = Field(default=None, validate_default=True)
    transcribe: bool | None = None  # unset: on in the CPU profile, off otherwise
    max_upload_bytes: int = Field(default=8 * 1024**3, ge=1)
    max_video_duration_s: float = Field(default=6 * 3600.0, gt=0)
    max_video_pixels: int = Field(default=8192 * 8192, ge=1)
    ffmpeg_timeout_s: float = Field(default=120.0, gt=0)
    ffprobe_timeout_s: float = Field(default=30.0, gt=0)

    # --- workers (issue 5) ----------------------------------------------------------------
    celery_visibility_timeout_s: float = Field(default=3600.0, gt=0)  # redelivery after a crash
    task_max_retries: int = Field(default=5, ge=0, le=50)  # failed attempts before giving up
    task_retry_backoff_s: float = Field(default=2.0, ge=0)  # doubled per retry, capped below
    task_retry_backoff_max_s: float = Field(default=120.0, ge=0)
    navigate_wait_s: float = Field(default=2.0, gt=0)  # recheck delay while a video captions
    caption_lock_ttl_s: float = Field(default=120.0, gt=0)  # single-flight lock lifetime
    caption_wait_s: float = Field(default=900.0, gt=0)  # longest wait for another's caption
    # Recovery from Postgres (issue 13): a queued or running task holds its row for
    # lease_s (renewed while it runs); the reconciler sends work whose lease lapsed again,
    # and fails it after recover_max_attempts starts that never finished. 0 disables the loop.
    lease_s: float = Field(default=60.0, gt=0)
    reconcile_interval_s: float = Field(default=15.0, ge=0)
    recover_max_attempts: int = Field(default=5, ge=1, le=100)
    # A partial upload (or a video folder without a row) untouched this long is removed.
    upload_stale_s: float = Field(default=3600.0, gt=0)
    decode_ahead: int = Field(default=32, ge=1)  # nodes decoded ahead of the captioner
    # Full stack: how long the API, workers and `vidnav db upgrade` wait at start for
    # Postgres, Redis (and the migrated schema) before giving up.
    startup_wait_s: float = Field(default=120.0, ge=0)

    # --- API ------------------------------------------------------------------------------
    rate_limit_per_minute: int = Field(default=600, ge=1)
    upload_quota_bytes: int = Field(default=100 * 1024**3, ge=1)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    webhook_allow_private: bool = False  # callbacks to loopback/private addresses (tests, LANs)
    # Postgres only: keep job bodies in memory until their row changes (LISTEN/NOTIFY).
    job_read_cache: bool = True
    # Move everything alive after start-up out of the cyclic collector's reach: a full
    # collection then walks only what was made since, not every imported module's objects.
    gc_freeze: bool = True

    @field_validator("database_url", "redis_url", "policy_base_url", "captioner_base_url",
                     "videoqa_base_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("caption_mode", mode="before")
    @classmethod
    def _default_caption_mode(cls, value: object, info: ValidationInfo) -> object:
        if value is not None:
            return value
        data = info.data
        cpu = _cpu_roles(data.get("profile"), data.get("policy_base_url"),
                         data.get("captioner_base_url"), data.get("videoqa_base_url"))
        return "eager" if "captioner" in cpu else "online"

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("caption_preset") == "paper":
            return {**PAPER_PRESET, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_width > self.max_width:
            raise ValueError("VIDNAV_MIN_WIDTH must not exceed VIDNAV_MAX_WIDTH")
        if self.profile == "remote" and not all(
            (self.policy_base_url, self.captioner_base_url, self.videoqa_base_url)
        ):
            raise ValueError(
                "VIDNAV_PROFILE=remote needs VIDNAV_POLICY_BASE_URL, VIDNAV_CAPTIONER_BASE_URL "
                "and VIDNAV_VIDEOQA_BASE_URL"
            )
        return self

    @property
    def effective_profile(self) -> Profile:
        """The CPU profile unless model endpoints are configured."""
        if self.profile is not None:
            return self.profile
        any_url = self.policy_base_url or self.captioner_base_url or self.videoqa_base_url
        return "remote" if any_url else "cpu"

    @property
    def embedded(self) -> bool:
        """True when running without Postgres and Redis (SQLite + in-process tasks)."""
        return self.database_url is None and self.redis_url is None

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{self.data_dir / 'vidnav.db'}"

    @property
    def videos_dir(self) -> Path:
        return self.data_dir / "videos"

    @property
    def cpu_roles(self) -> frozenset[str]:
        """Model roles served by the CPU profile: all with ``profile=cpu``, none with
        ``profile=remote``, otherwise each role without its ``*_BASE_URL``."""
        return _cpu_roles(self.profile, self.policy_base_url, self.captioner_base_url,
                          self.videoqa_base_url)

    @property
    def should_transcribe(self) -> bool:
        if self.transcribe is not None:
            return self.transcribe
        # The CPU captioner and video_qa read speech only through the transcript.
        return bool(self.cpu_roles & {"captioner", "video_qa"})


def load_settings(**values: Any) -> Settings:
    """Settings from the environment (``values`` override it); a bad value raises
    ``SettingsError`` naming the variable and what is allowed, never a traceback's worth
    of pydantic output."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """One line for every problem of a settings validation: ``VIDNAV_X='value': what is
    allowed``, joined with "; "."""
    parts = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            name = ENV_PREFIX + "_".join(str(p) for p in error["loc"]).upper()
            message = f"{name}={_shown(error.get('input'))}: {message}"
        parts.append(" ".join(message.split()))
    return "; ".join(parts)


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else "unset" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment (``load_settings``)."""
    return load_settings()
