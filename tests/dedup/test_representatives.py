"""Representatives are combinable: the best of per-group bests is the best of all (the hub's split path)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dedup.components import LABEL
from engine.dedup.plan import NODE
from engine.dedup.representatives import best_per_label
from engine.dedup.signatures import LENGTH, SCORE
from engine.schema import ID

members = st.lists(
    st.tuples(
        st.integers(0, 3),  # label
        st.integers(0, 60),  # node
        st.sampled_from(["a", "b", "c", "d"]),  # id (ties between documents are broken by node)
        st.integers(1, 5),  # length
        st.one_of(st.none(), st.sampled_from([0.1, 0.5, 0.9, float("nan")])),  # score
        st.integers(0, 4),  # shard group
    ),
    min_size=1,
    max_size=60,
    unique_by=lambda m: m[1],
)


@settings(max_examples=200, deadline=None)
@given(members, st.sampled_from(["first_seen", "longest", "highest_score"]))
def test_best_of_group_bests_is_the_best_of_all(rows: list[tuple], keep: str) -> None:
    frame = pl.DataFrame(
        rows,
        schema={LABEL: pl.Int64, NODE: pl.Int64, ID: pl.String, LENGTH: pl.Int64, SCORE: pl.Float64, "g": pl.Int64},
        orient="row",
    )
    direct = best_per_label(frame, keep).sort(LABEL)
    partials = pl.concat([best_per_label(part, keep) for part in frame.partition_by("g")])
    combined = best_per_label(partials, keep).sort(LABEL)
    assert combined[NODE].to_list() == direct[NODE].to_list()
    assert combined[LABEL].to_list() == sorted(set(frame[LABEL].to_list()))
