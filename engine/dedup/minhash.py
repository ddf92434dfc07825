"""Word n-gram shingles and MinHash signatures, vectorised over a whole batch with NumPy.

Shingling: the words of the normalised text (`engine.dedup.normalise.normalised_words`); every word is
hashed once per batch (xxh3-64 over the batch's distinct words, seeded), and the hash of a word n-gram is
a fixed mixing of its n word hashes computed over all positions of the batch at once. A document with fewer than `ngram`
words has one shingle made of all its words; a document without words has no shingle (and no signature).

MinHash, two backends over the same shingle hashes (`backend` is part of the signature folder's name, so
the two never mix):

- `rensa` (default): rensa's R-MinHash over the flat shingle-hash buffer of the whole batch
  (`RMinHash.digest_matrix_from_flat_token_hashes`, Rust, 32-bit values, algorithm version in
  `engine.spec.dedup_parameters_name`); its MinHash step is ~15x faster than the NumPy backend's (the whole signature
  ~1.8x) and unbiased (tests/dedup/test_minhash.py).
- `numpy`: `num_perm` hash functions `h_k(x) = a_k * x + b_k (mod 2**64)` with odd `a_k`, applied to the
  (already well-mixed) 64-bit shingle hashes; parameters from NumPy's PCG64 seeded with `seed`.

The signature is the minimum per function over a document's shingles; the same seed gives the same
signatures in every process and on every machine (xxh3, PCG64 and rensa's versioned algorithm are
specified bit for bit).
FineWeb's parameters are 5-grams, 14 bands x 8 rows (Penedo et al. 2024, "The FineWeb Datasets", sec. 3.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from engine.dedup.normalise import Words, normalised_words
from engine.dedup.xxh3 import xxh3_64

Backend = Literal["rensa", "numpy"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

EMPTY_SIGNATURE = np.iinfo(np.uint64).max
"""Signature value of a document without shingles (never used as a band key)."""

_MUL = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_CHUNK_CELLS = 1 << 22  # shingles x permutations evaluated at once (32 MiB of uint64)


def mix64(x: U64) -> U64:
    """SplitMix64's finaliser, elementwise: a bijective 64-bit mixer (Steele et al. 2014)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class Shingles:
    """The shingle hashes of a batch: `hashes[offsets[d]:offsets[d + 1]]` belong to document `d`.

    `text_hashes[d]` (when asked for) hashes document `d`'s whole sequence of normalised words (equal for
    documents whose normalised texts are equal), for labelling exact copies.
    """

    hashes: U64
    offsets: I64
    text_hashes: U64 | None = None

    @property
    def counts(self) -> I64:
        return np.diff(self.offsets)


def word_hashes(words: Words, seed: int) -> U64:
    """xxh3-64 of every word of the batch (seeded), computed once per distinct word (vectorised: `xxh3`)."""
    return xxh3_64(words.vocabulary, seed)[words.indices]


def shingle_hashes(
    texts: pa.Array | pa.ChunkedArray,
    *,
    ngram: int,
    seed: int,
    max_chars: int | None = None,
    with_text_hashes: bool = False,
) -> Shingles:
    """64-bit hashes of the word `ngram`-grams of every normalised text of a batch."""
    words = normalised_words(texts, max_chars=max_chars)
    hashes = word_hashes(words, seed)
    offsets = words.offsets
    n_words = np.diff(offsets)
    n_tokens = len(hashes)
    shingle_counts = np.where(n_words >= ngram, n_words - ngram + 1, np.minimum(n_words, 1)).astype(np.int64)
    shingle_offsets = np.zeros(len(n_words) + 1, dtype=np.int64)
    np.cumsum(shingle_counts, out=shingle_offsets[1:])

    # Every full n-gram of the flat token array at once (slices, no gathers); those crossing a document
    # boundary are dropped below.
    rolling = np.zeros(max(n_tokens - ngram + 1, 0), dtype=np.uint64)
    if len(rolling):
        rolling = hashes[: len(rolling)].copy()
        for j in range(1, ngram):
            rolling *= _MUL
            rolling ^= hashes[j : j + len(rolling)]
    long_docs = n_words >= ngram
    valid = np.zeros(len(rolling), dtype=np.int64)
    starts = offsets[:-1][long_docs]
    ends = offsets[1:][long_docs] - ngram + 1  # exclusive
    np.add.at(valid, starts, 1)
    np.add.at(valid, ends[ends < len(valid)], -1)
    inside = np.cumsum(valid) > 0

    out = np.empty(int(shingle_offsets[-1]), dtype=np.uint64)
    out_long = np.repeat(long_docs, shingle_counts)
    out[out_long] = rolling[inside]
    short_docs = np.flatnonzero((n_words > 0) & ~long_docs)
    if len(short_docs):  # fewer words than `ngram`: one shingle of all of them
        acc = hashes[offsets[short_docs]].copy()
        for j in range(1, ngram):
            position = offsets[short_docs] + j
            is_inside = position < offsets[short_docs + 1]
            acc = np.where(is_inside, (acc * _MUL) ^ hashes[np.minimum(position, n_tokens - 1)], acc)
        out[shingle_offsets[short_docs]] = acc
    text_hashes = _sequence_hashes(hashes, offsets) if with_text_hashes else None
    return Shingles(mix64(out ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF)), shingle_offsets, text_hashes)


