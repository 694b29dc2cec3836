"""The navigation policy as a chat model behind an OpenAI-compatible endpoint (LongVideo-R1)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

from app.core.ports import Message, ModelUsage, NavigationState, PolicyReply
from app.core.protocol import reply_regex
from app.models.openai_client import OpenAIChatClient
from app.settings import Settings


class ChatClient(Protocol):
    """What the policy needs of a model client (``OpenAIChatClient`` is one)."""

    async def chat(self, messages: list[Message], **extra: Any) -> tuple[str, ModelUsage]: ...


@lru_cache(maxsize=32)
def _regex(width: int) -> str:
    return reply_regex(width)


class LLMPolicy:
    """Sends the conversation as it stands and returns the model's reply unchanged.

    With ``constrained`` on, the request carries vLLM's ``structured_outputs`` regex for
    the tree's width, so the model can only write a well-formed think + tool/answer reply
    with segment ids in ``1..width``.
    """

    def __init__(self, client: ChatClient, *, constrained: bool = False) -> None:
        self.client = client
        self.constrained = constrained

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMPolicy:
        """The policy at ``VIDNAV_POLICY_BASE_URL`` (constrained per the settings)."""
        client = OpenAIChatClient.for_role(settings, "policy")
        return cls(client, constrained=settings.policy_constrained)

    async def reply(self, messages: list[Message], state: NavigationState) -> PolicyReply:
        extra: dict[str, Any] = {}
        if self.constrained:
            extra["structured_outputs"] = {"regex": _regex(state.width)}
        text, usage = await self.client.chat(messages, **extra)
        return PolicyReply(text=text, usage=usage)
