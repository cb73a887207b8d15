"""Errors raised by unlearn-ops: one base, each subclass builds its message from its fields.

The tree::

    UnlearnOpsError
    ├── ConfigError                     params.yaml or settings are invalid
    ├── DatasetError (ValueError)       a table cannot be used as a dataset
    ├── UnknownDatasetError (KeyError)  a dataset name that no loader knows
    ├── UnknownModelError (KeyError)    a model name that no factory knows
    ├── UnknownMethodError (KeyError)   an approximate unlearning method, or option, unknown
    ├── InvalidRequestError (ValueError) a forget request that cannot be acted on
    │   └── ReplayedRequestError        a request id seen before with other content
    ├── UnauthenticatedRequestError (PermissionError) unsigned, forged or expired
    ├── UnknownRecordsError (KeyError)  ids to forget that the training data never held
    ├── RequestNotFoundError (KeyError) a request id that the ledger never received
    ├── StoreError                      the ensemble's files are missing or inconsistent
    ├── WorkspaceNotFoundError          no workspace (params.yaml + dvc.yaml) at a path
    ├── LineageError                    git or DVC refused an operation
    ├── RegistryError                   MLflow refused an operation
    ├── OrchestratorError               Prefect's API refused an operation (or is unreachable)
    ├── VersionNotFoundError (KeyError) a model version or alias that does not exist
    │   └── VersionPurgedError          a version that a purge deleted (it held forgotten records)
    ├── GateFailedError                 a new version failed its gates (it stays unpromoted)
    ├── UnsafeVersionError              a version that misses a recorded deletion (never champion)
    ├── RollbackError                   a rollback that cannot be done as asked
    ├── ReceiptError                    a receipt that cannot be issued, or does not verify
    ├── AdoptionError (ValueError)      a registered model `adopt` cannot take over
    ├── CheckpointNotFoundError (KeyError)
    ├── DeviceUnavailableError          `cuda` asked for where there is none
    ├── DeviceMismatchError             a certificate asked on another kind of device
    ├── ClusterUnreachableError (ConnectionError) no Dask scheduler at the configured address
    ├── HoldError (ValueError)          a legal hold that cannot be placed or released as asked
    ├── NotAForgetVersionError (ValueError) a version the membership audit cannot audit
    └── FederationError                 the Flower federation failed (deployment, run, removal)

Every message says what was wrong, what was given, what is allowed and what to do next.
The errors that say what they concern, the problem and a hint (datasets, requests, stores,
rollbacks, receipts, the federation, adoption) build it through one private base,
`_ProblemError`, which keeps `problem` and `hint` and joins the hint where there is one.
The CLI prints `str(error)` as one line and exits non-zero.

Why this module is long: it is the one home of every error the package raises (the CLI,
the flows and the tests catch them by class), so the tree above stays readable in one place;
each class is a few lines of message building.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


def _preview(values: Iterable[object], limit: int = 5) -> str:
    items = [str(value) for value in values]
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return f"{shown} (and {more} more)" if more > 0 else shown


class UnlearnOpsError(Exception):
    """Base class of every error that unlearn-ops raises on purpose."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise quote the message.
        return str(self.args[0]) if self.args else self.__class__.__name__


class _ProblemError(UnlearnOpsError):
    """An error that names what it concerns and the problem, then what to do, if anything.

    The message is `headline`, then `separator` and `hint` where there is a hint.

    Args:
        headline: what it concerns and the problem, in words.
        problem: the problem alone (kept for callers that reword it).
        hint: what to do about it; empty where there is nothing to say.
        separator: what stands between the headline and the hint.
    """

    def __init__(self, headline: str, problem: str, hint: str, separator: str = "; ") -> None:
        self.problem = problem
        self.hint = hint
        super().__init__(f"{headline}{separator}{hint}" if hint else headline)


