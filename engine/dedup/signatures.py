"""Phase A of dedup: what each shard stores of its kept documents (signatures, sort keys), and where.

Called by `engine.runner.unit` in the same pass as the filters; the global phases (the other `engine.dedup`
modules, driven by `engine.runner.dedup`) read these files. The folder name carries every parameter the
signatures depend on, so a run with other parameters never mixes them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.batch import utf8_lengths
from engine.dedup.exact import exact_hashes
from engine.dedup.minhash import EMPTY_SIGNATURE, band_hashes, mix64, shingle_hashes, signatures_of
from engine.dedup.normalise import normalise_texts
from engine.io.layout import DEDUP, join
from engine.schema import ID, LANGUAGE, TEXT
from engine.spec import DedupSpec, MinhashDedup, dedup_parameters_name

SIGNATURE_VERSION = 1
"""The version of the code signatures depend on (normalisation, shingling, hashing, banding): part of every unit's
reuse key in a dedup job. Bump it with any change to that code that changes a signature; every shard is redone."""

KEYS = "keys"
LENGTH = "length"
SCORE = "score"
EXACT = "exact"


def dedup_root(output_root: str, dedup: DedupSpec) -> str:
    """`OUT/_dedup/<parameters>/`: everything dedup stores for one set of signature parameters."""
    return join(output_root, DEDUP, dedup_parameters_name(dedup))


def signatures_file(output_root: str, dedup: DedupSpec, rel: str) -> str:
    """Where phase A stores the signature table of shard `rel` (kept documents, in kept order)."""
    return join(dedup_root(output_root, dedup), "signatures", f"{rel}.parquet")


def signature_table(kept: pa.Table, dedup: DedupSpec) -> pa.Table:
    """What later phases need of each kept document, one row per row of `kept`, in order.

    Columns: `id`; `keys` (fixed-size list of uint64: one MinHash band key per band, or the exact hash;
    null when the normalised text has no word); `length` (characters of `text`); `score` (float64, only
    when `score_column` is set); `exact` (uint64 hash of the normalised words, only with `exact_first`).

    With `by: language`, every key is mixed with a hash of the row's `language` (null: its own group), so only
    documents of one language collide.

    Raises:
        ValueError: `score_column` is set but `kept` has no such numeric column, or `by: language` and `kept`
            has no `language` column.
    """
    text_hashes = None
    if isinstance(dedup, MinhashDedup):
        shingles = shingle_hashes(
            kept[TEXT],
            ngram=dedup.ngram,
            seed=dedup.seed,
            max_chars=dedup.max_chars,
            with_text_hashes=dedup.exact_first,
        )
        signatures = signatures_of(shingles, num_perm=dedup.bands * dedup.rows, seed=dedup.seed, backend=dedup.backend)
        keys = band_hashes(signatures, bands=dedup.bands, rows=dedup.rows)
        if dedup.exact_first:
            text_hashes = shingles.text_hashes
        has_keys = ~(signatures == EMPTY_SIGNATURE).all(axis=1)
    else:
        normalised = normalise_texts(kept[TEXT])
        hashes, has_keys = exact_hashes(normalised)
        keys = hashes.reshape(-1, 1)
    if dedup.by == "language":  # keys of different languages never meet: each is salted with its language
        salts = _language_salts(kept)
        keys = mix64(keys ^ salts[:, None])
        if text_hashes is not None:
            text_hashes = mix64(np.asarray(text_hashes, dtype=np.uint64) ^ salts)
    flat = pa.array(keys.reshape(-1), type=pa.uint64())
    mask = pa.array(~has_keys, type=pa.bool_())
    key_column = pa.FixedSizeListArray.from_arrays(flat, keys.shape[1], mask=mask)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        ID: kept[ID].cast(pa.string()),
        KEYS: key_column,
        LENGTH: pa.array(utf8_lengths(kept), type=pa.int64()),
    }
    if text_hashes is not None:
        columns[EXACT] = pa.array(text_hashes, type=pa.uint64())
    if dedup.score_column:
        if dedup.score_column not in kept.column_names:
            have = ", ".join(kept.column_names)
            msg = (
                f"dedup keep: {dedup.keep} ranks by column {dedup.score_column!r}, which kept documents "
                f"do not have (they have: {have}); add the step that writes it or change dedup.score_column"
            )
            raise ValueError(msg)
        columns[SCORE] = pc.cast(kept[dedup.score_column], pa.float64())
    return pa.table(columns)


def _language_salts(kept: pa.Table) -> npt.NDArray[np.uint64]:
    """Per row, a 64-bit hash of its `language` (the same in every process and run)."""
    if LANGUAGE not in kept.column_names:
        have = ", ".join(kept.column_names)
        msg = (
            f"dedup by: language needs a {LANGUAGE!r} column, which kept documents do not have (they have: {have});"
            " add a language_id step before dedup or give the input that column"
        )
        raise ValueError(msg)
    languages = pc.fill_null(kept[LANGUAGE].cast(pa.string()), "").combine_chunks().dictionary_encode()
    salts = [hashlib.blake2b(str(v).encode(), digest_size=8).digest() for v in languages.dictionary.to_pylist()]
    table = np.array([int.from_bytes(salt, "little") for salt in salts], dtype=np.uint64)
    return table[np.asarray(languages.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
