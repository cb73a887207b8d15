"""The receipt for a data subject: a signed statement that their request was carried out.

A receipt is one JSON document that a data-protection officer sends to the person::

    {
      "version": 1,
      "receipt": {                                   # the facts, from the request's audit
        "request_id": "dsr-2026-0042",
        "model": "unlearn-ops-ensemble",
        "requested_at": "...", "received_at": "...", "served_at": "...",
        "records": 2,                                 # a count: never an id or a feature
        "first_version": "3",                        # the first version that honoured it
        "champion": {"version": "4", "honours": true},
        "exactness": {"method": "exact", "certificate_digest": "<sha256>" | null, ...},
        "purge": {"status": "purged" | "due" , "at": ..., "due_by": ...},
        "deadline": {"due": "...", "status": "met"}
      },
      "issued_at": "...",
      "signature": {"algorithm": "hmac-sha256", "key_id": "receipt", "value": "<hex>"}
    }

The signature is HMAC-SHA256 under `UNLEARN_OPS_RECEIPT_SIGNING_KEY` over the canonical
JSON (:func:`unlearn_ops.canonical.canonical_json`) of everything but ``signature.value``:
one changed field and it no longer verifies. :func:`check_receipt` verifies the signature
and compares the facts with what the ledger and the registry say now: after a rollback
(the champion moved back) or a purge (the superseded versions are gone), it lists what
changed instead of passing.

A receipt states exact unlearning only (SISA retraining of the shards that held the records,
or a monolithic model's exact retrain), with the certificate's digest when one was run
(`certify=True`). A request served only approximately so far (issue 14) gets no receipt
until its exact retrain serves; the version a receipt names is then that exact version, not
the provisional one before it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from unlearn_ops.canonical import canonical_json
from unlearn_ops.errors import ReceiptError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from unlearn_ops.compliance.audit import RequestAudit
    from unlearn_ops.settings import Settings
    from unlearn_ops.sisa.verification import Certificate
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "ALGORITHM",
    "RECEIPT_KEY_ID",
    "ReceiptCheck",
    "certificate_digest",
    "check_receipt",
    "compare_facts",
    "issue_receipt",
    "receipt_facts",
    "render_receipt_html",
    "sign_receipt",
    "signature_problem",
]

ALGORITHM = "hmac-sha256"
RECEIPT_KEY_ID = "receipt"
RECEIPT_VERSION = 1
# The facts that must still hold when a receipt is checked, with their names in words.
_COMPARED = {
    ("records",): "records",
    ("received_at",): "received",
    ("served_at",): "served",
    ("first_version",): "first version that honoured it",
    ("champion", "version"): "champion",
    ("champion", "honours"): "champion honours the request",
    ("purge", "status"): "purge",
    ("purge", "at"): "purged at",
}
EXACT = "exact: the shards that held the records were retrained from the data without them"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def certificate_digest(certificate: Certificate) -> str:
    """SHA-256 of an exactness certificate's verdicts and weight hashes (no timing)."""
    shards = [
        {
            "shard_id": s.shard_id,
            "served_hash": s.served_hash,
            "scratch_hash": s.scratch_hash,
            "exact": s.exact,
        }
        for s in certificate.shards
    ]
    text = canonical_json(
        {"passed": certificate.passed, "training_hash": certificate.training_hash, "shards": shards}
    )
    return hashlib.sha256(text).hexdigest()


def receipt_facts(
    audit: RequestAudit, model_name: str, certificate: str | None = None
) -> dict[str, Any]:
    """What a receipt states about one request, from its audit (no record id, no feature).

    Args:
        audit: the request's audit (:func:`unlearn_ops.compliance.audit.audit_request`).
        model_name: the registered model.
        certificate: the digest of the first honouring version's exactness certificate.
    """
    purged = audit.purged_at is not None
    return {
        "request_id": audit.request_id,
        "model": model_name,
        "state": audit.state,
        "requested_at": _iso(audit.requested_at),
        "received_at": _iso(audit.received_at),
        "served_at": _iso(audit.served_at),
        "records": audit.record_count,
        "first_version": audit.first_exact_version,
        "champion": {"version": audit.champion_version, "honours": audit.champion_honours},
        "exactness": {
            "method": "exact",
            "statement": EXACT,
            "certificate_digest": certificate,
        },
        "purge": {
            "status": "purged" if purged else "due",
            "at": _iso(audit.purged_at),
            "due_by": None if purged else _iso(audit.retention_until),
        },
        "deadline": {"due": _iso(audit.deadline), "status": audit.deadline_status},
    }


def _signed_text(document: Mapping[str, Any]) -> bytes:
    signature = document.get("signature")
    meta = signature if isinstance(signature, Mapping) else {}
    return canonical_json(
        {
            "algorithm": meta.get("algorithm"),
            "issued_at": document.get("issued_at"),
            "key_id": meta.get("key_id"),
            "receipt": document.get("receipt"),
            "version": document.get("version"),
        }
    )


def _mac(key: SecretStr, text: bytes) -> str:
    return hmac.new(key.get_secret_value().encode(), text, hashlib.sha256).hexdigest()


def sign_receipt(
    facts: Mapping[str, Any], key: SecretStr, issued_at: datetime | None = None
) -> dict[str, Any]:
    """The signed receipt document for `facts` (see the module's docstring)."""
    document: dict[str, Any] = {
        "version": RECEIPT_VERSION,
        "receipt": dict(facts),
        "issued_at": _iso(issued_at or datetime.now(UTC)),
        "signature": {"algorithm": ALGORITHM, "key_id": RECEIPT_KEY_ID},
    }
    document["signature"]["value"] = _mac(key, _signed_text(document))
    return document


