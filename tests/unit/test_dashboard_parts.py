"""Pure parts of the dashboard: JSON inside a script element, where the key form may send
a browser, the form token, the thumbnail sprite and its layout."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from app.api.ui_auth import csrf_token, safe_next
from app.core.tree import VideoGeometry, node_key
from app.media.ffmpeg import MediaError
from app.media.thumbnails import compose_sprite
from app.services.thumbnails import leaf_frames, sprite_layout
from app.web.pages import export_page, script_json


def test_script_json_cannot_close_its_element_and_reads_back() -> None:
    data = {"q": "</script><script>alert(1)</script>", "c": "<!-- & -->", "s": "a\u2028b\u2029",
            "n": [1, 2.5, None, True]}
    text = script_json(data)
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == data


def test_export_page_inlines_everything_and_escapes_the_data() -> None:
    page = export_page("Job: <b>", {"job": {"question": "</script>"}})
    assert "<title>Job: &lt;b&gt; · vidnav</title>" in page
    assert page.count("<script") == 2 and "</script>\"" not in page
    assert "src=" not in page.split("<script>", 1)[0] and "href=" not in page


@pytest.mark.parametrize(("target", "expected"), [
    ("/ui/jobs/123?status=running", "/ui/jobs/123?status=running"),
    ("/ui/videos", "/ui/videos"),
    ("//evil.example/ui/", "/ui/jobs"),
    ("https://evil.example/ui/", "/ui/jobs"),
    ("/v1/jobs", "/ui/jobs"),
    ("/ui\\evil", "/ui/jobs"),
    ("/ui/login?next=/ui/jobs", "/ui/jobs"),
    ("/ui/x\nSet-Cookie: a=b", "/ui/jobs"),
    ("", "/ui/jobs"),
    (None, "/ui/jobs"),
])
def test_the_key_form_only_sends_browsers_to_dashboard_pages(target: str | None,
                                                              expected: str) -> None:
    assert safe_next(target) == expected


def test_the_form_token_belongs_to_its_key() -> None:
    assert csrf_token("vn_a") == csrf_token("vn_a")
    assert csrf_token("vn_a") != csrf_token("vn_b")
    assert "vn_a" not in csrf_token("vn_a") and len(csrf_token("vn_a")) == 64


def test_sprite_tiles_in_rows_padded_with_black() -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    tiles = [np.full((6, 8, 3), c, dtype=np.uint8) for c in colours]
    sheet = np.asarray(Image.open(io.BytesIO(compose_sprite(tiles, 2, quality=95))))
    assert sheet.shape == (12, 16, 3)
    for (row, col), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [*colours, (0, 0, 0)],
                                  strict=True):
        centre = sheet[row * 6 + 3, col * 8 + 4].astype(int)
        assert np.abs(centre - colour).max() < 16, (row, col)
    assert np.asarray(Image.open(io.BytesIO(compose_sprite(tiles, 10)))).shape == (6, 24, 3)


def test_sprite_refuses_tiles_of_different_sizes() -> None:
    with pytest.raises(MediaError):
        compose_sprite([np.zeros((6, 8, 3), np.uint8), np.zeros((6, 9, 3), np.uint8)], 2)
    with pytest.raises(MediaError):
        compose_sprite([], 2)


def test_layout_maps_leaves_in_order_and_higher_nodes_to_their_middle_leaf() -> None:
    geometry = VideoGeometry(num_frames=6400, fps=10.0)  # 640 s: width 4, 64 leaves
    layout = sprite_layout(geometry, (128, 72), 16)
    leaves = geometry.nodes(3)
    assert (layout["count"], layout["columns"]) == (64, 16)
    assert [layout["nodes"][node_key(leaf)] for leaf in leaves] == list(range(64))
    # (2,) spans leaves 16..31; its middle, 240 s, starts leaf (2,3,1), tile 24.
    assert layout["nodes"]["2"] == 24
    assert layout["nodes"]["2,3"] == leaves.index((2, 3, 3))
    assert len(layout["nodes"]) == 4 + 16 + 64


def test_leaf_frames_are_inside_their_leaves_or_anchored_when_empty() -> None:
    geometry = VideoGeometry(num_frames=6400, fps=10.0)
    for leaf, frame in zip(geometry.nodes(3), leaf_frames(geometry), strict=True):
        start, stop = geometry.frame_range(leaf)
        assert start <= frame < stop
    tiny = VideoGeometry(num_frames=40, fps=10.0)  # 64 leaves, 40 frames: some are empty
    frames = leaf_frames(tiny)
    assert len(frames) == 64 and all(0 <= f < 40 for f in frames)
    empty = [leaf for leaf in tiny.nodes(3) if tiny.frame_range(leaf)[0] ==
             tiny.frame_range(leaf)[1]]
    assert empty and all(frames[tiny.nodes(3).index(leaf)] == tiny.anchor_frame(leaf)
                         for leaf in empty)
