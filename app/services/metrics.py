"""Prometheus metrics: HTTP request metrics of this process, and job metrics read from the
database at scrape time (so they are right however many worker processes ran the jobs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import CaptionNode, Job

SUMMARY_SAMPLE = 10_000  # newest finished jobs whose trace summaries feed cache/model metrics


class HttpMetrics:
    """Request counter and latency histogram, labelled by route template (bounded cardinality)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "vidnav_http_requests", "HTTP requests handled", ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "vidnav_http_request_duration_seconds", "HTTP request latency",
            ["method", "route"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

        # The labelled children per (method, route, status): looking labels up costs more
        # than the observation itself on hot routes.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            children = self._children[(method, route, status)] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def summary_usage(summary: dict[str, Any] | None) -> tuple[dict[str, tuple[int, float]], int, int]:
    """From a core trace summary: per-role (calls, model seconds), and the navigator's caption
    lookups served from cache and in all (``captions_cached`` + ``captions_generated``)."""
    roles: dict[str, tuple[int, float]] = {}
    if not isinstance(summary, dict):
        return roles, 0, 0
    stats = summary.get("roles")
    if isinstance(stats, dict):
        for role, usage in stats.items():
            if isinstance(usage, dict):
                calls = _number(usage.get("calls")) or 0
                seconds = _number(usage.get("model_seconds")) or 0.0
                roles[str(role)] = (int(calls), seconds)
    cached = int(_number(summary.get("captions_cached")) or 0)
    generated = int(_number(summary.get("captions_generated")) or 0)
    return roles, cached, cached + generated


def _seconds_between(start: Any, end: Any, dialect: str) -> Any:
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end) - func.extract("epoch", start)


class JobMetricsCollector(Collector):
    """Job counts, durations, rounds, caption cache hit rate and model latency per role."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._factory = session_factory

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: describing must not hit the database

    def _snapshot(self) -> tuple[Any, Any, Any, Any, Sequence[Any]]:
        """Job counts, durations and rounds, caption model time, recent job summaries."""
        with self._factory() as session:
            counts = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            dialect = session.get_bind().dialect.name
            durations = session.execute(
                select(Job.status, func.count(), func.sum(_seconds_between(
                    Job.started_at, Job.finished_at, dialect)))
                .where(Job.finished_at.is_not(None), Job.started_at.is_not(None))
                .group_by(Job.status)
            ).all()
            rounds = session.execute(
                select(func.count(), func.coalesce(func.sum(Job.progress_round), 0))
                .where(Job.finished_at.is_not(None), Job.started_at.is_not(None))
            ).one()
            caption_calls = session.execute(
                select(func.count(CaptionNode.model_seconds),
                       func.coalesce(func.sum(CaptionNode.model_seconds), 0.0))
            ).one()
            summaries = session.scalars(
                select(Job.summary).where(Job.summary.is_not(None))
                .order_by(Job.finished_at.desc()).limit(SUMMARY_SAMPLE)
            ).all()
        return counts, durations, rounds, caption_calls, summaries

    def collect(self) -> Iterator[Metric]:
        counts, durations, rounds, caption_calls, summaries = self._snapshot()
        jobs = GaugeMetricFamily("vidnav_jobs", "Jobs by status", labels=["status"])
        for status, count in counts:
            jobs.add_metric([status], count)
        yield jobs

        duration = SummaryMetricFamily(
            "vidnav_job_duration_seconds", "Seconds from start to end of finished jobs",
            labels=["status"],
        )
        for status, count, total in durations:
            duration.add_metric([status], count, float(total or 0.0))
        yield duration

        per_job = SummaryMetricFamily("vidnav_job_rounds", "Navigation rounds per finished job")
        per_job.add_metric([], rounds[0], float(rounds[1]))
        yield per_job

        role_calls: dict[str, tuple[int, float]] = {}
        hits = lookups = 0
        for summary in summaries:
            roles, h, n = summary_usage(summary)
            hits += h
            lookups += n
            for role, (calls, seconds) in roles.items():
                old = role_calls.get(role, (0, 0.0))
                role_calls[role] = (old[0] + calls, old[1] + seconds)
        # Every generated caption is a row with its model time, whichever process made it
        # (ingest ahead of questions, or navigation); the summaries would count only the latter.
        role_calls["captioner"] = (int(caption_calls[0]), float(caption_calls[1] or 0.0))

        latency = SummaryMetricFamily(
            "vidnav_model_latency_seconds", "Model call latency per role", labels=["role"]
        )
        for role, (calls, seconds) in sorted(role_calls.items()):
            latency.add_metric([role], calls, seconds)
        yield latency

        cache = GaugeMetricFamily(
            "vidnav_caption_cache_hit_ratio",
            "Share of the navigator's caption lookups served without a captioner call",
        )
        cache.add_metric([], hits / lookups if lookups else 0.0)
        yield cache
        lookups_total = GaugeMetricFamily(
            "vidnav_caption_lookups", "Caption lookups by navigations", labels=["cached"]
        )
        lookups_total.add_metric(["true"], hits)
        lookups_total.add_metric(["false"], lookups - hits)
        yield lookups_total
