"""Exact duplicates: one 64-bit xxh3 hash of each normalised text.

Two documents are exact duplicates when their normalised texts (`engine.dedup.normalise`: case, digits,
punctuation, whitespace and diacritics folded) are equal. With 64-bit hashes the expected number of colliding
pairs among `n` distinct texts is about `n**2 / 2**65` (0.03 for a billion documents).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import xxhash


def exact_hashes(normalised: pa.Array, *, seed: int = 0) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """xxh3-64 of every normalised text, and whether the text is non-empty (empty texts get no key)."""
    values = normalised.cast(pa.large_binary()).to_pylist()
    hashes = np.fromiter((xxhash.xxh3_64_intdigest(v or b"", seed) for v in values), dtype=np.uint64, count=len(values))
    has_text = np.asarray(pc.greater(pc.binary_length(normalised), 0).to_numpy(zero_copy_only=False), dtype=bool)
    return hashes, has_text
