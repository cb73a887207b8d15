"""JSON forms of values: the canonical text that is signed or hashed, and JSON-ready views.

Keys sorted, no whitespace between tokens. Two spellings exist on disk and on the wire,
and neither may change, or old signatures and hash chains stop verifying:

* signed requests (:mod:`unlearn_ops.deletion.envelope`) sign UTF-8 bytes with non-ASCII
  characters kept as they are: :func:`canonical_json`;
* the ledger's hash chain and the provenance tags escape non-ASCII as ``\\uXXXX``:
  :func:`canonical_text` with ``ascii_only=True``.

:func:`json_ready` is the JSON-ready view (``to_dict``) of a dataclass, made by pydantic
from its field types: tuples become lists, mapping keys strings, and a field annotated
with a `PlainSerializer` is written its own way. A dataclass that derives from
:class:`JsonReady` has it as its ``to_dict``.

Example::

    >>> canonical_json({"b": 1, "a": "é"})
    b'{"a":"\\xc3\\xa9","b":1}'
    >>> canonical_text({"b": 1, "a": "é"}, ascii_only=True)
    '{"a":"\\\\u00e9","b":1}'
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

__all__ = ["JsonReady", "canonical_json", "canonical_text", "json_ready"]


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


# Building an adapter costs milliseconds: once per type.
_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def json_ready(value: object) -> dict[str, Any]:
    """The fields of a dataclass instance as JSON-ready Python values, in field order.

    Raises:
        pydantic_core.PydanticSerializationError: a field holds what JSON cannot.
    """
    kind = type(value)
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    dumped: dict[str, Any] = adapter.dump_python(value, mode="json")
    return dumped


class JsonReady:
    """A dataclass whose :meth:`to_dict` is its :func:`json_ready` view."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return json_ready(self)
