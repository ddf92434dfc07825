"""The dedup design before segmented shuffles (main at 0ca5925), frozen as a test-only reference.

`run_dedup` here is the driver that `engine.runner.dedup` replaced: one Parquet file per (map task, partition), a
temporary name and a move per file, star steps over `P x P` files. The identity test
(`tests/dedup/test_identity.py`) runs it and the engine's driver on the same staged corpus and compares `kept/` and
`rejected/*.duplicates` document for document; `benchmarks/bench_scale.py --design reference` measures it beside
the new design in the same run. It writes under `OUT/_dedup/<parameters>/work/` as it always did. Do not change its
behaviour: it is what the new design must reproduce (until stable build-order node ids change `first_seen`).
"""

from __future__ import annotations

from tests.dedup.reference.driver import run_dedup

__all__ = ["run_dedup"]
