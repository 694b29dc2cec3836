"""The report as one self-contained HTML page: the Markdown's tables and inline SVG plots
(no script, no stylesheet or font from the network)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.core.trace import ROLES
from app.errors import InvalidInput
from app.services.evaluation.report import PAPER, Record, markdown, summarize
from app.services.evaluation.runs import read_meta, read_records

COLOURS = ("#3b6ea5", "#d9822b", "#4f9a5b", "#a04f8f", "#7a7a7a", "#c0392b")
ROLE_COLOURS = dict(zip(ROLES, ("#3b6ea5", "#d9822b", "#4f9a5b"), strict=True))


def _bars(title: str, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
          *, unit: str = "%", scale: float = 100.0, stacked: bool = False) -> str:
    """Grouped (or stacked) bars: one group per label, one bar per series."""
    width, height, left, bottom, top = 570, 260, 48, 84, 28
    values = [v * scale for _, vs in series for v in vs if not math.isnan(v)]
    if stacked:
        values = [sum(vs[i] * scale for _, vs in series if not math.isnan(vs[i]))
                  for i in range(len(groups))]
    peak = max(values, default=0.0) or 1.0
    if unit == "%":
        peak = 100.0
    plot_w, plot_h = width - left - 10, height - bottom - top
    slot = plot_w / max(1, len(groups))
    bar_w = slot * 0.8 / (1 if stacked else max(1, len(series)))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(title)}">',
             f'<text x="{left}" y="16" font-size="14" font-weight="bold">'
             f'{html.escape(title)}</text>']
    for tick in range(5):
        value = peak * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{value:.3g}{html.escape(unit)}</text>')
    for gi, group in enumerate(groups):
        base: float = top + plot_h
        for si, (name, vs) in enumerate(series):
            value = 0.0 if math.isnan(vs[gi]) else vs[gi] * scale
            h = plot_h * value / peak
            x = left + gi * slot + slot * 0.1 + (0 if stacked else si * bar_w)
            y = base - h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{_colour(name, si)}"><title>{html.escape(name)} · '
                         f'{html.escape(group)}: {value:.3g}{html.escape(unit)}</title></rect>')
            if stacked:
                base = y
        label = html.escape(group if len(group) <= 14 else group[:13] + "…")
        cx = left + gi * slot + slot / 2
        parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 14}" font-size="10" '
                     f'text-anchor="end" transform="rotate(-30 {cx:.1f} {top + plot_h + 14})">'
                     f'{label}</text>')
    for si, (name, _) in enumerate(series):
        x = left + (si % 3) * 175
        y = height - 14 * (1 + (len(series) - 1) // 3 - si // 3)
        parts.append(f'<rect x="{x}" y="{y}" width="10" height="10" '
                     f'fill="{_colour(name, si)}"/><text x="{x + 14}" y="{y + 9}" '
                     f'font-size="11">{html.escape(name[:26])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _colour(name: str, index: int) -> str:
    return ROLE_COLOURS.get(name, COLOURS[index % len(COLOURS)])


def _keys(summaries: Sequence[dict[str, Any]], field: str) -> list[str]:
    return sorted({k for s in summaries for k in s[field]})


def page(runs: Sequence[tuple[dict[str, Any], Sequence[Record]]]) -> str:
    metas = [meta for meta, _ in runs]
    summaries = [summarize(records) for _, records in runs]
    labels = [str(m.get("label")) for m in metas]
    plots: list[str] = []
    overall = [(label, [s["accuracy"], s["lenient"]]) for label, s in zip(labels, summaries,
                                                                         strict=True)]
    paper = [(f"paper: {name}", [value / 100, math.nan]) for bench in
             sorted({str(m.get("benchmark")) for m in metas}) for name, value in
             PAPER.get(bench, {}).items()]
    plots.append(_bars("Accuracy (reference rule, lenient)", ["accuracy", "lenient"],
                       overall + paper))
    for title, field in (("Accuracy per question type", "per_task"),
                         ("Accuracy per duration bucket", "per_bucket"),
                         ("Accuracy against rounds used", "by_rounds")):
        keys = _keys(summaries, field)
        if keys:
            plots.append(_bars(title, keys, [
                (label, [s[field].get(k, {}).get("accuracy", math.nan) for k in keys])
                for label, s in zip(labels, summaries, strict=True)]))
    plots.append(_bars("Rounds and tool calls per question",
                       ["rounds", "get_caption_medium", "get_caption_low", "video_qa", "invalid"],
                       [(label, [s["rounds"], *(s["tool_calls"][k] for k in (
                           "get_caption_medium", "get_caption_low", "video_qa", "invalid"))])
                        for label, s in zip(labels, summaries, strict=True)],
                       unit="", scale=1.0))
    plots.append(_bars("Latency per question (s)", ["p50", "p90", "p99"],
                       [(label, [s["latency"][p] for p in ("p50", "p90", "p99")])
                        for label, s in zip(labels, summaries, strict=True)],
                       unit="s", scale=1.0))
    plots.append(_bars("Model seconds per question, by role", labels,
                       [(role, [s["model_seconds"][role] for s in summaries]) for role in ROLES],
                       unit="s", scale=1.0, stacked=True))
    if any(s["clued"] for s in summaries):
        plots.append(_bars("Localization F1 and reward (questions with clues)", ["F1", "reward"],
                           [(label, [s["f1"], s["reward"]])
                            for label, s in zip(labels, summaries, strict=True)],
                           unit="", scale=1.0))
    body = _markdown_html(markdown(runs))
    figures = "<div class=\"plots\">" + "".join(f"<figure>{svg}</figure>" for svg in plots) \
        + "</div>"
    # The runs side by side first, then the plots, then each run's details.
    cut = body.find("<h2>", body.find("<h2>") + 1)
    body = body + figures if cut < 0 else body[:cut] + figures + body[cut:]
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>vidnav evaluation report</title><style>"
            "body{font-family:system-ui,sans-serif;margin:20px;max-width:1180px;color:#222}"
            "table{border-collapse:collapse;margin:8px 0;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}"
            "th{background:#f2f4f7}figure{margin:12px 0;display:inline-block}"
            "h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px}"
            ".plots{display:flex;flex-wrap:wrap;gap:0 12px}"
            f"</style></head><body><h1>vidnav evaluation report</h1>{body}"
            "</body></html>")


def _markdown_html(text: str) -> str:
    """The few Markdown shapes ``report.markdown`` writes: headings, lists, tables, text."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *rows = table
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                                 for row in rows) + "</table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        flush()
        if line.startswith("# "):
            continue  # the page has its own title
        if line.startswith("### "):
            out.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "".join(out)


def load_runs(paths: Sequence[Path]) -> list[tuple[dict[str, Any], list[Record]]]:
    """Each run file's meta and records; a missing or empty run is an ``InvalidInput``."""
    runs = []
    for path in paths:
        records = read_records(path)
        if not records:
            raise InvalidInput(f"{path} holds no evaluation records", code="empty_run")
        runs.append((read_meta(path), records))
    return runs


def write_report(paths: Sequence[Path], out_dir: Path) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` of the runs, in ``out_dir``."""
    runs = load_runs(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page_path = out_dir / "report.md", out_dir / "report.html"
    md.write_text(markdown(runs) + "\n", "utf-8")
    page_path.write_text(page(runs), "utf-8")
    return md, page_path
