"""The hostile suite's one table: what was thrown at vidnav and what came of it.

Tests count into the session's ``tally`` fixture (``tally.add(key, n)``; ``n=0`` records
that a measured quantity stayed zero); at the end of the run one table is printed with a
row per key below. A row nobody counted shows as not measured in this run, so a partial
run still prints an honest table. New rows (the recovery and load checks of issue 13's
part B) are added to ``ROWS``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

# key -> (label, what it must be: "" for a plain count)
ROWS: dict[str, tuple[str, str]] = {
    "inputs_tried": ("bad inputs sent through the API", ""),
    "inputs_refused": ("  refused with a 4xx in the error shape", ""),
    "inputs_accepted": ("  accepted as harmless (a valid video or file)", ""),
    "server_errors": ("5xx answers to bad input", "0"),
    "leftovers": ("rows or files left by a refused input", "0"),
    "paths_revealed": ("server paths in responses", "0"),
    "fuzz_requests": ("fuzzed requests (hypothesis)", ""),
    "faults_injected": ("model faults injected", ""),
    "faults_bounded": ("  ended bounded and recorded in the trace", ""),
    "auth_refused": ("requests with no, a wrong or a revoked key refused", ""),
    "auth_let_through": ("  of them let through", "0"),
    "cross_tenant_tried": ("cross-tenant reads and writes tried", ""),
    "cross_tenant_succeeded": ("  of them that succeeded", "0"),
    "burst_requests": ("requests in rate-limit bursts", ""),
    "burst_over_limit": ("  served beyond the limit", "0"),
    "keys_logged": ("API keys found in logs or responses", "0"),
    "metrics_tenant_data": ("tenant data in /metrics", "0"),
    # Part B (recovery from Postgres, process faults, load): measured there.
    "faults_process": ("process faults injected (kill -9, Redis flush or restart, ...)", ""),
    "jobs_lost": ("jobs lost", "0"),
    "jobs_run_twice": ("jobs run twice to completion", "0"),
    "captions_twice": ("captions computed twice", "0"),
    "load_questions": ("load: concurrent questions completed", ""),
    "load_pollers_p99_ms": ("load: job-status p99 under pollers (ms)", ""),
}


@dataclass
class Tally:
    """Counts per row key for this test session."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    seen: set[str] = field(default_factory=set)

    def add(self, key: str, n: int = 1) -> None:
        if key not in ROWS:
            raise KeyError(f"no row {key!r} in the hostile report (add it to ROWS)")
        self.seen.add(key)
        self.counts[key] += n

    def lines(self) -> list[str]:
        width = max(len(label) for label, _ in ROWS.values())
        out = [f"{'':{width}}  {'count':>8}  must be"]
        for key, (label, target) in ROWS.items():
            value = str(self.counts[key]) if key in self.seen else "-"
            out.append(f"{label:{width}}  {value:>8}  {target}".rstrip())
        return out


_TALLY_KEY = pytest.StashKey[Tally]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TALLY_KEY] = Tally()


@pytest.fixture(scope="session")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """The session's hostile-suite counters (printed as one table at the end)."""
    yield request.config.stash[_TALLY_KEY]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    tally = config.stash.get(_TALLY_KEY, None)
    if tally is None or not tally.seen:
        return
    terminalreporter.write_sep("=", "hostile input, faults and access (issue 13)")
    for line in tally.lines():
        terminalreporter.write_line(line)
    terminalreporter.write_line("(-: not measured in this run)")
