"""The deploy charts of an environment's page, drawn here as inline SVG (no front-end build, no
script): deploys per week or day, their mean duration, the failure rate and the mean time to
restore, one bar per period.

Time to restore: from the end of a deploy or rollback that failed (or was interrupted) to the
end of the environment's next successful deploy or rollback (a run of failures is one incident,
from its first); counted in the period of the failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

# period -> (how many buckets, bucket length)
PERIODS: Mapping[str, tuple[int, timedelta]] = {
    "week": (12, timedelta(weeks=1)),
    "day": (30, timedelta(days=1)),
}
FAILED = ("failed", "interrupted")
WIDTH, HEIGHT, TOP, BOTTOM = 640, 150, 16, 22


@dataclass
class Chart:
    name: str
    title: str
    unit: str
    labels: list[str]
    values: list[float | None]

    def svg(self) -> Markup:
        return render_svg(self)


def _is_deploy(run: Mapping[str, Any]) -> bool:
    return run.get("kind") in (None, "deploy") and run.get("playbook") not in (
        "unlock.yml", "rollback.yml", "manage.yml")


def _end(run: Mapping[str, Any]) -> datetime | None:
    return run.get("completed_at") or run.get("started_at")


def bucket_starts(period: str, now: datetime) -> list[datetime]:
    count, length = PERIODS[period]
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=today.weekday()) if period == "week" else today
    return [first - length * back for back in range(count - 1, -1, -1)]


def since(period: str, now: datetime) -> datetime:
    return bucket_starts(period, now)[0]


def deploy_charts(runs: Iterable[Mapping[str, Any]], period: str,
                  now: datetime) -> list[Chart]:
    """The four charts from an environment's runs (any order) over the ``period``'s buckets."""
    starts = bucket_starts(period, now)
    length = PERIODS[period][1]
    count = len(starts)

    def bucket(moment: datetime | None) -> int | None:
        if moment is None or moment < starts[0]:
            return None
        index = int((moment - starts[0]) / length)
        return index if index < count else None

    ordered = sorted((run for run in runs if run.get("started_at")),
                     key=lambda run: run["started_at"])
    deploys = [0] * count
    durations: list[list[int]] = [[] for _bucket in range(count)]
    finished = [0] * count
    failures = [0] * count
    restores: list[list[float]] = [[] for _bucket in range(count)]
    incident: datetime | None = None
    for run in ordered:
        index = bucket(run["started_at"])
        status = run.get("status")
        if run.get("kind") in (None, "deploy", "rollback") and run.get("playbook") != "unlock.yml":
            if status in FAILED and incident is None:
                incident = _end(run)
            elif status == "success" and incident is not None:
                opened = bucket(incident)
                if opened is not None and _end(run) is not None:
                    restores[opened].append((_end(run) - incident).total_seconds() / 60)
                incident = None
        if index is None or not _is_deploy(run):
            continue
        deploys[index] += 1
        if status == "success" and run.get("duration") is not None:
            durations[index].append(run["duration"])
        if status in ("success", *FAILED):
            finished[index] += 1
            failures[index] += status in FAILED
    labels = [start.strftime("%Y-%m-%d") for start in starts]
    unit_name = "week" if period == "week" else "day"
    return [
        Chart("frequency", f"Deploys per {unit_name}", "deploys", labels,
              [float(value) for value in deploys]),
        Chart("duration", "Mean duration of successful deploys", "s", labels,
              [sum(values) / len(values) if values else None for values in durations]),
        Chart("failure-rate", "Failure rate", "%", labels,
              [100.0 * failed / done if done else None
               for failed, done in zip(failures, finished, strict=True)]),
        Chart("time-to-restore", "Mean time to restore", "min", labels,
              [sum(values) / len(values) if values else None for values in restores]),
    ]


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def render_svg(chart: Chart) -> Markup:
    """One bar per bucket (a bucket with no value has a bar of height 0, marked empty)."""
    known = [value for value in chart.values if value is not None]
    top = max(known, default=0.0) or 1.0
    slot = WIDTH / len(chart.values)
    usable = HEIGHT - TOP - BOTTOM
    parts = [f'<svg class="chart" id="chart-{escape(chart.name)}" '
             f'data-chart="{escape(chart.name)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{escape(chart.title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(chart.title)}</title>",
             f'<line x1="0" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}" '
             'stroke="#b7c0ca"/>',
             f'<text x="2" y="11" font-size="11" fill="#5d6773">max {_number(max(known))}'
             f' {escape(chart.unit)}</text>' if known else
             '<text x="2" y="11" font-size="11" fill="#5d6773">no data</text>']
    for number, (label, value) in enumerate(zip(chart.labels, chart.values, strict=True)):
        height = 0.0 if value is None else usable * value / top
        x = number * slot + slot * 0.15
        y = HEIGHT - BOTTOM - height
        shown = "-" if value is None else f"{_number(value)} {chart.unit}"
        data = "" if value is None else f"{round(value, 1):g}"
        parts.append(
            f'<rect class="bar{" empty" if value is None else ""}" x="{x:.1f}" y="{y:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{height:.1f}" fill="#1f5fbf" '
            f'data-label="{escape(label)}" data-value="{data}">'
            f"<title>{escape(label)}: {escape(shown)}</title></rect>")
        if number % max(1, len(chart.values) // 6) == 0:
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" font-size="10" '
                         f'fill="#5d6773">{escape(label[5:])}</text>')
    parts.append("</svg>")
    # Every value above went through escape(); the rest is this function's own markup.
    return Markup("".join(parts))  # noqa: S704
