"""The odd but valid videos the upload takes (rate and timestamp oddities, polyglots), run
on through ingest, captioning and a question: each ends, the video ``ready`` or ``failed``
with a reason and the job in a final state, within a bounded time and no server path shown."""

from __future__ import annotations

from tests.integration.hostile.conftest import assert_no_server_path
from tests.integration.hostile.specimens import Specimen
from tests.integration.hostile.stack import Rig


async def test_accepted_oddities_end_cleanly(rig: Rig, specimens: list[Specimen], tally) -> None:
    ran = []
    for specimen in specimens:
        if specimen.expect != "either":
            continue
        uploaded = await rig.upload(specimen.data, specimen.filename)
        if uploaded.status_code != 201:
            continue  # refused at the door: test_bad_input checks those refusals
        video = await rig.settled(uploaded.json()["id"])
        outcome = video["status"]
        if video["status"] == "ready":
            job = await rig.finished((await rig.ask(video_id=video["id"]))["id"])
            trace = await rig.trace(job["id"])
            assert job["status"] in ("succeeded", "no_answer", "failed"), job
            assert job["status"] != "failed" or job["error"]["message"], job
            assert_no_server_path(str(job) + str(trace), rig.runtime, tally)
            outcome = f"ready, job {job['status']}"
        else:
            assert video["error"]["message"], video
            assert_no_server_path(str(video), rig.runtime, tally)
        ran.append(f"{specimen.name}: {outcome}")
    assert len(ran) >= 5, ran
