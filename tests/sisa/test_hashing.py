"""Canonical ids, salted id hashes, derived seeds and separated digests."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_ops.sisa.hashing import canonical_id, derive_seed, digest_text, stable_hash64

ids = st.one_of(st.integers(-(10**12), 10**12), st.text(max_size=12))


@pytest.mark.parametrize(
    ("record_id", "expected"),
    [
        (7, "7"),
        ("7", "7"),
        (7.0, "7"),
        (np.int64(7), "7"),
        (np.float32(7.0), "7"),
        (-3.0, "-3"),
        (7.5, "7.5"),
        ("007", "007"),
        ("a b", "a b"),
    ],
)
def test_canonical_id_is_the_text_form(record_id: object, expected: str) -> None:
    assert canonical_id(record_id) == expected


def test_integer_and_text_ids_hash_alike() -> None:
    as_numbers = stable_hash64([7, 8.0, np.int64(9)], "s")
    as_text = stable_hash64(["7", "8", "9"], "s")
    np.testing.assert_array_equal(as_numbers, as_text)
    assert as_numbers.dtype == np.uint64


def test_hash_depends_on_the_salt_and_the_id() -> None:
    first = stable_hash64(["a", "b"], "one")
    assert len(set(first.tolist())) == 2
    assert not np.array_equal(first, stable_hash64(["a", "b"], "two"))


def test_hash_is_keyed_blake2b_of_the_id() -> None:
    key = hashlib.sha256(b"salt").digest()
    expected = int.from_bytes(hashlib.blake2b(b"42", digest_size=8, key=key).digest(), "big")
    assert int(stable_hash64([42], "salt")[0]) == expected


def test_hash_of_no_ids_is_empty() -> None:
    hashes = stable_hash64([], "s")
    assert hashes.shape == (0,)
    assert hashes.dtype == np.uint64


@settings(max_examples=50, deadline=None)
@given(st.lists(ids, max_size=20), st.lists(ids, max_size=20), st.text(min_size=1, max_size=8))
def test_an_ids_hash_never_depends_on_the_other_ids(
    left: list[object], right: list[object], salt: str
) -> None:
    together = stable_hash64(left + right, salt)
    np.testing.assert_array_equal(together[: len(left)], stable_hash64(left, salt))
    np.testing.assert_array_equal(together[len(left) :], stable_hash64(right, salt))


def test_derive_seed_is_deterministic_and_63_bit() -> None:
    seed = derive_seed(0, 1, 2, 3)
    assert seed == derive_seed(0, 1, 2, 3)
    assert 0 <= seed < 2**63
    assert seed == int.from_bytes(hashlib.sha256(b"0\x1f1\x1f2\x1f3").digest()[:8], "big") >> 1


def test_derive_seed_separates_its_parts() -> None:
    seeds = {
        derive_seed(0, 1, 2, 3),
        derive_seed(0, 1, 2, 4),
        derive_seed(0, 1, 3, 2),
        derive_seed(0, 12, 3),
        derive_seed(0, 1, 23),
        derive_seed(0, 1, 2, 3, "dropout"),
    }
    assert len(seeds) == 6


def test_digest_text_separates_parts() -> None:
    assert digest_text("ab", "c") != digest_text("a", "bc")
    assert digest_text("a") != digest_text("a", "")
    assert digest_text("a", "b") == hashlib.sha256(b"a\x1fb\x1f").hexdigest()
