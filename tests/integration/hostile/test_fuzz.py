"""A bounded stateful fuzz of the endpoints that take strangers' bytes: uploads, subtitle
files and questions, interleaved with deletes (hypothesis' rule-based state machine).

Every answer is a success or a 4xx in the error shape that names no server path, and after
every step the rows, stored files and upload reservations are exactly those of the
videos, subtitles and jobs the service said it created, and no others.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from tests.integration.hostile.conftest import Leftovers, assert_no_server_path

STEPS = 12
EXAMPLES = 10
BOUNDARY = "fuzz-boundary"

# --- what strangers send ---------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["clip.mp4", "../../etc/passwd", "a\x00b.mkv", "%s%n.avi", "", ".", "..",
                     "x" * 600, "con.mp4", "clip.MP4 ", "\u202egpj.mp4", "😀.webm"]),
    st.text(max_size=40),
)
SEPARATORS = st.sampled_from(["\n\n", "\r\n\r\n", "\n", "\n \n", "\r\r"])


def _stamp(parts: tuple[int, int, int, int], sep: str) -> str:
    h, m, s, ms = parts
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _hmsm(ms: int) -> tuple[int, int, int, int]:
    return ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000


# Text any subtitle or question may hold (no backslash: backslash-N breaks a subtitle line).
PLAIN_TEXT = st.text(alphabet=st.characters(categories=("L", "N", "Zs", "Po"),
                                            exclude_characters="\\"),
                     min_size=1, max_size=120).filter(lambda t: t.strip() != "")
GOOD_STAMPS = st.builds(_stamp, st.tuples(st.integers(0, 2), st.integers(0, 59),
                                          st.integers(0, 59), st.integers(0, 999)),
                        st.sampled_from([",", "."]))
BAD_STAMPS = st.builds(_stamp, st.tuples(st.integers(0, 120), st.integers(0, 75),
                                         st.integers(0, 75), st.integers(0, 1200)),
                       st.sampled_from([",", ".", ":"]))
CUE_TEXT = st.text(max_size=60) | st.sampled_from(["<i>hi</i>", "&amp;", "{\\an8}top", "a\x00b"])
GOOD_CUES = st.builds(lambda n, a, b, text: f"{n}\n{a} --> {b}\n{text or 'x'}",
                      st.integers(1, 10**6), GOOD_STAMPS, GOOD_STAMPS, CUE_TEXT)
BAD_CUES = st.builds(lambda n, a, arrow, b, text: f"{n}\n{a} {arrow} {b}\n{text}",
                     st.integers(-1, 10**6), BAD_STAMPS,
                     st.sampled_from(["-->", "->", "-- >", "-->-->"]), BAD_STAMPS, CUE_TEXT)
SUBTITLE_FILES = st.one_of(
    # name, bytes: mostly well-formed files (their cues may still be refused), some garbage
    st.builds(lambda cues, sep: ("a.srt", sep.join(cues).encode("utf-8", "surrogatepass")),
              st.lists(GOOD_CUES | BAD_CUES, max_size=12), SEPARATORS),
    st.builds(lambda head, cues, sep: ("a.vtt", (head + sep.join(cues)).encode(
        "utf-8", "surrogatepass")),
              st.sampled_from(["WEBVTT\n\n", "WEBVTT - x\n\nNOTE y\n\n", "\ufeffWEBVTT\n\n", ""]),
              st.lists(GOOD_CUES | BAD_CUES, max_size=12), SEPARATORS),
    st.tuples(st.sampled_from(["a.srt", "a.vtt", "a.ass", "noext", "a.SRT"]) | NAMES,
              st.binary(max_size=2000)),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
QUESTIONS = st.one_of(
    st.fixed_dictionaries(
        {"question": st.sampled_from(["What happens?", "Who? " * 9, "¿Qué?"])
         | st.text(max_size=200)},
        optional={
            "options": st.lists(st.sampled_from(["red", "A. blue", "(C) x"])
                                | st.text(max_size=30), max_size=30) | JSON_VALUES,
            "budgets": st.dictionaries(
                st.sampled_from(["max_rounds", "max_video_qa_calls", "max_captions_generated",
                                 "x"]), st.integers(-3, 10**7) | st.none() | st.text(max_size=3),
                max_size=3),
            "callback_url": st.sampled_from(["https://hooks.example.com/x", "http://127.0.0.1/",
                                             "file:///etc/passwd", "gopher://x", ""]),
        },
    ),
    JSON_VALUES,
)


def multipart(fields: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode(
            "utf-8", "surrogatepass") + data + b"\r\n")
    return out + f"--{BOUNDARY}--\r\n".encode()


def mutate(data: bytes, cuts: list[tuple[int, int]]) -> bytes:
    """Overwrite bytes at fractions of the length (a damaged file, a damaged body)."""
    out = bytearray(data)
    for where, value in cuts:
        if out:
            out[where % len(out)] = value
    return bytes(out)


def _json_body(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def test_upload_subtitles_and_questions_fuzzed(app, runtime, make_tenant, small_video,
                                               other_video, redis_client, tally) -> None:
    tenant = make_tenant("fuzz", rate_limit_per_minute=1_000_000)
    leftovers = Leftovers(runtime, redis_client)
    baseline = leftovers.footprint()
    clips = [small_video, other_video]
    seen: dict[str, set[int]] = {"upload": set(), "subtitles": set(), "ask": set(), "delete": set()}

    class Strangers(RuleBasedStateMachine):
        videos = Bundle("videos")

        def __init__(self) -> None:
            super().__init__()
            self.http = TestClient(app, raise_server_exceptions=True)
            self.model: dict[str, dict[str, int]] = {}  # video id -> subtitles, jobs

        def teardown(self) -> None:
            for video_id in list(self.model):
                self.http.delete(f"/v1/videos/{video_id}", headers=tenant.headers)
            self.http.close()
            assert leftovers.footprint() == baseline

        def send(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
            response = self.http.request(method, url, **kwargs)
            seen[what].add(response.status_code)
            tally.add("fuzz_requests")
            tally.add("server_errors", int(response.status_code >= 500))
            assert response.status_code < 500, (url, response.status_code, response.text[:300])
            assert_no_server_path(response.text, runtime, tally)
            if response.status_code >= 400:
                error = response.json()["error"]
                assert set(error) == {"code", "message", "details"} and error["message"]
            return response

        # --- rules ----------------------------------------------------------------------

        @initialize(target=videos)
        def first_video(self) -> Any:
            """Every run starts with a video, a well-formed subtitle file and a question
            about it, so the rules that need a video are drawn from the first step on and
            each endpoint's success side is reached whatever the draws (a short run could
            otherwise draw no well-formed question at all)."""
            first = self.upload(clip=0, tail=b"", name="first.mp4", damage=[],
                                mode=None, framing="plain")
            (video_id,) = first.values
            self.add_good_subtitles(video_id, [(1, 2, "Hello there")], vtt=False)
            self.ask_well_formed(video_id, "What is said first?", None)
            return first

        @rule(target=videos, clip=st.sampled_from([0, 1]), tail=st.binary(max_size=64),
              name=NAMES, damage=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                          max_size=3),
              mode=st.none() | st.sampled_from(["eager", "lazy", "x", ""]),
              framing=st.sampled_from(["plain"] * 4 + ["truncated", "garbage-after", "no-type"]))
        def upload(self, clip: int, tail: bytes, name: str, damage: list[tuple[int, int]],
                   mode: str | None, framing: str) -> Any:
            # A real clip plus a tail is a new video (new bytes); damage may break it.
            data = mutate(clips[clip] + tail, damage)
            fields: list[tuple[str, str | None, bytes]] = []
            if mode is not None:
                fields.append(("caption_mode", None, mode.encode()))
            fields.append(("file", name, data))
            body = multipart(fields)
            headers = {**tenant.headers,
                       "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            if framing == "truncated":
                body = body[: len(body) * 2 // 3]
            elif framing == "garbage-after":
                body += os.urandom(50)
            elif framing == "no-type":
                headers["Content-Type"] = "application/octet-stream"
            response = self.send("upload", "POST", "/v1/videos", headers=headers, content=body)
            plain_name = name.isprintable() and not set(name) & set('"\\;')
            if framing == "plain" and not tail and not damage and mode != "x" and plain_name:
                assert response.status_code in (200, 201), response.text  # a real video
            if response.status_code == 201:
                video_id = response.json()["id"]
                assert video_id not in self.model
                self.model[video_id] = {"subtitles": 0, "jobs": 0}
                return multiple(video_id)
            if response.status_code == 200:  # the same bytes again: the video already held
                assert response.json()["id"] in self.model
            return multiple()

        @rule(video=videos, file=SUBTITLE_FILES,
              fmt=st.none() | st.sampled_from(["srt", "vtt", "webvtt", "SRT", "txt"]),
              language=st.none() | st.sampled_from(["en", "pt-BR", "x" * 30, "<b>", ""]))
        def add_subtitles(self, video: str, file: tuple[str, bytes], fmt: str | None,
                          language: str | None) -> None:
            form = {k: v for k, v in (("format", fmt), ("language", language)) if v is not None}
            response = self.send("subtitles", "POST", f"/v1/videos/{video}/subtitles",
                                 headers=tenant.headers, files={"file": file}, data=form or None)
            if response.status_code == 201:
                self.model[video]["subtitles"] += 1

        @rule(video=videos, cues=st.lists(st.tuples(st.integers(1, 3000), st.integers(1, 3000),
                                                    PLAIN_TEXT), min_size=1, max_size=20),
              vtt=st.booleans())
        def add_good_subtitles(self, video: str, cues: list[tuple[int, int, str]],
                               vtt: bool) -> None:
            """A well-formed file (cues one after another) is always taken."""
            at, blocks = 0, []
            for gap, length, text in cues:
                start, at = at + gap, at + gap + length
                blocks.append(f"{_stamp(_hmsm(start), '.' if vtt else ',')} --> "
                              f"{_stamp(_hmsm(at), '.' if vtt else ',')}\n{text}")
            data = (("WEBVTT\n\n" if vtt else "") + "\n\n".join(blocks)).encode()
            response = self.send("subtitles", "POST", f"/v1/videos/{video}/subtitles",
                                 headers=tenant.headers,
                                 files={"file": ("a.vtt" if vtt else "a.srt", data)})
            assert response.status_code == 201, response.text
            self.model[video]["subtitles"] += 1

        @rule(video=videos, question=PLAIN_TEXT,
              options=st.none() | st.lists(PLAIN_TEXT, min_size=2, max_size=5))
        def ask_well_formed(self, video: str, question: str, options: list[str] | None) -> None:
            """A well-formed question about an existing video is always queued."""
            body = {"question": question} if options is None else {"question": question,
                                                                    "options": options}
            response = self.send("ask", "POST", f"/v1/videos/{video}/questions",
                                 headers=tenant.headers, json=body)
            assert response.status_code == 202, response.text
            self.model[video]["jobs"] += 1

        @rule(video=videos | st.builds(lambda: str(uuid.uuid4())), body=QUESTIONS,
              raw=st.none() | st.binary(max_size=200),
              key=st.none() | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                                      min_size=1, max_size=8))
        def ask(self, video: str, body: Any, raw: bytes | None, key: str | None) -> None:
            headers = {**tenant.headers, "Content-Type": "application/json"}
            if key is not None:
                headers["Idempotency-Key"] = key
            content = raw if raw is not None else _json_body(body)
            response = self.send("ask", "POST", f"/v1/videos/{video}/questions", headers=headers,
                                 content=content)
            if response.status_code == 202:
                self.model[video]["jobs"] += 1
            else:
                assert response.status_code in (200, 400, 404, 409, 413, 422), response.text

        @rule(video=consumes(videos))
        def delete(self, video: str) -> None:
            assert video in self.model  # each video enters the bundle once, at its 201
            response = self.send("delete", "DELETE", f"/v1/videos/{video}", headers=tenant.headers)
            assert response.status_code == 204
            del self.model[video]

        # --- what must hold after every step ---------------------------------------------

        @invariant()
        def holds_exactly_what_it_acknowledged(self) -> None:
            now = leftovers.footprint()
            expected_files = {f"videos/{v}" for v in self.model}
            stored = {f.rsplit("/", 1)[0] for f in now.files if f.startswith("videos/")}
            ok = (now.videos == baseline.videos + len(self.model)
                  and now.subtitles == baseline.subtitles
                  + sum(v["subtitles"] for v in self.model.values())
                  and now.jobs == baseline.jobs + sum(v["jobs"] for v in self.model.values())
                  and stored == expected_files and now.reservations == 0
                  and not any(f.startswith("uploads/") for f in now.files))
            tally.add("leftovers", int(not ok))
            assert ok, (now, self.model)

    run_state_machine_as_test(Strangers, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
        suppress_health_check=list(HealthCheck)))
    # The fuzz reached both sides of each endpoint, not only refusals.
    for what in ("upload", "subtitles", "ask"):
        assert any(s < 300 for s in seen[what]) and any(s >= 400 for s in seen[what]), seen
