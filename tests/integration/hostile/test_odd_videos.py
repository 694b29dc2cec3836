"""The odd but valid videos the upload takes (rate and timestamp oddities, polyglots), run
on through ingest, captioning and a question: each ends, the video ``ready`` or ``failed``
with a reason and the job in a final state, within a bounded time and no server path shown."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.hostile.conftest import assert_no_server_path
from tests.integration.hostile.specimens import Specimen
from tests.integration.hostile.stack import Rig


async def test_accepted_oddities_end_cleanly(rig: Rig, specimens: list[Specimen], tally) -> None:
    accepted: dict[str, str] = {}
    for specimen in specimens:
        if specimen.expect != "either":
            continue
        uploaded = await rig.upload(specimen.data, specimen.filename)
        if uploaded.status_code == 201:  # refusals: test_bad_input checks those
            accepted[specimen.name] = uploaded.json()["id"]
    assert len(accepted) >= 5, accepted

    async def run(video_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        video = await rig.settled(video_id)
        if video["status"] != "ready":
            return video, None
        return video, await rig.finished((await rig.ask(video_id=video_id))["id"])

    # All at once: the in-process queue runs them side by side, as workers would.
    outcomes = await asyncio.gather(*(run(video_id) for video_id in accepted.values()))
    for name, (video, job) in zip(accepted, outcomes, strict=True):
        if job is None:
            assert video["status"] == "failed" and video["error"]["message"], (name, video)
            assert_no_server_path(str(video), rig.runtime, tally)
            continue
        assert job["status"] in ("succeeded", "no_answer", "failed"), (name, job)
        assert job["status"] != "failed" or job["error"]["message"], (name, job)
        trace = await rig.trace(job["id"])
        assert_no_server_path(str(job) + str(trace), rig.runtime, tally)
