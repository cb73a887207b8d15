"""Canonical JSON: the one text of a value that is signed, hashed or compared.

Keys sorted, no whitespace between tokens. Two spellings exist on disk and on the wire,
and neither may change, or old signatures and hash chains stop verifying:

* signed requests (:mod:`unlearn_ops.deletion.envelope`) sign UTF-8 bytes with non-ASCII
  characters kept as they are: :func:`canonical_json`;
* the ledger's hash chain and the provenance tags escape non-ASCII as ``\\uXXXX``:
  :func:`canonical_text` with ``ascii_only=True``.

Example::

    >>> canonical_json({"b": 1, "a": "é"})
    b'{"a":"\\xc3\\xa9","b":1}'
    >>> canonical_text({"b": 1, "a": "é"}, ascii_only=True)
    '{"a":"\\\\u00e9","b":1}'
"""

from __future__ import annotations

import json

__all__ = ["canonical_json", "canonical_text"]


def canonical_text(value: object, *, ascii_only: bool = False) -> str:
    """`value` as canonical JSON text: keys sorted, separators without spaces.

    Args:
        value: anything `json.dumps` accepts.
        ascii_only: escape non-ASCII characters as ``\\uXXXX`` (the ledger's and the
            provenance tags' spelling) instead of keeping them.

    Raises:
        TypeError: `value` holds something JSON cannot represent.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only)


def canonical_json(value: object) -> bytes:
    """The bytes that are signed: canonical text, non-ASCII kept, encoded as UTF-8."""
    return canonical_text(value).encode()
