from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dedup.exact import exact_hashes
from engine.dedup.minhash import (
    EMPTY_SIGNATURE,
    Backend,
    band_hashes,
    compute_signatures,
    permutations,
    shingle_hashes,
)
from engine.dedup.normalise import normalise_texts
from tests.dedup.staging import VOCABULARY, mutate, random_text

REPO = Path(__file__).resolve().parents[2]


BACKENDS = pytest.mark.parametrize("backend", ["rensa", "numpy"])


def signatures(
    texts: list[str], *, ngram: int = 5, num_perm: int = 112, seed: int = 1, backend: Backend = "rensa"
) -> np.ndarray:
    normalised = normalise_texts(pa.array(texts, type=pa.large_string()))
    return compute_signatures(normalised, ngram=ngram, num_perm=num_perm, seed=seed, backend=backend)


def shingle_sets(texts: list[str], ngram: int = 5) -> list[set[int]]:
    shingles = shingle_hashes(normalise_texts(pa.array(texts, type=pa.large_string())), ngram=ngram, seed=1)
    o = shingles.offsets
    return [set(shingles.hashes[o[i] : o[i + 1]].tolist()) for i in range(len(texts))]


def test_shingles_are_word_ngrams_of_the_normalised_text() -> None:
    sets = shingle_sets(["a b c d e f", "A, b; c d E F!", "a b c", "", "f e d c b a"])
    assert len(sets[0]) == 2  # (a b c d e), (b c d e f)
    assert sets[0] == sets[1]  # normalisation makes them equal
    assert len(sets[2]) == 1  # shorter than n: one shingle of all its words
    assert sets[3] == set()
    assert sets[0].isdisjoint(sets[4])  # word order matters


@BACKENDS
def test_document_without_words_has_the_empty_signature(backend: Backend) -> None:
    sig = signatures(["", "...", "some words here"], backend=backend)
    assert (sig[0] == EMPTY_SIGNATURE).all()
    assert (sig[1] == EMPTY_SIGNATURE).all()
    assert (sig[2] != EMPTY_SIGNATURE).all()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(alphabet="abcde fgh,.ÉÀ0", max_size=80), min_size=1, max_size=6),
    st.integers(0, 5),
    st.randoms(use_true_random=False),
)
def test_signature_of_a_document_does_not_depend_on_its_batch(texts: list[str], index: int, rng: random.Random) -> None:
    index %= len(texts)
    alone = signatures([texts[index]])[0]
    shuffled = texts[:]
    rng.shuffle(shuffled)
    together = signatures(shuffled)
    for i, text in enumerate(shuffled):
        if text == texts[index]:
            assert (together[i] == alone).all()


@BACKENDS
def test_signatures_are_computed_in_chunks_without_changing_them(backend: Backend) -> None:
    rng = random.Random(3)
    texts = [random_text(rng, rng.randint(0, 3000)) for _ in range(40)]
    together = signatures(texts, backend=backend)
    for i in (0, 7, 39):
        assert (signatures([texts[i]], backend=backend)[0] == together[i]).all()


@BACKENDS
def test_estimate_tracks_true_jaccard(backend: Backend) -> None:
    rng = random.Random(7)
    errors = []
    for _ in range(40):
        base = random_text(rng, 300)
        other = mutate(rng, base, rng.uniform(0.0, 0.3))
        a, b = shingle_sets([base, other])
        true = len(a & b) / len(a | b)
        sig = signatures([base, other], num_perm=256, backend=backend)
        errors.append(float((sig[0] == sig[1]).mean()) - true)
    errors_arr = np.array(errors)
    assert abs(errors_arr.mean()) < 0.03, errors  # unbiased
    assert np.abs(errors_arr).max() < 0.15, errors  # std of the estimate is at most 1/(2*sqrt(256)) ~ 0.03


@BACKENDS
def test_unrelated_documents_share_no_band(backend: Backend) -> None:
    rng = random.Random(11)
    texts = [random_text(rng, 200) for _ in range(50)]
    keys = band_hashes(signatures(texts, backend=backend), bands=14, rows=8)
    assert len(np.unique(keys)) == keys.size


@BACKENDS
def test_identical_documents_have_identical_band_keys(backend: Backend) -> None:
    rng = random.Random(5)
    text = random_text(rng, 100)
    texts = [text, random_text(rng, 100), text.upper()]
    keys = band_hashes(signatures(texts, backend=backend), bands=14, rows=8)
    assert keys.shape == (3, 14)
    assert (keys[0] == keys[2]).all()
    assert not (keys[0] == keys[1]).any()


def test_permutations_depend_on_the_seed_only() -> None:
    a1, b1 = permutations(16, 3)
    a2, b2 = permutations(16, 3)
    a3, _ = permutations(16, 4)
    assert (a1 == a2).all()
    assert (b1 == b2).all()
    assert not (a1 == a3).all()
    assert (a1 % 2 == 1).all()


_CHILD = """
import hashlib, sys, pyarrow as pa
from engine.dedup.minhash import compute_signatures
from engine.dedup.normalise import normalise_texts
texts = pa.array(["the quick brown fox jumps over the lazy dog again", "Ünïcode words, here 42"])
sig = compute_signatures(normalise_texts(texts), ngram=5, num_perm=112, seed=9, backend=sys.argv[1])
print(hashlib.sha256(sig.tobytes()).hexdigest())
"""


@BACKENDS
def test_same_seed_same_signatures_in_another_process(backend: Backend) -> None:
    texts = ["the quick brown fox jumps over the lazy dog again", "Ünïcode words, here 42"]
    here = hashlib.sha256(signatures(texts, seed=9, backend=backend).tobytes()).hexdigest()
    other = subprocess.run(
        [sys.executable, "-c", _CHILD, backend],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123"},
    ).stdout.strip()
    assert other == here
    assert hashlib.sha256(signatures(texts, seed=10, backend=backend).tobytes()).hexdigest() != here


def test_exact_hashes_fold_normalisation_and_skip_empty_texts() -> None:
    normalised = normalise_texts(pa.array(["Hello, World", "hello world!", "hello there", "..."]))
    hashes, has_text = exact_hashes(normalised)
    assert hashes[0] == hashes[1] != hashes[2]
    assert has_text.tolist() == [True, True, True, False]


def test_vocabulary_survives_normalisation() -> None:
    words = normalise_texts(pa.array(VOCABULARY[:50])).to_pylist()
    assert words == VOCABULARY[:50]


def test_text_hashes_identify_equal_normalised_texts() -> None:
    texts = ["Hello, World again", "hello world AGAIN!", "world hello again", "hello world", ""]
    shingles = shingle_hashes(pa.array(texts, type=pa.large_string()), ngram=5, seed=1, with_text_hashes=True)
    hashes = shingles.text_hashes
    assert hashes is not None
    assert hashes[0] == hashes[1]
    assert len({int(h) for h in hashes[1:]}) == 4  # order and length matter
