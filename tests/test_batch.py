from __future__ import annotations

import numpy as np
import pytest

from engine.batch import Verdict
from engine.errors import ConservationError
from engine.stats import CLUSTER_SIZE_BINS, Stats, binned_cluster_sizes, cluster_size_bin


def test_first_rule_in_order_is_the_reason() -> None:
    verdict = Verdict.from_rules(a=[True, False, False], b=[True, True, False], scores={"x": [1, 2, 3]})
    assert verdict.keep.tolist() == [False, False, True]
    assert verdict.reason.tolist() == ["a", "b", None]
    assert verdict.scores["x"].dtype == np.float64


def test_prefixed_reasons() -> None:
    verdict = Verdict.from_rules(short=[True, False]).prefixed("doc_length")
    assert verdict.reason.tolist() == ["doc_length/short", None]


def test_nan_comparisons_do_not_drop() -> None:
    ratio = np.array([np.nan, 0.5])
    assert Verdict.from_rules(low=ratio < 0.6).keep.tolist() == [True, False]


def test_length_mismatch_is_a_bug() -> None:
    with pytest.raises(ValueError, match="disagree in length"):
        Verdict(np.ones(2, dtype=bool), np.full(3, None, dtype=object))


def test_stats_add_and_conservation() -> None:
    a = Stats(docs_in=3, docs_kept=2, dropped={"s/r": 1})  # type: ignore[arg-type]
    b = Stats(docs_in=2, docs_kept=0, duplicates=1, dropped={"s/r": 1})  # type: ignore[arg-type]
    total = a + b
    assert (total.docs_in, total.docs_kept, total.dropped["s/r"], total.duplicates) == (5, 2, 2, 1)
    total.check_conservation("test")
    assert Stats.from_dict(total.to_dict()) == total
    with pytest.raises(ConservationError, match="conservation violated in broken"):
        Stats(docs_in=3, docs_kept=1).check_conservation("broken")


def test_dedup_conservation_is_counted_from_what_removal_wrote_11() -> None:
    from collections import Counter

    staged = Counter({"staged": 10})
    good = Stats(docs_in=12, docs_kept=7, duplicates=3, dropped=Counter({"s/r": 2}))
    good.written = staged + Counter({"kept": 7, "duplicates": 3})
    good.check_dedup_written("run", duplicates_written=True)
    not_written = Stats(docs_in=12, docs_kept=7, duplicates=3, dropped=Counter({"s/r": 2}))
    not_written.written = staged + Counter({"kept": 7})
    not_written.check_dedup_written("run", duplicates_written=False)
    with pytest.raises(ConservationError, match="0 duplicates written, 3 removed"):
        not_written.check_dedup_written("run", duplicates_written=True)
    lost = Stats(docs_in=12, docs_kept=6, duplicates=3, dropped=Counter({"s/r": 2}))
    lost.written = staged + Counter({"kept": 6, "duplicates": 3})  # a staged row written nowhere
    with pytest.raises(ConservationError, match=r"in run: 10 rows staged != 6 written to kept \+ 3 duplicates"):
        lost.check_dedup_written("run", duplicates_written=True)


def test_cluster_size_counters_use_fixed_bins_and_merge() -> None:
    """Cluster sizes go into ~40 fixed bins (2..9 exact, then 1-2-5 steps), whatever the sizes: a hub of a
    billion copies is one count, and two tasks' counters add up (the largest cluster merges by max)."""
    assert [cluster_size_bin(n) for n in (2, 9, 10, 19, 20, 49, 50, 999, 1_000, 10**9)] == [
        "2", "9", "10", "10", "20", "20", "50", "500", "1000", "1000000000",
    ]  # fmt: skip
    a = Stats(cluster_sizes=binned_cluster_sizes({2: 5, 3: 1, 12: 2}), largest_cluster=12)
    b = Stats(cluster_sizes=binned_cluster_sizes({2: 1, 15: 1, 10**9: 1}), largest_cluster=10**9)
    total = a + b
    assert total.cluster_sizes == {"2": 6, "3": 1, "10": 3, "1000000000": 1}
    assert total.largest_cluster == 10**9
    assert Stats.from_dict(total.to_dict()) == total
    assert len(CLUSTER_SIZE_BINS) < 50
