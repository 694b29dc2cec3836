"""Captions of tree nodes, by responsibility:

- ``modes``: what each caption mode captions ahead of questions;
- ``context``: one video as captioning sees it (``VideoContext``), read from its rows;
- ``storage``: caption rows (read, written in batches), the video's progress and failure;
- ``obtain``: one caption, from cache, database or the captioner, generated exactly once;
- ``sources``: the navigation loop's ``CaptionSource`` and ``VideoQA`` for one video;
- ``batch``: the batch scheduler captioning many nodes at once;
- ``task``: the caption task (``caption_nodes``).

The names other layers use are importable from the package itself.
"""

from app.services.captions.batch import BatchReport, caption_batch
from app.services.captions.context import VideoContext, load_video_context, probe_from_dict
from app.services.captions.modes import levels_ahead, scheduled_nodes
from app.services.captions.obtain import CaptionerFailed, obtain_caption
from app.services.captions.sources import CaptionService, LeafVideoQA
from app.services.captions.storage import fail_video, update_progress
from app.services.captions.task import caption_nodes

__all__ = [
    "BatchReport", "CaptionService", "CaptionerFailed", "LeafVideoQA", "VideoContext",
    "caption_batch", "caption_nodes", "fail_video", "levels_ahead", "load_video_context",
    "obtain_caption", "probe_from_dict", "scheduled_nodes", "update_progress",
]
