"""Fixed-bin histograms: every value lands in the bin whose edges hold it, and units' histograms merge by adding."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from engine.batch import make_batch
from engine.histograms import (
    bin_edges,
    bin_indexes,
    count_bins,
    decode_bins,
    decode_named,
    encode_bins,
    encode_named,
    merge_histograms,
    quantile,
)
from engine.pipeline import process_batch
from engine.stats import SLOWEST_SHARDS, Stats
from engine.steps.base import build_step

finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=50))
@example([0.0, 0.999999, 1.0, 2.0, -0.5, 1e12, -1e12, 0.02, 0.65])
def test_every_value_lies_within_its_bins_edges(values: list[float]) -> None:
    for value, index in zip(values, bin_indexes(np.asarray(values)), strict=True):
        low, high = bin_edges(int(index))
        tolerance = 1e-9 * max(1.0, abs(value))
        assert low - tolerance <= value < high + tolerance, (value, index, low, high)


@given(st.lists(finite, max_size=40), st.lists(finite, max_size=40))
def test_histograms_of_parts_add_up_to_the_histogram_of_the_whole(a: list[float], b: list[float]) -> None:
    whole = count_bins(np.asarray(a + b, dtype=np.float64))
    parts = merge_histograms({"x": count_bins(np.asarray(a))}, {"x": count_bins(np.asarray(b))})
    assert parts["x"] == whole


@given(st.lists(finite, max_size=60))
def test_a_histogram_survives_its_compact_string(values: list[float]) -> None:
    bins = count_bins(np.asarray(values, dtype=np.float64))
    assert decode_bins(encode_bins(bins)) == bins
    assert decode_bins(dict(bins)) == bins  # stats written as plain mappings read the same
    named = {"a.x": bins, "b step.y": bins}
    assert decode_named(encode_named(named)) == named


def test_nan_and_infinities_are_not_counted() -> None:
    assert count_bins(np.asarray([math.nan, math.inf, -math.inf, 0.5])) == {"25": 1}


def test_quantile_reads_the_bin_it_falls_in() -> None:
    bins = count_bins(np.asarray([0.1] * 50 + [0.9] * 50 + [100.0]))
    assert 0.08 <= quantile(bins, 0.25) <= 0.12
    assert 0.88 <= quantile(bins, 0.75) <= 0.92
    assert math.isnan(quantile({}, 0.5))


def test_batches_counted_apart_merge_into_the_counts_of_one_batch() -> None:
    """What a run adds up over its units equals what one pass over all documents would count (steps are row-local)."""
    rng = np.random.default_rng(14)
    words = ["alpha", "beta", "gamma", "delta", "the", "of"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 200)))) for _ in range(300)]
    batch = make_batch({"text": texts, "language": [["en", "fr", "de"][i % 3] for i in range(300)]})
    steps = [build_step({"type": "doc_length", "min_words": 40, "max_words": 150})]
    whole = process_batch(batch, steps).stats
    parts = Stats()
    for start in range(0, 300, 70):
        parts = parts + process_batch(batch.slice(start, 70), steps).stats
    assert parts.score_bins == whole.score_bins
    assert parts.score_bins_dropped == whole.score_bins_dropped
    assert parts.languages == whole.languages
    assert sum(whole.languages.values()) == whole.docs_kept
    assert sum(whole.score_bins_dropped["doc_length.words"].values()) == whole.docs_dropped > 0
    assert Stats.from_dict(parts.to_dict()).score_bins == parts.score_bins


def test_slowest_shards_keep_the_slowest_whatever_the_order_of_merging() -> None:
    units = [
        Stats(slowest_shards=[[float(s), f"part-{s:03d}", 10, 5]]) for s in np.random.default_rng(1).permutation(40)
    ]
    total = Stats()
    for unit in units:
        total = total + unit
    assert [s[0] for s in total.slowest_shards] == [float(s) for s in range(39, 39 - SLOWEST_SHARDS, -1)]