class ConfigError(UnlearnOpsError, ValueError):
    """Params or settings do not validate.

    Args:
        source: where the configuration came from (a path or "settings").
        problems: one line per problem found.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"invalid configuration in {source}: {'; '.join(self.problems)}")

    @classmethod
    def from_validation(
        cls, source: str, exc: ValidationError, root: str = "(root)"
    ) -> ConfigError:
        """One problem per error of a pydantic validation, `field.path: message` (`root` for
        the whole object; never the input value, which may be a secret)."""
        return cls(
            source,
            [
                f"{'.'.join(str(p) for p in err['loc']) or root}: {err['msg']}"
                for err in exc.errors()
            ],
        )


class _SubjectError(_ProblemError):
    """A problem with one named thing; the subclass's `headline` words the message.

    Args:
        subject: what it concerns (a file, a version, a request, an operation, a model URI).
        problem: what stands in the way, in the backend's own words where there are some
            (whitespace runs become one space in the message).
        hint: what to do instead, after `separator` in the message; the class's `remedy`
            when not given.
    """

    headline = "{subject}: {problem}"
    separator = "; "
    remedy = ""

    def __init__(self, subject: object, problem: str, hint: str = "") -> None:
        self.subject = subject
        detail = " ".join(problem.split()) or "no detail"
        message = self.headline.format(subject=subject, problem=detail)
        super().__init__(message, problem, hint or self.remedy, self.separator)


class DatasetError(_SubjectError, ValueError):
    """A table cannot be used as a dataset; `subject` is the file or dataset name."""

    headline = "dataset {subject}: {problem}"
    separator = ". "


class _UnknownNameError(UnlearnOpsError, KeyError):
    """A name that is not among the known ones; the subclass's `template` words the message.

    Args:
        name: the name asked for (`{name!r}` in the template).
        known: the names there are (`{known}`, joined by commas).
        problem: another problem with a known name, worded instead of the template.
    """

    template = "{name!r} is unknown; known: {known}"
    kind = "name"

    def __init__(self, name: str, known: Sequence[str], problem: str | None = None) -> None:
        self.name = name
        self.known = list(known)
        message = self.template.format(name=name, known=", ".join(self.known))
        super().__init__(f"{self.kind} {name!r}: {problem}" if problem else message)


class UnknownDatasetError(_UnknownNameError):
    """A dataset name that is neither a built-in loader nor an existing file."""

    kind = "dataset"
    template = (
        "dataset {name!r} is neither a file nor a built-in dataset; built-in datasets are: "
        "{known}; give a path to a .csv or .parquet file instead"
    )


class UnknownModelError(_UnknownNameError):
    """A model name that no registered factory provides."""

    kind = "model"
    template = (
        "model {name!r} is not registered; registered models are: {known}; register one with "
        "unlearn_ops.register_model or the 'unlearn_ops.models' entry point"
    )


class UnknownMethodError(_UnknownNameError):
    """An approximate unlearning method that is not registered, or an option it does not take."""

    kind = "unlearning method"
    template = "unlearning method {name!r}: it is not registered; registered methods are: {known}"


class InvalidRequestError(_ProblemError, ValueError):
    """A request to forget that cannot be acted on; nothing is changed.

    Args:
        problem: what is wrong with it.
        hint: what to do instead.

    Attributes:
        kind: the refusal's name where intakes record it (`malformed` here).
    """

    kind = "malformed"

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(f"invalid request: {problem}", problem, hint)


class ReplayedRequestError(InvalidRequestError):
    """A request id that arrived before with other content: refused, nothing changed.

    A request id is the idempotency key: the same id with the same content is the same
    request (a duplicate delivery), the same id with other content is a replay with changes.
    """

    kind = "replayed-with-changes"

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(
            f"request {request_id} was received before with other content",
            "a request id is an idempotency key: use a new id for new records",
        )


class UnauthenticatedRequestError(UnlearnOpsError, PermissionError):
    """A deletion request whose origin cannot be trusted: never acted on.

    Args:
        kind: `unsigned`, `forged`, `expired`, `not-yet-valid`, `unknown-key`,
            `bad-token`, or of a producer's key that matched: `revoked-key`, `expired-key`,
            `not-yet-valid-key`, `foreign-key` (what the check found; also the reason
            kept for the rejection).
        detail: one line on what to do; never a secret, a signature or a token.
    """

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"unauthenticated request ({kind}): {detail}")


class UnknownRecordsError(UnlearnOpsError, KeyError):
    """Ids asked to be forgotten that were never in the training data.

    Nothing is changed when this is raised: a request either applies whole or not at all.
    """

    def __init__(self, record_ids: Sequence[object], total: int) -> None:
        self.record_ids = list(record_ids)
        self.total = total
        super().__init__(
            f"{len(self.record_ids)} of {total} record ids are not in the training data: "
            f"{_preview(self.record_ids)}; nothing was changed; check the ids "
            "(ids are compared as text, so 7 and '7' name the same record)"
        )


class StoreError(_SubjectError):
    """The ensemble's files are missing or inconsistent with each other."""

    @property
    def path(self) -> object:
        """The file or folder concerned (the subject)."""
        return self.subject


class CheckpointNotFoundError(UnlearnOpsError, KeyError):
    """A checkpoint key that the store does not hold."""

    def __init__(self, key: str, store: object) -> None:
        self.key = key
        super().__init__(f"checkpoint {key} is not in {store}")


