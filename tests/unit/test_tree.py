"""Tree geometry: widths, nested frame ranges, sampling and labels (spec section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.tree import (
    InvalidGeometry,
    InvalidNode,
    TreeConfig,
    VideoGeometry,
    max_side,
    node_key,
    parse_node_key,
    width_for_duration,
)
from app.errors import InvalidInput


@st.composite
def videos(draw: st.DrawFn, max_frames: int | None = None) -> VideoGeometry:
    """Videos from 1 second to 24 hours at common and odd frame rates."""
    fps = draw(st.sampled_from([1.0, 5.0, 23.976, 24.0, 25.0, 29.97, 30.0, 59.94, 60.0, 7.3]))
    duration = draw(st.floats(min_value=1.0, max_value=24 * 3600.0))
    frames = max(1, int(duration * fps)) + draw(st.integers(0, 3))
    if max_frames is not None:
        frames = min(frames, max_frames)
    min_width = draw(st.integers(1, 6))
    max_width = draw(st.integers(min_width, 9))
    config = TreeConfig(
        segment_len_s=draw(st.sampled_from([16.0, 4.0, 60.0])),
        min_width=min_width,
        max_width=max_width,
        high_frames=draw(st.sampled_from([64, 63, 7, 1])),
        medium_frames=draw(st.sampled_from([32, 31, 2])),
        low_frames=draw(st.sampled_from([16, 15, 1])),
    )
    return VideoGeometry(frames, fps, config)


def all_nodes(geometry: VideoGeometry) -> list[tuple[int, ...]]:
    return [node for level in (1, 2, 3) for node in geometry.nodes(level)]


def test_width_follows_the_cube_root_rule_with_paper_bounds() -> None:
    config = TreeConfig()
    # duration / 16 = 8, 64, 512 -> cube roots 2 (clamped to 4), 4, 8; 1024 -> 10.08 -> 8
    assert width_for_duration(128.0, config) == 4
    assert width_for_duration(1024.0, config) == 4
    assert width_for_duration(3375 * 16.0, config) == 8  # 15**3 segments -> 15, clamped
    assert width_for_duration(125 * 16.0, config) == 5
    assert width_for_duration(216 * 16.0, config) == 6
    assert VideoGeometry(3600 * 30, 30.0).width == 6  # one hour: 225 segments -> 6.08
    assert VideoGeometry(18000, 30.0).width == 4  # ten minutes: 37.5 segments -> 3.35 -> 4
    assert width_for_duration(1000.0, TreeConfig(min_width=3)) == 4
    assert width_for_duration(300.0, TreeConfig(min_width=3)) == 3


@given(videos())
@settings(max_examples=150, deadline=None)
def test_width_stays_in_bounds_and_matches_the_formula(geometry: VideoGeometry) -> None:
    config = geometry.config
    assert config.min_width <= geometry.width <= config.max_width
    expected = round((geometry.num_frames / geometry.fps / config.segment_len_s) ** (1 / 3))
    assert geometry.width == max(config.min_width, min(config.max_width, expected))
    assert geometry.duration == geometry.num_frames / geometry.fps
    assert geometry.duration_label == round(geometry.duration, 1)


@given(videos())
@settings(max_examples=60, deadline=None)
def test_children_partition_parents_and_stay_inside_the_video(geometry: VideoGeometry) -> None:
    high = [geometry.frame_range(node) for node in geometry.nodes(1)]
    assert high[0][0] == 0 and high[-1][1] == geometry.num_frames
    for node in [(), *geometry.nodes(1), *geometry.nodes(2)]:
        parent = geometry.frame_range(node) if node else (0, geometry.num_frames)
        kids = [geometry.frame_range(child) for child in
                (geometry.children(node) if node else geometry.nodes(1))]
        assert len(kids) == geometry.width
        assert kids[0][0] == parent[0] and kids[-1][1] == parent[1]
        for (_, stop), (start, _) in zip(kids, kids[1:], strict=False):
            assert stop == start
        sizes = [b - a for a, b in kids]
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)  # array_split: extra frames go first
    for node in all_nodes(geometry):
        start, stop = geometry.frame_range(node)
        assert 0 <= start <= stop <= geometry.num_frames
        lo, hi = geometry.seconds(node)
        assert 0.0 <= lo <= hi <= geometry.duration


@given(videos(max_frames=4000))
@settings(max_examples=60, deadline=None)
def test_frame_ranges_equal_nested_numpy_array_split(geometry: VideoGeometry) -> None:
    w = geometry.width
    for h, high in enumerate(np.array_split(np.arange(geometry.num_frames), w), start=1):
        for m, medium in enumerate(np.array_split(high, w), start=1):
            for low_id, low in enumerate(np.array_split(medium, w), start=1):
                start, stop = geometry.frame_range((h, m, low_id))
                assert list(range(start, stop)) == low.tolist()
            start, stop = geometry.frame_range((h, m))
            assert list(range(start, stop)) == medium.tolist()


@given(videos(), st.data())
@settings(max_examples=100, deadline=None)
def test_sampled_frames_follow_linspace_inside_the_node(
    geometry: VideoGeometry, data: st.DataObject
) -> None:
    level = data.draw(st.sampled_from([1, 2, 3]))
    node = data.draw(st.sampled_from(geometry.nodes(level)))
    n = data.draw(st.one_of(st.none(), st.integers(1, 70)))
    frames = geometry.sample_frames(node, n)
    expected_n = geometry.config.frames_for_level(level) if n is None else n
    assert len(frames) == expected_n
    assert all(0 <= f < geometry.num_frames for f in frames)
    assert frames == sorted(frames)
    start, stop = geometry.frame_range(node)
    if stop > start:
        assert frames == np.linspace(start, stop - 1, expected_n, dtype=int).tolist()
        assert frames[0] == start
        assert frames[-1] == (stop - 1 if expected_n > 1 else start)
    else:
        # An empty node shows the last frame before it, which its nearest non-empty
        # ancestor owns.
        assert set(frames) == {start - 1}
        ancestor = node[:-1]
        while ancestor and geometry.frame_range(ancestor)[1] <= geometry.frame_range(ancestor)[0]:
            ancestor = ancestor[:-1]
        a_start, a_stop = geometry.frame_range(ancestor) if ancestor else (0, geometry.num_frames)
        assert a_start <= start - 1 < a_stop
    first, last = geometry.span_labels(node)
    assert first <= last <= geometry.duration_label + 0.1
    assert (first, last) == (
        round(geometry.sample_frames(node)[0] / geometry.fps, 1),
        round(geometry.sample_frames(node)[-1] / geometry.fps, 1),
    )


@given(videos(), st.data())
@settings(max_examples=100, deadline=None)
def test_node_at_finds_the_node_that_holds_a_time(
    geometry: VideoGeometry, data: st.DataObject
) -> None:
    node = data.draw(st.sampled_from(geometry.nodes(3)))
    start, stop = geometry.frame_range(node)
    if stop > start:
        frame = data.draw(st.integers(start, stop - 1))
        # The middle of the frame's display interval maps back to the frame.
        assert geometry.node_at((frame + 0.5) / geometry.fps, 3) == node
        assert geometry.node_at((frame + 0.5) / geometry.fps, 1) == node[:1]
    assert geometry.node_at(-5.0, 3) == (1, 1, 1)
    last_leaf = geometry.node_at(geometry.duration + 100, 3)
    assert geometry.frame_range(last_leaf)[1] == geometry.num_frames


def test_short_video_has_empty_leaves_that_sample_the_previous_frame() -> None:
    geometry = VideoGeometry(30, 30.0)  # 1 s, width 4: 64 leaves for 30 frames
    assert geometry.width == 4
    assert geometry.frame_range((1,)) == (0, 8)
    assert geometry.frame_range((1, 4)) == (6, 8)
    assert geometry.frame_range((1, 4, 2)) == (7, 8)
    assert geometry.frame_range((1, 4, 3)) == (8, 8)
    assert geometry.sample_frames((1, 4, 3)) == [7] * 16
    assert geometry.videoqa_frames((1, 4, 4)) == [7] * 16
    assert geometry.seconds((1, 4, 3)) == (8 / 30, 8 / 30)
    one_frame = VideoGeometry(1, 25.0)
    assert one_frame.frame_range((4, 4, 4)) == (1, 1)
    assert one_frame.sample_frames((4, 4, 4), 3) == [0, 0, 0]
    assert one_frame.span_labels((2,)) == (0.0, 0.0)


def test_ten_minute_video_labels() -> None:
    geometry = VideoGeometry(18000, 30.0)
    assert geometry.frame_range((2,)) == (4500, 9000)
    assert geometry.frame_range((4, 4, 4)) == (17719, 18000)
    assert geometry.span_labels((1,)) == (0.0, 150.0)  # frame 4499 at 149.97 s
    assert geometry.span_labels((1, 2)) == (37.5, 75.0)
    assert geometry.frame_times((1, 1, 1), 3) == [0.0, 4.7, 9.4]  # frames 0, 140, 281
    assert geometry.time_label(4499) == 150.0
    assert geometry.seconds((1, 2)) == (37.5, 75.0)


def test_nodes_are_listed_in_time_order() -> None:
    geometry = VideoGeometry(18000, 30.0)
    assert geometry.nodes(1) == [(1,), (2,), (3,), (4,)]
    assert geometry.nodes(2)[:5] == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1)]
    leaves = geometry.nodes(3)
    assert len(leaves) == 64 and leaves[-1] == (4, 4, 4)
    starts = [geometry.frame_range(leaf)[0] for leaf in leaves]
    assert starts == sorted(starts)
    assert geometry.children((2, 3)) == [(2, 3, 1), (2, 3, 2), (2, 3, 3), (2, 3, 4)]
    assert geometry.children((2, 3, 1)) == []


def test_max_side_per_level_matches_the_paper() -> None:
    assert [max_side(level) for level in (1, 2, 3)] == [256, 362, 512]
    assert VideoGeometry(100, 25.0).videoqa_max_side == 1024
    with pytest.raises(InvalidNode):
        max_side(4)


def test_node_keys_round_trip() -> None:
    for node in [(1,), (3, 8), (8, 1, 5)]:
        assert parse_node_key(node_key(node)) == node
    assert node_key((2, 3, 4)) == "2,3,4"
    for bad in ["", "0,1", "1,2,3,4", "a", "1,,2", "-1", "1.5"]:
        with pytest.raises(InvalidNode):
            parse_node_key(bad)


@pytest.mark.parametrize(
    "node", [(), (0,), (5,), (1, 2, 3, 4), (1, 5), ("1",), (True,), (1.0,), "1", None]
)
def test_bad_nodes_raise_a_typed_error(node: object) -> None:
    geometry = VideoGeometry(18000, 30.0)
    with pytest.raises(InvalidNode) as info:
        geometry.frame_range(node)  # type: ignore[arg-type]
    assert info.value.code == "invalid_node"
    assert isinstance(info.value, InvalidInput)


def test_video_qa_needs_a_leaf() -> None:
    with pytest.raises(InvalidNode):
        VideoGeometry(18000, 30.0).videoqa_frames((1, 2))


@pytest.mark.parametrize(
    ("num_frames", "fps"),
    [(0, 30.0), (-3, 30.0), (10, 0.0), (10, -1.0), (10, math.nan), (10, math.inf),
     (True, 30.0), (10.5, 30.0), (10, "30")],
)
def test_bad_measurements_raise_a_typed_error(num_frames: object, fps: object) -> None:
    with pytest.raises(InvalidGeometry):
        VideoGeometry(num_frames, fps)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"min_width": 5, "max_width": 4}, {"min_width": 0}, {"segment_len_s": 0.0},
     {"segment_len_s": math.inf}, {"high_frames": 0}, {"low_frames": True}],
)
def test_bad_tree_config_raises_a_typed_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidGeometry):
        TreeConfig(**kwargs)  # type: ignore[arg-type]


def test_numpy_numbers_are_accepted_as_plain_ones() -> None:
    geometry = VideoGeometry(np.int64(18000), np.float64(30.0))  # type: ignore[arg-type]
    assert geometry.num_frames == 18000 and type(geometry.num_frames) is int
    assert geometry.fps == 30.0 and type(geometry.fps) is float
    node = geometry.validate((np.int64(1), np.int32(2)))  # type: ignore[arg-type]
    assert node == (1, 2) and all(type(part) is int for part in node)
    config = TreeConfig(min_width=np.int64(3), segment_len_s=np.float32(8))  # type: ignore[arg-type]
    assert type(config.min_width) is int and type(config.segment_len_s) is float


def test_bad_sample_count_raises_a_typed_error() -> None:
    with pytest.raises(InvalidGeometry):
        VideoGeometry(100, 25.0).sample_frames((1,), 0)
