"""orchestration: what the navigation loop itself costs per round, with models that cost nothing.

Two set-ups, measured side by side in one run, on the same 30-round navigation (29 tool calls
then an answer, width 4):

(a) in-process: ``navigate`` over fake ports that answer instantly;
(b) over HTTP: the policy is ``LLMPolicy`` + ``OpenAIChatClient`` talking to the scripted
    OpenAI-compatible server on loopback with zero latency (caption and video_qa ports stay
    in-process, so the difference is the policy's HTTP path: JSON of the growing
    conversation, the connection, the server's parsing).

Overhead per round = wall time / rounds, since the models take no time. It is printed in ms
and as a share of a 200 ms model call (a fast policy step on a GPU); the target is < 2 % in
process. Results replace the "orchestration" section of bench/RESULTS.md.

Run: ``.venv/bin/python -m bench.orchestration [--runs N]`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.core.navigator import Budgets, navigate
from app.core.ports import (
    CaptionResult,
    Message,
    ModelUsage,
    NavigationState,
    NodeId,
    PolicyReply,
    VideoQAResult,
)
from app.core.tree import HIGH, LOW, MEDIUM, VideoGeometry
from app.models.openai_client import OpenAIChatClient
from app.models.policy import LLMPolicy
from bench.results import finish
from tests.support.scripted_server import ScriptedServer

NAME = "orchestration"
MODEL_CALL_MS = 200.0
TARGET_SHARE = 0.02
ROUNDS = 30
QUESTION, OPTIONS = "What colour is the door?", ("red", "blue", "green", "white")


def navigation_script(geometry: VideoGeometry, rounds: int = ROUNDS) -> list[str]:
    """``rounds - 1`` distinct tool calls (captions of every medium node, then leaves with a
    video_qa after each), then an answer."""
    calls: list[str] = []
    for node in geometry.nodes(MEDIUM):
        calls.append(f"get_caption(({node[0]},{node[1]}))")
    for leaf in geometry.nodes(LOW):
        calls.append(f"get_caption(({leaf[0]},{leaf[1]},{leaf[2]}))")
        calls.append(f'video_qa(({leaf[0]},{leaf[1]},{leaf[2]}), "What colour is the door?")')
    replies = [
        f"<think>Step {i}: the captions so far do not settle it.</think>\n<tool>{call}</tool>"
        for i, call in enumerate(calls[: rounds - 1])
    ]
    return [*replies, "<think>The door is red.</think>\n<answer>A</answer>"]


class InstantCaptions:
    """Captions precomputed per node, served at no cost (as if every one were cached)."""

    def __init__(self, geometry: VideoGeometry) -> None:
        self.results: dict[NodeId, CaptionResult] = {}
        for level in (HIGH, MEDIUM, LOW):
            for node in geometry.nodes(level):
                first, last = geometry.span_labels(node)
                text = f"Node {node} shows a person near a door between {first}s and {last}s."
                self.results[node] = CaptionResult(node, text * 6, (first, last), cached=True)

    async def get_caption(self, node: NodeId) -> CaptionResult:
        return self.results[node]


class InstantVideoQA:
    async def ask(self, node: NodeId, query: str) -> VideoQAResult:
        return VideoQAResult(node, query, "The door is red.", "<answer>The door is red.</answer>",
                             (0.0,), ModelUsage())


class ReplayPolicy:
    """Replies from a script by round index, at no cost."""

    def __init__(self, script: Sequence[str]) -> None:
        self.script = script

    async def reply(self, messages: list[Message], state: NavigationState) -> PolicyReply:
        return PolicyReply(self.script[state.round_index])


def _replay_handler(script: Sequence[str]) -> Any:
    """Server-side policy: the reply for the round given by the assistant turns so far."""
    def handler(body: dict[str, Any]) -> str:
        turns = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        return script[turns]
    return handler


async def _time_navigations(geometry: VideoGeometry, policy: Any, runs: int) -> list[float]:
    """Seconds per round of ``runs`` navigations (after one warm-up)."""
    captions, video_qa = InstantCaptions(geometry), InstantVideoQA()
    per_round: list[float] = []
    for i in range(runs + 1):
        gc.collect()
        began = time.perf_counter()
        trace = await navigate(question=QUESTION, options=OPTIONS, geometry=geometry,
                               policy=policy, captions=captions, video_qa=video_qa,
                               budgets=Budgets(max_rounds=ROUNDS))
        elapsed = time.perf_counter() - began
        if trace.outcome != "answered" or len(trace.rounds) != ROUNDS:
            raise RuntimeError(f"the benchmark navigation went wrong: {trace.outcome}, "
                               f"{len(trace.rounds)} rounds")
        if i:
            per_round.append(elapsed / ROUNDS)
    return per_round


async def measure(runs_in_process: int, runs_http: int) -> dict[str, Any]:
    geometry = VideoGeometry(3000, 25.0)
    script = navigation_script(geometry)
    in_process = await _time_navigations(geometry, ReplayPolicy(script), runs_in_process)
    with ScriptedServer(latency_s=0.0) as server:
        server.set_handler(_replay_handler(script))
        async with OpenAIChatClient(role="policy", base_url=server.base_url, model="bench",
                                    retries=0) as client:
            over_http = await _time_navigations(geometry, LLMPolicy(client), runs_http)
            policy_calls = server.calls()
            server.set_handler(lambda body: "ok")
            bare = await _time_bare_calls(client, 10 * runs_http)
    return {"width": geometry.width, "in_process": in_process, "over_http": over_http,
            "bare_http": bare, "policy_calls": policy_calls}


async def _time_bare_calls(client: OpenAIChatClient, calls: int) -> list[float]:
    """Seconds per one-message chat call: the loopback HTTP floor on this machine."""
    messages = [{"role": "user", "content": "ok?"}]
    await client.chat(messages)
    seconds = []
    for _ in range(calls):
        began = time.perf_counter()
        await client.chat(messages)
        seconds.append(time.perf_counter() - began)
    return seconds


def report(result: dict[str, Any]) -> str:
    """The markdown section for bench/RESULTS.md (also printed)."""
    a_ms = statistics.median(result["in_process"]) * 1000
    b_ms = statistics.median(result["over_http"]) * 1000
    bare_ms = statistics.median(result["bare_http"]) * 1000
    a_share, b_share = a_ms / MODEL_CALL_MS, b_ms / MODEL_CALL_MS
    verdict = "met" if a_share < TARGET_SHARE else "NOT met"
    return "\n".join([
        f"## {NAME}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}; a {ROUNDS}-round navigation (width {result['width']}, "
        f"29 tool calls then an answer), models answering instantly; median of "
        f"{len(result['in_process'])} (a) and {len(result['over_http'])} (b) runs. "
        "Command: `.venv/bin/python -m bench.orchestration`.",
        "",
        "| set-up | overhead per round | share of a 200 ms model call |",
        "| --- | --- | --- |",
        f"| (a) in-process, fake ports | {a_ms:.3f} ms | {a_share:.3%} |",
        f"| (b) LLMPolicy over loopback HTTP, scripted server at 0 ms | {b_ms:.3f} ms "
        f"| {b_share:.3%} |",
        f"| (c) one bare 1-message chat call, same client and server | {bare_ms:.3f} ms "
        f"| {bare_ms / MODEL_CALL_MS:.3%} |",
        "",
        f"(b) / (a) = {b_ms / a_ms:.1f}x. Target < {TARGET_SHARE:.0%} per round in-process: "
        f"{verdict}. (b) counts the server's own request handling too "
        f"({result['policy_calls']} policy calls served); (c) is the loopback HTTP floor "
        f"on this machine, so (b) - (c) = {b_ms - bare_ms:.3f} ms is what sending the "
        f"growing conversation adds. Load average at the end: {_load()}.",
        "",
    ])


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3]) + \
            f" on {os.cpu_count()} CPUs"
    except OSError:
        return "unknown"



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="in-process navigations")
    parser.add_argument("--http-runs", type=int, default=10, help="navigations over HTTP")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    section = report(asyncio.run(measure(args.runs, args.http_runs)))
    finish(NAME, section, write=not args.no_write)


if __name__ == "__main__":
    main()