class DeviceUnavailableError(_SubjectError, RuntimeError):
    """The configured device (`subject`) cannot be used on this machine."""

    headline = "device {subject!r} is not available: {problem}"
    remedy = "set UNLEARN_OPS_DEVICE=auto (or cpu) to train where it can"


class WorkspaceNotFoundError(UnlearnOpsError):
    """No workspace at (or above) a path."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(
            f"no workspace at {path}: params.yaml and dvc.yaml not found; "
            "create one with `unlearn-ops init DIR`, or pass --workspace DIR"
        )


class LineageError(UnlearnOpsError):
    """git or DVC failed; the message carries theirs."""

    def __init__(self, operation: str, detail: str) -> None:
        self.operation = operation
        lines = detail.strip().splitlines()
        super().__init__(f"{operation} failed: {lines[-1] if lines else 'no detail'}")


class RegistryError(UnlearnOpsError):
    """MLflow failed; the message carries its own."""

    def __init__(self, operation: str, detail: str) -> None:
        self.operation = operation
        super().__init__(f"MLflow {operation} failed: {detail.strip()}")


class OrchestratorError(UnlearnOpsError):
    """Prefect's API failed or could not be reached; the message carries its own."""

    def __init__(self, operation: str, detail: str) -> None:
        self.operation = operation
        super().__init__(f"Prefect {operation} failed: {' '.join(detail.split()) or 'no detail'}")


class VersionNotFoundError(UnlearnOpsError, KeyError):
    """A model version or alias that the registry does not hold."""

    def __init__(self, model_name: str, version: str, known: Sequence[str] = ()) -> None:
        self.model_name = model_name
        self.version = version
        self.known = tuple(known)
        hint = f"; versions are: {_preview(known, 10)}" if known else "; train a first version"
        super().__init__(f"model {model_name!r} has no version {version!r}{hint}")


class VersionPurgedError(VersionNotFoundError):
    """A version that a purge deleted: it held what requests asked to forget (records, or a
    federation client's data).

    Args:
        missing: the registry's error for the version.
        purged_at: when the purge deleted it (the ledger's time).
        request_ids: the requests whose records (or client) it held.
    """

    def __init__(
        self, missing: VersionNotFoundError, purged_at: str, request_ids: Sequence[str]
    ) -> None:
        super().__init__(missing.model_name, missing.version, missing.known)
        self.purged_at = purged_at
        self.request_ids = tuple(request_ids)
        known = f"; versions are: {_preview(self.known, 10)}" if self.known else ""
        self.args = (
            f"version {missing.version} of model {missing.model_name!r} was purged at "
            f"{purged_at}: it held what {_preview(self.request_ids, 5)} asked to forget, and a "
            f"purged version never comes back{known}",
        )


class GateFailedError(UnlearnOpsError):
    """A new model version failed its gates: registered with its results, not promoted."""

    def __init__(self, version: str, summary: str, champion: str | None) -> None:
        self.version = version
        self.summary = summary
        self.champion = champion
        kept = f"champion stays at version {champion}" if champion else "no champion was set"
        super().__init__(f"version {version} not promoted ({kept}): {summary}")


class RequestNotFoundError(UnlearnOpsError, KeyError):
    """A request id that the ledger never received.

    Args:
        request_id: the id asked about.
        ledger: the ledger file searched.
        known: the request ids the ledger holds.
    """

    def __init__(self, request_id: str, ledger: object, known: Sequence[str] = ()) -> None:
        self.request_id = request_id
        self.ledger = ledger
        self.known = list(known)
        hint = (
            f"requests it holds: {_preview(self.known, 10)}"
            if self.known
            else "it holds no request yet; send one with `unlearn-ops forget`"
        )
        super().__init__(
            f"request {request_id!r} is not in the ledger {ledger}; {hint}; "
            "check the id (request ids are case-sensitive)"
        )


class UnsafeVersionError(UnlearnOpsError):
    """A version that does not honour every deletion recorded so far: never `champion` again.

    Args:
        version: the version asked for.
        missing: the recorded requests it does not honour, oldest first.
        champion: where `champion` points (unchanged).
    """

    def __init__(self, version: str, missing: Sequence[str], champion: str | None) -> None:
        self.version = version
        self.missing = list(missing)
        self.champion = champion
        kept = f"champion stays at version {champion}" if champion else "no champion was set"
        super().__init__(
            f"version {version} does not honour {len(self.missing)} deletion request(s) "
            f"recorded since it was made ({_preview(self.missing)}), so it can never be "
            f"champion again ({kept}); rebuild it with those deletions applied: "
            f"`unlearn-ops rollback --to {version} --replay`"
        )


