"""The caption batch (what a caption task runs): decoded in groups, frames encoded ahead,
every node captioned once with exactly the frames the one-node path would send."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bootstrap import build_runtime
from app.db import migrate
from app.models.images import to_jpeg_data_uri
from app.services.captions import caption_batch, load_video_context, scheduled_nodes
from app.services.captions.batch import DECODERS, decode_groups
from app.services.captions.context import read_node_frames
from app.services.ingest import ingest_video
from app.services.runtime import Runtime
from app.settings import Settings
from tests.integration.workers.conftest import make_video
from tests.support.factories import add_uploaded_video
from tests.support.scripted_server import ScriptedServer


@pytest.fixture
def runtime(tmp_path: Path, scripted_server: ScriptedServer) -> Iterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path / "data", profile="remote", transcribe=False,
        policy_base_url=scripted_server.base_url, captioner_base_url=scripted_server.base_url,
        videoqa_base_url=scripted_server.base_url, model_retries=0, captioner_concurrency=4,
        high_frames=8, medium_frames=8, low_frames=4,
    )
    migrate.upgrade(settings)
    built = build_runtime(settings)
    try:
        yield built
    finally:
        built.close()


def _image_urls(request_messages: list[dict]) -> tuple[str, ...]:
    user = request_messages[-1]["content"]
    return tuple(p["image_url"]["url"] for p in user if p["type"] == "image_url")


def ingested_lazy_video(runtime: Runtime, tenant_name: str):  # type: ignore[no-untyped-def]
    """A 2-minute video ingested lazily (no captions scheduled), and every node of its tree."""
    video_id = add_uploaded_video(runtime.session_factory, make_video(120), "lazy",
                                  tenant_name=tenant_name)
    ingest_video(runtime, video_id)
    ctx = load_video_context(runtime, video_id)
    return ctx, scheduled_nodes(ctx.geometry, "eager")


def test_batch_sends_every_node_its_own_frames_once(
    runtime: Runtime, scripted_server: ScriptedServer
) -> None:
    # Lazy: ingest probes the video and schedules no captions; the batch below does them.
    ctx, nodes = ingested_lazy_video(runtime, "batch")

    report = runtime.run(caption_batch(runtime, ctx, nodes))

    assert (report.generated, report.served) == (len(nodes), 0)
    sent = [_image_urls(r.messages) for r in scripted_server.chat_requests()]
    expected = []
    for node in nodes:
        frames = read_node_frames(ctx, node)
        side = ctx.geometry.max_side(len(node))
        expected.append(tuple(to_jpeg_data_uri(image, side) for image in frames.images))
    assert collections.Counter(sent) == collections.Counter(expected)
    # A second batch finds every row and calls nothing.
    again = runtime.run(caption_batch(runtime, ctx, nodes))
    assert (again.generated, again.served) == (0, len(nodes))
    assert len(scripted_server.chat_requests()) == len(nodes)


def test_decode_groups_start_at_one_slot_load_and_double_per_decoder(
    runtime: Runtime,
) -> None:
    ctx, nodes = ingested_lazy_video(runtime, "groups")

    groups = list(decode_groups(ctx, nodes, first=4))

    assert [n for g in groups for n in g] == nodes  # all of them, in order, once
    sizes = [len(g) for g in groups]
    assert sizes[:DECODERS] == [4] * DECODERS
    assert sizes[DECODERS:2 * DECODERS] == [8] * DECODERS
    assert sizes[2 * DECODERS:-1] == [16] * len(sizes[2 * DECODERS:-1])
