"""The audit of a request in plain words: one line per stage of its life (`unlearn-ops audit`)."""

from __future__ import annotations

from unlearn_ops.compliance.audit import RequestAudit
from unlearn_ops.timestamps import format_datetime as _when

__all__ = ["describe_audit"]


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _version(audit: RequestAudit, version: str | None) -> str:
    """`2`, or `2 (purged on 2027-01-05)` for a version a purge deleted since."""
    if version is None:
        return "-"
    purged = audit.versions_purged.get(version)
    return f"{version} (purged on {purged:%Y-%m-%d})" if purged else version


def describe_audit(audit: RequestAudit) -> list[str]:
    """The audit in plain words, one line per stage of the request's life."""
    lines = [f"request {audit.request_id}: {audit.state}"]
    records = (
        "no records (a client withdrawal)"
        if audit.client_hashes and not audit.record_count
        else f"{audit.record_count} record(s), records digest {audit.records_digest[:16]}"
    )
    lines.append(
        f"received: {_when(audit.received_at)}; requested at {_when(audit.requested_at)}; "
        f"reason {audit.reason or '-'!r}; {records}"
    )
    if audit.client_hashes:
        lines.append(
            f"client removal: {len(audit.client_hashes)} federation client(s), keyed hash "
            + ", ".join(h[:16] for h in audit.client_hashes)
        )
    signature = audit.signature or "not checked (requests carry no signature yet)"
    lines.append(
        f"verified: {'request validated when received' if audit.validated else 'no received entry'}"
        f"; signature: {signature}"
    )
    if audit.applied_at is not None:
        shards = (
            ", ".join(
                f"shard {s} from slice {f}" for s, f in sorted(audit.shards_retrained.items())
            )
            or "no shard retrained"
        )
        lines.append(
            f"applied: {_when(audit.applied_at)}; data git {_short(audit.parent_revision)} -> "
            f"{_short(audit.data_revision)}; {shards} "
            f"(version(s) {', '.join(_version(audit, v) for v in audit.versions_made_for) or '-'})"
        )
    elif audit.noop:
        lines.append("applied: no data change of its own (its records were forgotten before)")
    elif audit.client_hashes:
        lines.append("applied: no data revision (the client's data stays at its site)")
    else:
        lines.append("applied: not yet")
    if audit.first_honouring_version is not None:
        gates = "; ".join(str(gate) for gate in audit.gates) or "no gate results recorded"
        exactly = ""
        if audit.first_exact_version is None:
            exactly = ", approximately"
        elif audit.first_exact_version != audit.first_honouring_version:
            exactly = f", approximately; exactly by version {audit.first_exact_version}"
        lines.append(
            f"honoured: first by version {_version(audit, audit.first_honouring_version)} "
            f"(registered {_when(audit.first_honouring_created_at)}{exactly}); gates: {gates}"
        )
    else:
        lines.append("honoured: by no version whose gates passed yet")
    if audit.approximate is not None:
        lines.append(
            f"served: APPROXIMATELY by provisional version "
            f"{_version(audit, audit.approximate.get('version'))} (method "
            f"{audit.approximate.get('method')}, since {audit.approximate.get('served_at')}); "
            + (
                "the exact removal is not served yet (`unlearn-ops federation remove-exactly`)"
                if audit.client_hashes
                else "the exact retrain is not served yet"
            )
        )
    elif audit.served_at is not None:
        lines.append(
            f"served: version {_version(audit, audit.served_version)} champion since "
            f"{_when(audit.served_at)}"
        )
    else:
        lines.append("served: not yet")
    exact_version = audit.first_exact_version
    first_purged = audit.versions_purged.get(exact_version or "")
    if audit.exactness is None and first_purged is not None:
        lines.append(
            f"exactness: cannot be run (version {exact_version} was purged "
            f"on {first_purged:%Y-%m-%d})"
        )
    elif audit.exactness is None and audit.client_hashes and exact_version:
        lines.append(
            f"exactness: a client removal is certified on the Flower deployment: "
            f"`unlearn-ops federation certify {exact_version} --flower-home HOME`"
        )
    elif audit.exactness is None:
        if exact_version:
            why = "pass --certify"
        elif audit.first_honouring_version:
            exact_step = "removal" if audit.client_hashes else "retrain"
            why = f"no version honours it exactly yet: the exact {exact_step} is pending"
        else:
            why = "no version honours it yet"
        lines.append(f"exactness: not run ({why})")
    else:
        verdict = "PASSED" if audit.exactness else "FAILED"
        lines.append(f"exactness: certificate of version {exact_version} {verdict}")
    if audit.privacy:
        p = audit.privacy
        lines.append(
            f"privacy: membership audit of version {p['version']} {p.get('verdict', '-')} "
            f"(flagged {p.get('flagged', '-')}, AUC {p.get('auc', '-')}, positive control "
            f"TPR@1% {p.get('positive_control_tpr', '-')})"
        )
    elif audit.client_hashes:
        lines.append("privacy: no membership audit (the client's records stay at its site)")
    else:
        lines.append("privacy: not audited (run `unlearn-ops audit-privacy VERSION`)")
    if audit.champion_version is None:
        lines.append("champion: none")
    else:
        honours = "honours" if audit.champion_honours else "does NOT honour"
        lines.append(f"champion: version {audit.champion_version} {honours} the request")
    if audit.purged_at is not None:
        lines.append(f"purge: purged at {_when(audit.purged_at)}")
    elif audit.retention_until is not None:
        lines.append(f"purge: not purged yet (retention until {audit.retention_until:%Y-%m-%d})")
    else:
        lines.append("purge: not purged yet (retention starts when a version honouring it serves)")
    latency = f"{audit.latency_days:.2f} days" if audit.latency_days is not None else "not served"
    paused = f"; clock paused {audit.paused_days:.2f} days by legal holds" if audit.holds else ""
    lines.append(
        f"deadline: {audit.deadline_status} (due {_when(audit.deadline)}; latency {latency}"
        f"{paused})"
    )
    if audit.approximate is not None and audit.overdue:
        lines.append(
            "OVERDUE: the deadline passed and only a provisional (approximate) version "
            "serves the request; run `unlearn-ops retrain-exact`"
        )
    if audit.paused_reason is not None:
        lines.append(f"hold: the clock is paused by {audit.paused_reason}")
    for approval in audit.approvals:
        lines.append(
            f"approval: {approval.get('decision')} by {approval.get('approver') or 'the rules'} "
            f"(rule {approval.get('rule')}) at {approval.get('at', '-')}"
        )
    for failure in audit.failures:
        lines.append(
            f"failed: {failure.get('at', '-')}: version {failure.get('version', '-')}: "
            f"{failure.get('reason', '-')}"
            + (f" (rule {failure['approval'].get('rule')})" if failure.get("approval") else "")
        )
    if audit.ledger_problems:
        lines.append(f"ledger: BROKEN ({len(audit.ledger_problems)} problem(s); run --check-chain)")
    return lines
