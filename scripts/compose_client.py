"""The HTTP side of scripts/compose_test.sh: talk to a running stack as a client would.

    python scripts/compose_client.py ready URL [--timeout S]
    python scripts/compose_client.py upload URL KEY VIDEO            -> video id
    python scripts/compose_client.py ask URL KEY VIDEO_ID QUESTION [--max-rounds N]  -> job id
    python scripts/compose_client.py running URL KEY JOB [--rounds N] [--timeout S]
    python scripts/compose_client.py finish URL KEY JOB --expect STATUS[,STATUS] [--timeout S]

Each prints one line (an id, or JSON for ready/finish) and exits 1 with the reason when the
stack does not behave.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"succeeded", "no_answer", "failed", "cancelled"}


class StackError(RuntimeError):
    """The stack answered wrongly or not in time."""


def client(url: str, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # trust_env=False: a proxy from the environment must not catch calls to the local stack.
    return httpx.Client(base_url=url, headers=headers, timeout=60, trust_env=False)


def checked(response: httpx.Response, *expected: int) -> Any:
    if response.status_code not in expected:
        raise StackError(f"{response.request.method} {response.request.url.path}: "
                         f"{response.status_code} {response.text[:500]}")
    return response.json()


def wait_ready(url: str, timeout: float) -> dict[str, Any]:
    started, last = time.monotonic(), "no answer"
    with client(url) as http:
        while time.monotonic() - started < timeout:
            try:
                response = http.get("/readyz")
                if response.status_code == 200:
                    return {"ready_s": round(time.monotonic() - started, 1),
                            "checks": response.json()["checks"]}
                last = response.text[:300]
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(1)
    raise StackError(f"{url}/readyz not ready after {timeout:.0f} s: {last}")


def upload(url: str, key: str, video: Path) -> str:
    with client(url, key) as http, video.open("rb") as fh:
        body = checked(http.post("/v1/videos", files={"file": (video.name, fh, "video/mp4")}),
                       200, 201, 202)
    return str(body["id"])


def ask(url: str, key: str, video_id: str, question: str, max_rounds: int | None) -> str:
    payload: dict[str, Any] = {"question": question}
    if max_rounds is not None:
        payload["budgets"] = {"max_rounds": max_rounds}
    with client(url, key) as http:
        body = checked(http.post(f"/v1/videos/{video_id}/questions", json=payload), 200, 201, 202)
    return str(body["id"])


def wait_running(url: str, key: str, job: str, rounds: int, timeout: float) -> dict[str, Any]:
    """Return once the job runs and has recorded at least ``rounds`` rounds."""
    started = time.monotonic()
    with client(url, key) as http:
        while time.monotonic() - started < timeout:
            body = checked(http.get(f"/v1/jobs/{job}"), 200)
            if body["status"] in TERMINAL:
                raise StackError(f"job {job} finished ({body['status']}) before it could be "
                                 "interrupted")
            if body["status"] == "running" and body["rounds"] >= rounds:
                return {"status": body["status"], "rounds": body["rounds"],
                        "waited_s": round(time.monotonic() - started, 1)}
            time.sleep(0.5)
    raise StackError(f"job {job} did not run {rounds} round(s) within {timeout:.0f} s")


def finish(url: str, key: str, job: str, expect: set[str], timeout: float) -> dict[str, Any]:
    """Poll the job to a terminal status, then read its trace."""
    started = time.monotonic()
    with client(url, key) as http:
        while True:
            body = checked(http.get(f"/v1/jobs/{job}"), 200)
            if body["status"] in TERMINAL:
                break
            if time.monotonic() - started > timeout:
                raise StackError(f"job {job} still {body['status']} after {timeout:.0f} s")
            time.sleep(1)
        trace = checked(http.get(f"/v1/jobs/{job}/trace"), 200)
    result = {"status": body["status"], "answer": body["answer"], "rounds": body["rounds"],
              "trace_rounds": len(trace["rounds"]),
              "steps": [r["kind"] for r in trace["rounds"]],
              "waited_s": round(time.monotonic() - started, 1), "error": body["error"]}
    if body["status"] not in expect:
        raise StackError(f"job {job} ended {body['status']}, expected {sorted(expect)}: "
                         f"{json.dumps(result)}")
    if not trace["rounds"] or len(trace["rounds"]) != body["rounds"]:
        raise StackError(f"job {job}: the trace does not hold the job's rounds: "
                         f"{json.dumps(result)}")
    if body["status"] == "succeeded" and not body["answer"]:
        raise StackError(f"job {job} succeeded without an answer")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ready")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=300)
    p = sub.add_parser("upload")
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("video", type=Path)
    p = sub.add_parser("ask")
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("video_id")
    p.add_argument("question")
    p.add_argument("--max-rounds", type=int)
    p = sub.add_parser("running")
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("job")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600)
    p = sub.add_parser("finish")
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("job")
    p.add_argument("--expect", required=True)
    p.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    try:
        if args.command == "ready":
            print(json.dumps(wait_ready(args.url, args.timeout)))
        elif args.command == "upload":
            print(upload(args.url, args.key, args.video))
        elif args.command == "ask":
            print(ask(args.url, args.key, args.video_id, args.question, args.max_rounds))
        elif args.command == "running":
            print(json.dumps(wait_running(args.url, args.key, args.job, args.rounds,
                                          args.timeout)))
        else:
            print(json.dumps(finish(args.url, args.key, args.job, set(args.expect.split(",")),
                                    args.timeout)))
    except (StackError, httpx.HTTPError) as exc:
        print(f"compose_client {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
