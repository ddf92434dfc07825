"""Synthetic input for the global dedup phases at millions of documents, made with NumPy in seconds.

What phase A leaves for phases B-D, in the engine's own layout and schema (`engine.dedup.signatures`):

    DIR/_dedup/<parameters>/signatures/part-NNNNN.parquet   id, keys (14 band keys), length
    DIR/_stage/kept/part-NNNNN.parquet                      id, text (a short random text per document)
    DIR/synthetic.json                                      the parameters and the ground truth

The duplicate structure is controlled, so the dedup's answer is known: `dup_share` of the documents belong to
small clusters (sizes 2 + geometric, mean `mean_cluster`), each member sharing a random subset of band keys with a
random earlier member of its cluster (all 14 with probability `exact_share`: an exact copy), so every cluster is
one connected component whose diameter grows like log(size); optionally one *hub*: `hub` exact copies of one
page. Documents are shuffled over the shards, so clusters span shards as they do in a crawl. Unrelated
documents get independent random keys (64-bit: they never collide). A few documents (`null_share`) have no
keys, like a text without words.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from engine.dedup.minhash import mix64
from engine.dedup.signatures import signatures_file
from engine.io.layout import KEPT, STAGE, join, shard_file
from engine.spec import MinhashDedup

ROW_GROUP = 2048  # rows per row group, as phase A writes them (one per input batch)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass(frozen=True)
class Synthetic:
    """Parameters of a synthetic corpus (all recorded in `synthetic.json`)."""

    docs: int
    shard_docs: int = 100_000
    dup_share: float = 0.3
    mean_cluster: float = 3.0
    exact_share: float = 0.3
    hub: int = 0
    null_share: float = 0.001
    text_chars: tuple[int, int] = (100, 300)
    seed: int = 0


def dedup_spec() -> MinhashDedup:
    """The dedup section whose signature folder the synthetic files go to (FineWeb's 14 x 8 defaults)."""
    return MinhashDedup()


def cluster_sizes(rng: np.random.Generator, clustered: int, mean: float) -> npt.NDArray[np.int64]:
    """Sizes (each >= 2, mean about `mean`) adding up to `clustered` documents (0 or >= 2)."""
    if clustered < 2:
        return np.zeros(0, dtype=np.int64)
    draw = 1 + rng.geometric(1 / (mean - 1), size=int(clustered / mean * 1.2) + 16).astype(np.int64)
    ends = np.cumsum(draw)
    n = int(np.searchsorted(ends, clustered))
    sizes = draw[:n].copy()
    rest = clustered - int(sizes.sum())
    if rest >= 2:
        sizes = np.append(sizes, rest)
    elif rest == 1:
        sizes[-1] += 1
    return sizes


def band_keys(rng: np.random.Generator, spec: Synthetic, bands: int) -> tuple[npt.NDArray[np.uint64], dict[str, Any]]:
    """Keys `(docs, bands)` in generation order (hub, then clusters member by member, then singletons)."""
    n = spec.docs
    keys = rng.integers(0, np.iinfo(np.uint64).max, size=(n, bands), dtype=np.uint64, endpoint=True)
    hub = spec.hub
    if hub >= 2:
        keys[1:hub] = keys[0]
    sizes = cluster_sizes(rng, int(spec.dup_share * n), spec.mean_cluster)
    if hub + int(sizes.sum()) > n:
        msg = f"{hub} hub copies and {int(sizes.sum())} clustered documents do not fit in {n} documents"
        raise ValueError(msg)
    starts = hub + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    for j in range(1, int(sizes.max(initial=0))):
        grown = np.flatnonzero(sizes > j)
        member = starts[grown] + j
        parent = starts[grown] + np.floor(rng.random(len(grown)) * j).astype(np.int64)
        exact = rng.random(len(grown)) < spec.exact_share
        shared = rng.random((len(grown), bands)) < rng.random((len(grown), 1))
        shared[np.arange(len(grown)), rng.integers(0, bands, len(grown))] = True
        shared[exact] = True
        keys[member] = np.where(shared, keys[parent], keys[member])
    clustered_end = hub + int(sizes.sum())
    truth = {
        "clusters": int(len(sizes)) + (1 if hub >= 2 else 0),
        "clustered_docs": clustered_end,
        "expected_duplicates": clustered_end - int(len(sizes)) - (1 if hub >= 2 else 0),
        "largest_cluster": int(max(hub, sizes.max(initial=0))),
        "singletons_from": clustered_end,
    }
    return keys, truth


def fixed_width_strings(chars: npt.NDArray[np.uint8]) -> pa.Array:
    """A string array from a `(rows, width)` matrix of ASCII codes, without Python objects."""
    rows, width = chars.shape
    offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


def document_ids(numbers: npt.NDArray[np.int64]) -> pa.Array:
    """FineWeb-like ids (`<urn:uuid:8-4-4-4-12>`, 47 characters), unique per generation number."""
    high = mix64(numbers.astype(np.uint64))
    low = mix64(high ^ np.uint64(0x5851F42D4C957F2D))
    nibbles = np.concatenate(
        [(word[:, None] >> (np.arange(60, -4, -4, dtype=np.uint64))[None, :]) & np.uint64(15) for word in (high, low)],
        axis=1,
    ).astype(np.int64)
    hexes = _HEX[nibbles]
    parts = [hexes[:, 0:8], hexes[:, 8:12], hexes[:, 12:16], hexes[:, 16:20], hexes[:, 20:32]]
    rows = len(numbers)
    dash = np.full((rows, 1), ord("-"), dtype=np.uint8)
    prefix = np.tile(np.frombuffer(b"<urn:uuid:", dtype=np.uint8), (rows, 1))
    suffix = np.full((rows, 1), ord(">"), dtype=np.uint8)
    pieces = [prefix, parts[0], dash, parts[1], dash, parts[2], dash, parts[3], dash, parts[4], suffix]
    return fixed_width_strings(np.concatenate(pieces, axis=1))


def random_texts(rng: np.random.Generator, rows: int, chars: tuple[int, int]) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """`rows` texts of letters and spaces, lengths uniform in `chars` (large_string, like `text`); the lengths."""
    lengths = rng.integers(chars[0], chars[1], size=rows, endpoint=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = rng.integers(ord("a"), ord("z"), size=int(offsets[-1]), dtype=np.uint8, endpoint=True)
    data[rng.random(len(data)) < 1 / 6] = ord(" ")
    return pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data)), lengths


