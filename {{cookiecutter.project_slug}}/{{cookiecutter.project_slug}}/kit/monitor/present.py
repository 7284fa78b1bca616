"""Turning records into what the monitor shows: redaction, times, the chart.

These are plain functions (registered as Jinja filters by the blueprint) so
they can be tested without rendering a page.
"""

import datetime
import json
import math
from typing import Any

# Redaction is shared with the jobs API and the CLI; imported here so the
# monitor's templates and code keep reaching it as ``present.redact``.
from ..redaction import REDACTED, redact  # noqa: F401


def pretty_json(value: Any) -> str:
    """Indented JSON for a ``<pre>``; Jinja escapes it when it is shown."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def timestamp(value: float | None) -> str:
    """An epoch time as UTC, to the second."""
    if value is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: float | None) -> str:
    if value is None:
        return ""
    return datetime.datetime.fromtimestamp(value, datetime.UTC).isoformat()


def duration(seconds: float | None) -> str:
    """A human duration: 850 ms, 2.4 s, 3 min 5 s, 2 h 10 min."""
    if seconds is None or math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "longer"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def milliseconds(value: float | None) -> str:
    """A histogram bucket bound (ms) as "<= 200 ms"."""
    if value is None:
        return "-"
    return "> 1 h" if math.isinf(value) else f"\u2264 {duration(value / 1000)}"


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def ago(value: float | None, now: float) -> str:
    if value is None:
        return "-"
    delta = now - value
    return f"in {duration(-delta)}" if delta < 0 else f"{duration(delta)} ago"


# The throughput chart: one stacked bar per minute, drawn as inline SVG
# rectangles (no script, no library). Coordinates are computed here.
CHART_WIDTH = 600
CHART_HEIGHT = 120


def chart(per_minute: list[dict[str, Any]]) -> dict[str, Any]:
    """Bars for the per-minute chart, scaled to the busiest minute."""
    peak = max((m["complete"] + m["failed"] for m in per_minute), default=0)
    scale = CHART_HEIGHT / peak if peak else 0
    step = CHART_WIDTH / max(len(per_minute), 1)
    bars = []
    for index, minute in enumerate(per_minute):
        done_height = minute["complete"] * scale
        failed_height = minute["failed"] * scale
        label = datetime.datetime.fromtimestamp(minute["start"], datetime.UTC).strftime("%H:%M")
        bars.append(
            {
                "x": round(index * step + 1, 2),
                "width": round(max(step - 2, 1), 2),
                "done_y": round(CHART_HEIGHT - done_height, 2),
                "done_height": round(done_height, 2),
                "failed_y": round(CHART_HEIGHT - done_height - failed_height, 2),
                "failed_height": round(failed_height, 2),
                "title": f"{label} UTC: {minute['complete']} done, {minute['failed']} failed",
            }
        )
    return {"bars": bars, "peak": peak, "width": CHART_WIDTH, "height": CHART_HEIGHT}
