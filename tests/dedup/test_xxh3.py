"""The vectorised xxh3-64 gives `xxhash.xxh3_64_intdigest` bit for bit (signatures depend on it)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dedup.xxh3 import xxh3_64


def reference(values: list[bytes | None], seed: int) -> list[int]:
    return [xxhash.xxh3_64_intdigest(v or b"", seed) for v in values]


def test_every_length_class_and_seed_matches_xxhash() -> None:
    rng = random.Random(13)
    values = [bytes(rng.getrandbits(8) for _ in range(length)) for length in range(0, 300) for _ in range(3)]
    for seed in (0, 1, 2**32 + 7, 2**63 + 5, 2**64 - 1):
        assert xxh3_64(pa.array(values, type=pa.binary()), seed).tolist() == reference(values, seed), seed


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=30), st.integers(0, 2**64 - 1))
def test_strings_with_nulls_and_slices_match_xxhash(texts: list[str | None], seed: int) -> None:
    array = pa.array(["skipped", *texts], type=pa.string()).slice(1)
    expected = reference([t.encode() if t is not None else None for t in texts], seed)
    assert xxh3_64(array, seed).tolist() == expected
    assert xxh3_64(pa.chunked_array([array.cast(pa.large_string())]), seed).tolist() == expected


def test_empty_input() -> None:
    assert xxh3_64(pa.array([], type=pa.string()), 1).dtype == np.uint64
    assert len(xxh3_64(pa.chunked_array([], type=pa.string()), 1)) == 0
