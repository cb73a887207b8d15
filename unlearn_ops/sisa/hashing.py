"""Stable hashes of record ids and row contents, the basis of sharding and checkpoint keys.

A record id is hashed through its text (`str(record_id)`), so an id read as the integer 7
from a CSV and the string "7" typed on a command line are the same record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

__all__ = ["canonical_id", "derive_seed", "digest_text", "stable_hash64"]


def canonical_id(record_id: object) -> str:
    """The text form under which a record id is hashed, sorted and compared."""
    if isinstance(record_id, float | np.floating) and float(record_id).is_integer():
        return str(int(record_id))
    return str(record_id)


def stable_hash64(record_ids: Iterable[object], salt: str) -> np.ndarray:
    """A salted 64-bit BLAKE2b hash per id, as uint64; independent of every other id."""
    key = hashlib.sha256(salt.encode()).digest()
    return np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(canonical_id(r).encode(), digest_size=8, key=key).digest(),
                "big",
            )
            for r in record_ids
        ),
        dtype=np.uint64,
    )


def derive_seed(*parts: object) -> int:
    """A 63-bit seed derived from its parts (seed, shard, stage, epoch, purpose)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def digest_text(*parts: str) -> str:
    """SHA-256 hex digest of the parts, separated so that ("ab", "c") != ("a", "bc")."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x1f")
    return digest.hexdigest()
