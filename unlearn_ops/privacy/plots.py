"""The privacy section of the compliance report: verdicts per request and the score plot.

The plot shows forgotten records against both controls, drawn from the
`unlearn.privacy.histogram` tag (counts over fixed bins, see
:func:`unlearn_ops.privacy.membership.score_histogram`), so a report never re-runs an
audit. matplotlib is imported inside the function.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unlearn_ops.compliance.audit import RequestAudit

__all__ = ["PRIVACY_COLUMNS", "privacy_section", "render_membership_scores"]

PRIVACY_COLUMNS = (
    "request",
    "version",
    "verdict",
    "flagged",
    "AUC [95% CI]",
    "TPR@1% FPR",
    "positive control TPR@1%",
    "reason",
)

_STYLES = {
    "forgotten": ("#cf222e", "forgotten records, new version"),
    "positive control": ("#1f6feb", "same records, parent version (positive control)"),
    "negative control": ("#6e7781", "held-out records, new version (negative control)"),
}


def render_membership_scores(histograms: Mapping[str, str], columns: int = 3) -> bytes:
    """PNG bytes: one panel per audited version, the score density of each group.

    Args:
        histograms: version -> its `unlearn.privacy.histogram` tag (JSON).
        columns: panels per row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    versions = list(histograms)
    rows = max(1, -(-len(versions) // columns))
    width = min(columns, max(1, len(versions)))
    figure = Figure(figsize=(4.2 * width, 3.0 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, width, squeeze=False).ravel()
    for axis, version in zip(axes, versions, strict=False):
        data = json.loads(histograms[version])
        edges = data["edges"]
        for name, (color, label) in _STYLES.items():
            counts = data.get(name)
            if not counts:
                continue
            total = sum(counts) or 1
            axis.stairs([c / total for c in counts], edges, color=color, label=label)
        axis.set_title(f"version {version}: membership scores")
        axis.set_xlabel("z-score (higher: more like a member)")
        axis.set_ylabel("share of records")
    for axis in axes[len(versions) :]:
        axis.set_axis_off()
    if versions:
        axes[0].legend(fontsize="x-small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def privacy_section(requests: Sequence[RequestAudit]) -> dict[str, Any]:
    """The report template's privacy values: a row per audited request, the plot as base64.

    Empty rows (and no plot) when no request's version was audited: the page is then the
    page it was before the audit existed.
    """
    audited = [a for a in requests if a.privacy]
    keys = ("version", "verdict", "flagged", "auc", "tpr_at_1pct_fpr", "positive_control_tpr")
    rows = [
        [a.request_id, *(a.privacy.get(k, "-") for k in keys), a.privacy.get("reason", "")]
        for a in audited
    ]
    plotted = {
        a.privacy["version"]: a.privacy["histogram"] for a in audited if a.privacy.get("histogram")
    }
    image = base64.b64encode(render_membership_scores(plotted)).decode("ascii") if plotted else ""
    return {"privacy_columns": PRIVACY_COLUMNS, "privacy": rows, "privacy_image": image}