class RollbackError(_SubjectError):
    """A rollback that cannot be done as asked; nothing was changed.

    `subject` is the version asked for (or a description of the default target).
    """

    headline = "cannot roll back to {subject}: {problem}"


class ReceiptError(_SubjectError):
    """A data subject's receipt that cannot be issued, or a file that is not one.

    `subject` is the request (or the file) concerned.
    """

    headline = "receipt for {subject}: {problem}"


class FederationError(_SubjectError):
    """The Flower federation could not do what was asked (deployment, run, or a removal).

    `subject` is what was tried (`start the SuperLink`, `flwr run`, `remove client`).
    """

    headline = "federation: {subject} failed: {problem}"


class AdoptionError(_SubjectError, ValueError):
    """A registered model, or its table, that `unlearn-ops adopt` cannot take over (issue 14).

    Nothing is created when it is raised. `subject` is the model asked for; the problem is
    what is wrong (not a torch classifier, features, ids).
    """

    headline = "cannot adopt {subject}: {problem}"


class ReplayMismatchError(UnlearnOpsError, RuntimeError):
    """Shards trained under other conditions than a replay would use: it could not match them.

    Raised before anything is trained (the certificate's replay, a shard brought back).

    Attributes:
        trained: what the shards were trained with (a device kind, a key's fingerprint).
        replay: what the replay would use instead.
        shards: the shards concerned.
    """

    def __init__(self, shards: Sequence[int], trained: str, replay: str, message: str) -> None:
        self.shards, self.trained, self.replay = list(shards), trained, replay
        super().__init__(f"shards {self.shards} {message}")


class DeviceMismatchError(ReplayMismatchError):
    """A certificate asked on another device kind than the weights' (CPU and CUDA bits differ)."""

    def __init__(self, trained_on: str, asked_on: str, shards: Sequence[int]) -> None:
        self.trained_on, self.asked_on = trained_on, asked_on
        super().__init__(
            shards,
            trained_on,
            asked_on,
            f"were trained on {trained_on!r} but the certificate would retrain them on "
            f"{asked_on!r}: exactness is certified on the same kind of device; "
            f"set UNLEARN_OPS_DEVICE={trained_on} (on a machine that has one)",
        )


class NoiseKeyMismatchError(ReplayMismatchError):
    """Shards whose DP noise came from another key than the one set.

    The keys are named by their fingerprints (:func:`unlearn_ops.sisa.dp.noise_key_fingerprint`),
    never by their value.
    """

    def __init__(self, trained_with: str, set_now: str, shards: Sequence[int]) -> None:
        super().__init__(
            shards,
            trained_with,
            set_now,
            f"drew their DP noise from the key with fingerprint {trained_with}, but "
            f"UNLEARN_OPS_DP_NOISE_KEY has fingerprint {set_now}: a retrain with another key "
            "cannot reproduce them; set the key they were trained with",
        )


class ClusterUnreachableError(_SubjectError, ConnectionError):
    """No Dask scheduler answers at the configured address (`subject`); nothing was run."""

    headline = "no Dask scheduler answers at {subject} ({problem})"
    remedy = "start one there, fix UNLEARN_OPS_DASK_ADDRESS, or unset it to start a local cluster"


class HoldError(UnlearnOpsError, ValueError):
    """A hold that cannot be placed or released as asked; nothing is changed.

    Args:
        problem: what is wrong.
        hint: what to do instead.
    """

    def __init__(self, problem: str, hint: str = "") -> None:
        self.problem = problem
        super().__init__(f"legal hold: {problem}" + (f"; {hint}" if hint else ""))


class NotAForgetVersionError(UnlearnOpsError, ValueError):
    """A version that the membership audit cannot audit (not a forget, no parent, S < 3).

    Args:
        version: the version asked for.
        problem: why it cannot be audited.
        remedy: what to do instead.
    """

    def __init__(
        self,
        version: str,
        problem: str,
        remedy: str = "audit a version made by `unlearn-ops forget` whose parent is "
        "still registered",
    ) -> None:
        super().__init__(f"cannot audit version {version} for membership: {problem}; {remedy}")
        self.version = version


# Every public error class above, by name: the list cannot fall behind the classes.
__all__ = sorted(
    name
    for name, value in list(globals().items())
    if isinstance(value, type) and issubclass(value, UnlearnOpsError) and name[0] != "_"
)