def generate(folder: str, spec: Synthetic) -> dict[str, Any]:
    """Write the synthetic signature and staged kept files under `folder` (replaced); the ground truth."""
    root = Path(folder)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    dedup = dedup_spec()
    rng = np.random.default_rng(spec.seed)
    keys, truth = band_keys(rng, spec, dedup.bands)
    has_keys = np.ones(spec.docs, dtype=bool)
    singles = np.arange(truth["singletons_from"], spec.docs)
    has_keys[rng.choice(singles, size=int(spec.null_share * len(singles)), replace=False)] = False
    order = rng.permutation(spec.docs)  # corpus position -> generation number
    shards = []
    text_bytes = 0
    for index, start in enumerate(range(0, spec.docs, spec.shard_docs)):
        rel = f"part-{index:05d}"
        numbers = order[start : start + spec.shard_docs]
        ids = document_ids(numbers)
        texts, lengths = random_texts(rng, len(numbers), spec.text_chars)
        text_bytes += int(lengths.sum())
        flat = pa.array(keys[numbers].reshape(-1), type=pa.uint64())
        mask = pa.array(~has_keys[numbers], type=pa.bool_())
        signatures = pa.table(
            {
                "id": ids,
                "keys": pa.FixedSizeListArray.from_arrays(flat, dedup.bands, mask=mask),
                "length": pa.array(lengths, type=pa.int64()),
            }
        )
        staged = pa.table({"id": ids, "text": texts})
        for table, path in (
            (signatures, signatures_file(str(root), dedup, rel)),
            (staged, shard_file(str(root), join(STAGE, KEPT), rel)),
        ):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, row_group_size=ROW_GROUP, compression="zstd")
        shards.append(rel)
    described = {
        "spec": asdict(spec),
        "shards": shards,
        "null_key_docs": int((~has_keys).sum()),
        "text_bytes": text_bytes,
        **truth,
    }
    (root / "synthetic.json").write_text(json.dumps(described, indent=1))
    return described


def load(folder: str) -> dict[str, Any]:
    """The description `generate` wrote."""
    data: dict[str, Any] = json.loads((Path(folder) / "synthetic.json").read_text())
    return data