def signature_problem(document: Mapping[str, Any], key: SecretStr) -> str | None:
    """What is wrong with a receipt's signature, or None when it verifies."""
    signature = document.get("signature")
    if not isinstance(signature, Mapping) or not isinstance(signature.get("value"), str):
        return "it carries no signature"
    if signature.get("algorithm") != ALGORITHM or document.get("version") != RECEIPT_VERSION:
        return f"not a version {RECEIPT_VERSION} receipt signed with {ALGORITHM}"
    if not hmac.compare_digest(_mac(key, _signed_text(document)), signature["value"]):
        return "the signature does not match: the receipt was changed, or signed with another key"
    return None


def _at(facts: Mapping[str, Any], path: tuple[str, ...]) -> object:
    value: object = facts
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def compare_facts(issued: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What changed since a receipt was issued, one line per fact (empty: all still hold)."""

    def shown(value: object) -> str:
        if value is None:
            return "none"
        return ("yes" if value else "no") if isinstance(value, bool) else str(value)

    return [
        f"{name}: {shown(_at(issued, path))} when issued, {shown(_at(now, path))} now"
        for path, name in _COMPARED.items()
        if _at(issued, path) != _at(now, path)
    ]


def _receipt_key(settings: Settings, request_id: str) -> SecretStr:
    key = settings.receipt_signing_key
    if key is None or not key.get_secret_value():
        raise ReceiptError(
            request_id,
            "no receipt key is configured",
            "set UNLEARN_OPS_RECEIPT_SIGNING_KEY (a secret kept apart from the request keys)",
        )
    return key


def issue_receipt(
    workspace: Workspace, request_id: str, *, certify: bool = False, now: datetime | None = None
) -> dict[str, Any]:
    """The signed receipt of a served request of `workspace`.

    Args:
        workspace: the workspace.
        request_id: the request.
        certify: run the exactness certificate of the first exactly honouring version and state
            its digest (retrains its shards from scratch).
        now: the issuing time (default: now).

    Raises:
        RequestNotFoundError: the ledger never received it.
        ReceiptError: no receipt key; the request is not served yet, or failed; the
            certificate does not pass.
    """
    from unlearn_ops.compliance.audit import audit_request

    key = _receipt_key(workspace.settings, request_id)
    audit = audit_request(workspace, request_id, now=now)
    first = audit.first_exact_version
    if audit.approximate is not None:
        raise ReceiptError(
            request_id,
            f"the request is served only approximately so far (provisional version "
            f"{audit.approximate.get('version')})",
            "a receipt is issued once its exact retrain serves: `unlearn-ops retrain-exact`",
        )
    if audit.served_at is None or first is None:
        raise ReceiptError(
            request_id,
            f"the request is {audit.state}, not served yet",
            "a receipt is issued once a version that honours it serves; see `unlearn-ops audit`",
        )
    digest = None
    if certify:
        from unlearn_ops.workflow.certification import certify_version

        live = {v.version for v in workspace.registry().versions()}
        if first not in live:
            raise ReceiptError(
                request_id,
                f"version {first} was purged: there is nothing to certify",
                "issue the receipt without --certify",
            )
        certificate = certify_version(workspace, first)
        if not certificate.passed:
            raise ReceiptError(
                request_id,
                f"the exactness certificate of version {first} fails",
                "see `unlearn-ops verify`",
            )
        digest = certificate_digest(certificate)
    return sign_receipt(receipt_facts(audit, workspace.model_name, digest), key, now)


@dataclass(frozen=True)
class ReceiptCheck:
    """A receipt checked: its signature, and what changed since it was issued."""

    request_id: str
    signature_problem: str | None
    changes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """The signature verifies and every fact still holds."""
        return self.signature_problem is None and not self.changes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "request_id": self.request_id,
            "passed": self.passed,
            "signature": self.signature_problem or "valid",
            "changes": list(self.changes),
        }


def check_receipt(
    workspace: Workspace, document: Mapping[str, Any], *, now: datetime | None = None
) -> ReceiptCheck:
    """Verify a receipt's signature and compare its facts with the ledger and registry now.

    Raises:
        ReceiptError: not a receipt (no request id), or no receipt key here.
        RequestNotFoundError: the ledger never received its request.
    """
    from unlearn_ops.compliance.audit import audit_request

    facts = document.get("receipt")
    request_id = facts.get("request_id") if isinstance(facts, Mapping) else None
    if not isinstance(facts, Mapping) or not isinstance(request_id, str):
        raise ReceiptError("the file", "it is not a receipt (no receipt.request_id)")
    problem = signature_problem(document, _receipt_key(workspace.settings, request_id))
    audit = audit_request(workspace, request_id, now=now)
    current = receipt_facts(audit, workspace.model_name)
    return ReceiptCheck(request_id, problem, compare_facts(facts, current))


def render_receipt_html(document: Mapping[str, Any]) -> str:
    """The receipt as one self-contained HTML page (template `receipt.html.j2`, escaped)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("unlearn_ops.compliance", "templates"),
        autoescape=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    facts = document["receipt"]
    return environment.get_template("receipt.html.j2").render(
        facts=facts,
        issued_at=document.get("issued_at"),
        signature=document.get("signature", {}),
        exact=facts["exactness"],
    )