def _sequence_hashes(hashes: U64, offsets: I64) -> U64:
    """An order-sensitive 64-bit hash of each document's word hashes (sum of position-mixed terms)."""
    positions = np.arange(len(hashes), dtype=np.int64) - np.repeat(offsets[:-1], np.diff(offsets))
    terms = mix64(hashes ^ mix64(positions.astype(np.uint64) * _MUL))
    sums = np.zeros(len(hashes) + 1, dtype=np.uint64)
    np.cumsum(terms, out=sums[1:])
    return mix64((sums[offsets[1:]] - sums[offsets[:-1]]) ^ np.diff(offsets).astype(np.uint64))


def permutations(num_perm: int, seed: int) -> tuple[U64, U64]:
    """The `(a, b)` parameters of the `num_perm` hash functions (odd `a`), reproducible from `seed`."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(0, 2**64, size=num_perm, dtype=np.uint64, endpoint=False) | np.uint64(1)
    b = rng.integers(0, 2**64, size=num_perm, dtype=np.uint64, endpoint=False)
    return a, b


def minhash(shingles: Shingles, a: U64, b: U64) -> U64:
    """Signatures, shape `(documents, num_perm)`; rows of documents without shingles are `EMPTY_SIGNATURE`."""
    counts = shingles.counts
    n_docs, num_perm = len(counts), len(a)
    out = np.full((n_docs, num_perm), EMPTY_SIGNATURE, dtype=np.uint64)
    has = np.flatnonzero(counts > 0)
    if len(has) == 0:
        return out
    offsets = shingles.offsets
    hashes = shingles.hashes
    max_rows = max(1, _CHUNK_CELLS // num_perm)
    i = 0
    while i < len(has):
        # A run of documents whose shingles fit in one chunk (at least one document).
        j = i + 1
        first = offsets[has[i]]
        while j < len(has) and offsets[has[j] + 1] - first <= max_rows:
            j += 1
        docs = has[i:j]
        lo, hi = int(offsets[docs[0]]), int(offsets[docs[-1] + 1])
        # (permutation, shingle) layout: the reduction runs over contiguous memory.
        values = np.multiply(a[:, None], hashes[None, lo:hi])
        np.add(values, b[:, None], out=values)
        out[docs] = np.minimum.reduceat(values, offsets[docs] - lo, axis=1).T
        i = j
    return out


def band_hashes(signatures: U64, *, bands: int, rows: int) -> U64:
    """One 64-bit key per band, shape `(documents, bands)`, from `rows` consecutive signature values."""
    n_docs = signatures.shape[0]
    sig = signatures[:, : bands * rows].reshape(n_docs, bands, rows)
    acc = np.zeros((n_docs, bands), dtype=np.uint64)
    for r in range(rows):
        acc = mix64((acc * _MUL) ^ sig[:, :, r])
    return acc


def minhash_rensa(shingles: Shingles, num_perm: int, seed: int) -> U64:
    """Signatures by rensa's R-MinHash; rows of documents without shingles are `EMPTY_SIGNATURE`."""
    import rensa

    n_docs = len(shingles.counts)
    if n_docs == 0:
        return np.zeros((0, num_perm), dtype=np.uint64)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(shingles.hashes, shingles.offsets, num_perm, seed)
    out = np.array(matrix.to_rows(), dtype=np.uint64).reshape(n_docs, num_perm)
    out[shingles.counts == 0] = EMPTY_SIGNATURE
    return out


def compute_signatures(
    texts: pa.Array | pa.ChunkedArray,
    *,
    ngram: int,
    num_perm: int,
    seed: int,
    backend: Backend = "rensa",
    max_chars: int | None = None,
) -> U64:
    """MinHash signatures of a batch of texts (normalised here), shape `(documents, num_perm)`."""
    shingles = shingle_hashes(texts, ngram=ngram, seed=seed, max_chars=max_chars)
    return signatures_of(shingles, num_perm=num_perm, seed=seed, backend=backend)


def signatures_of(shingles: Shingles, *, num_perm: int, seed: int, backend: Backend = "rensa") -> U64:
    """MinHash signatures of already computed shingles, shape `(documents, num_perm)`."""
    if backend == "rensa":
        return minhash_rensa(shingles, num_perm, seed)
    a, b = permutations(num_perm, seed)
    return minhash(shingles, a, b)
