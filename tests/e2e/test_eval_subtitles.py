"""Video-MME with subtitles, in process, on the paper caption preset: the ``.srt`` beside
the video is attached before the video is prepared, the captioner (the scripted
OpenAI-compatible server, which writes what it is given) gets the paper preset's
requests with the subtitle lines in its frame labels, and the policy reads the replies
whole, ``<caption>`` tags included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.scripted_server import ScriptedServer
from tests.support.videos import make_video

pytestmark = pytest.mark.slow



def test_videomme_subtitles_reach_the_paper_captions(scripted_server: ScriptedServer,
                                                     tmp_path: Path) -> None:
    from app.bootstrap import open_runtime
    from app.db.session import session_scope
    from app.services.evaluation.local import LocalDeployment
    from app.services.evaluation.readers import read_benchmark
    from app.services.evaluation.runs import RunMeta, read_records, run_benchmark
    from app.services.subtitles import list_subtitles
    from app.settings import Settings

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copyfile(make_video(60), videos / "pw01.mp4")
    (videos / "pw01.srt").write_text(
        "1\n00:00:30,000 --> 00:00:36,000\nThe password is blueberry.\n", "utf-8")
    questions = tmp_path / "videomme.json"
    questions.write_text(json.dumps([{
        "video_id": "900", "duration": "short", "domain": "Test", "sub_category": "Test",
        "videoID": "pw01", "question_id": "900-1", "task_type": "Information Synopsis",
        "question": "What is the password?",
        "options": ["A. Raspberry.", "B. Blueberry.", "C. Strawberry.", "D. Cranberry."],
        "answer": "B"}]))
    items = read_benchmark("videomme-subs", questions, videos)
    assert items[0].subtitles == videos / "pw01.srt"
    settings = Settings(data_dir=tmp_path / "data", captioner_base_url=scripted_server.base_url,
                        captioner_model="scripted-vlm", caption_preset="paper",
                        caption_mode="online", transcribe=False)
    run = tmp_path / "run.jsonl"
    with open_runtime(settings) as runtime:
        local = LocalDeployment(runtime)
        run_benchmark(items, local, run, RunMeta(benchmark="videomme-subs",
                                                 deployment="in-process", preset="paper"))
        with session_scope(runtime.session_factory) as session:
            (video_id, _) = local.prepare(items[0])
            (subs,) = list_subtitles(session, local.tenant_id, video_id)
            assert subs.source == "upload" and len(subs.lines) == 1
    (record,) = read_records(run)
    assert record["status"] == "succeeded", record["error"]
    labels = [part["text"] for request in scripted_server.chat_requests()
              for message in request.messages if isinstance(message["content"], list)
              for part in message["content"] if part["type"] == "text"]
    assert "30.0s. Subtitle: The password is blueberry.." in labels
    assert all(label.endswith(".") for label in labels)  # "{t}s." labels, no "Frame at"
    highs = record["start"]["high_captions"]
    assert all(h["caption"].startswith("<caption>") for h in highs)  # stored whole
    assert any("blueberry" in h["caption"].lower() for h in highs)
    assert record["correct"], record["trace"]
