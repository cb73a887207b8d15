"""The compliance report's timeline plot: requests from arrival to served, versions, latency.

matplotlib is imported inside :func:`render_timeline`, so the report's other parts stay light.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unlearn_ops.compliance.report import ComplianceReport

__all__ = ["STATUS_COLOURS", "render_timeline"]

STATUS_COLOURS = {
    "met": "tab:green",
    "missed": "tab:red",
    "pending": "tab:orange",
    "paused": "tab:purple",  # a legal hold stands (issue 16)
}


def render_timeline(report: ComplianceReport) -> bytes:
    """The timeline plot as PNG bytes: requests (arrival -> served), versions, latency.

    Top: one row per request, a line from when it was requested to when the first version
    honouring it became champion (dashed to the report's time while pending), and a vertical
    line per version registered in the period. Bottom: each request's latency in days (time
    elapsed so far while pending) against the deadline line.
    """
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    date2num: Callable[[datetime], float] = mdates.date2num
    requests = report.requests
    figure = Figure(figsize=(10, 2.5 + 0.35 * max(len(requests), 3)), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, height_ratios=(2, 1))
    top.set_title(f"{report.model_name}: deletion requests {report.period()}", pad=14)
    if not requests:
        for axis in (top, bottom):
            axis.text(0.5, 0.5, "no requests in the period", ha="center", va="center")
            axis.set_axis_off()
    else:
        times: list[datetime] = []
        for index, audit in enumerate(requests):
            end = audit.served_at or report.generated_at
            style = "-" if audit.served_at else "--"
            colour = STATUS_COLOURS[audit.deadline_status]
            top.plot([audit.requested_at, end], [index, index], style, color=colour, linewidth=2)
            top.plot([audit.requested_at], [index], "o", color=colour)
            if audit.served_at:
                top.plot([audit.served_at], [index], "s", color=colour)
            times += [audit.requested_at, end]
        first, last = min(times), max(times)
        in_period = [
            row
            for row in report.versions
            if first - timedelta(days=1) <= row.created_at <= last + timedelta(days=1)
        ]
        for row in in_period:
            top.axvline(row.created_at, color="tab:blue", linewidth=0.8, alpha=0.6)
            top.annotate(
                f"v{row.version}",
                (date2num(row.created_at), 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color="tab:blue",
                ha="left",
                va="bottom",
            )
            times.append(row.created_at)
        first, last = min(times), max(times)
        pad = max((last - first) * 0.05, timedelta(seconds=1))
        top.set_xlim(date2num(first - pad), date2num(last + pad))
        top.set_ylim(-0.7, len(requests) - 0.3)
        top.set_yticks(range(len(requests)), [a.request_id for a in requests], fontsize=8)
        top.invert_yaxis()
        locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
        top.xaxis.set_major_locator(locator)
        formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
        top.xaxis.set_major_formatter(formatter)
        top.set_xlabel("requested (circle) -> champion honours it (square); blue: versions")

        latencies = [
            a.latency_days
            if a.latency_days is not None
            else (report.generated_at - a.requested_at).total_seconds() / 86_400
            for a in requests
        ]
        colours = [STATUS_COLOURS[a.deadline_status] for a in requests]
        positions = list(range(len(requests)))
        bars = bottom.bar(positions, latencies, color=colours)
        bottom.bar_label(bars, labels=[f"{days:.2f} d" for days in latencies], fontsize=8)
        bottom.axhline(report.deadline_days, color="tab:red", linestyle="--", linewidth=1)
        bottom.annotate(
            f"deadline ({report.deadline_days} days)",
            (0.0, report.deadline_days),
            xycoords=("axes fraction", "data"),
            fontsize=8,
            color="tab:red",
            va="bottom",
        )
        bottom.set_ylim(0, max([report.deadline_days, *latencies]) * 1.15)
        bottom.set_xticks(positions, [a.request_id for a in requests], rotation=30, fontsize=8)
        bottom.set_ylabel("latency (days)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()
