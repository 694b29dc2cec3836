"""Replies a broken or hostile model can send, read by the protocol: the same tags the
reference regex finds, in time linear in the reply (no I/O)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.protocol import ToolCallError, extract_tag, parse_reply, parse_tool_call

TAGS = ("think", "tool", "answer", "caption")
# Fragments that make tags, near-tags and nesting likely in generated text.
FRAGMENTS = st.sampled_from(["<think>", "</think>", "<tool>", "</tool>", "<answer>",
                             "</answer>", "<caption>", "</caption>", "<", ">", "</", "think",
                             " ", "\n", "a", "é", "<thi", "nk>", "<<think>>"])


def reference(text: str, tag: str) -> str | None:
    """The regex the protocol's tag reading must agree with."""
    match = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return match.group(1).strip() if match else None


@given(st.lists(FRAGMENTS, max_size=40).map("".join), st.sampled_from(TAGS))
@settings(max_examples=400, deadline=None, database=None)
def test_tags_are_read_as_the_reference_regex_reads_them(text: str, tag: str) -> None:
    assert extract_tag(text, tag) == reference(text, tag)


@pytest.mark.timeout(30)
def test_endless_and_repeated_think_tags_are_read_in_linear_time() -> None:
    """A policy stuck repeating ``<think>`` (a real failure of small models) used to cost the
    regex quadratic time: 112 KB took 18 s on the worker's event loop, a megabyte hours."""
    for reply in ("<think>" * 200_000, "<think>" + "hmm " * 500_000,
                  "<think>x</think>" + "<tool>" * 200_000, "<answer>" * 200_000 + "</answer>"):
        parsed = parse_reply(reply)
        assert parsed.tool is None or parsed.tool == ""
    assert parse_reply("<answer>" * 200_000 + "</answer>").answer == "<answer>" * 199_999


@pytest.mark.parametrize("call", [
    "get_caption(__import__('os').system('touch /tmp/pwned'))",
    "video_qa((1,1,1), open('/etc/passwd').read())",
    "get_caption((1, 1) if True else 0)",
    "get_caption(" + "(" * 500 + ")" * 500 + ")",
    "get_caption((1, " + "9" * 4000 + "))",
    "get_caption((1, 1)" + " " * 5000 + ")",
    "video_qa((1,1,1), 'x' * 10**9)",
    "get_caption((-1, 2))", "get_caption((0, 1))", "get_caption((True, 1))",
    "get_caption((1.0, 2))", "get_caption((1, 2, 3, 4))", "get_caption([1])",
    "video_qa((1,1), 'q')", "video_qa((1,1,1), '')", "video_qa((1,1,1), b'bytes')",
    "rm -rf /", "get_caption", "",
])
def test_code_like_huge_and_wrong_tool_calls_are_refused(call: str) -> None:
    with pytest.raises(ToolCallError) as refused:
        parse_tool_call(call, 4)
    assert refused.value.code in ("unparseable_tool_call", "bad_arguments", "node_out_of_range",
                                  "unknown_tool")
