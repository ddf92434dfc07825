"""Raw Parquet record batches -> canonical batches (`id`, `text` as large_string) plus the input verdict.

Bad documents are data: null text, text that is not valid UTF-8, whitespace-only text and oversized text each
get a reason code (`input/null_text`, ...) instead of an exception. A shard whose text column is missing or not
text at all is a clear `InputError` naming the shard and the column.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.batch import Verdict
from engine.errors import InputError
from engine.schema import ID, TEXT

READER_VERSION = 1
"""Part of every unit's reuse key: bump it when a change here changes what the reader decides (reason codes,
derived ids, decoding), so the next run redoes every shard."""

TEXT_TYPES = (
    pa.string(),
    pa.large_string(),
    pa.binary(),
    pa.large_binary(),
    pa.string_view(),
    pa.binary_view(),
)


def check_schema(schema: pa.Schema, *, text_column: str, shard: str) -> None:
    """Fail with a clear message if the shard cannot be read as documents.

    Raises:
        InputError: the text column is missing or holds something other than text.
    """
    if text_column not in schema.names:
        columns = ", ".join(schema.names) or "(none)"
        msg = (
            f"shard {shard} has no text column {text_column!r} (its columns: {columns}); "
            "set input.text_column to the column holding the document text"
        )
        raise InputError(msg)
    kind = schema.field(text_column).type
    if kind not in TEXT_TYPES:
        msg = (
            f"shard {shard}: column {text_column!r} has type {kind}, expected a string column; "
            "set input.text_column to the column holding the document text"
        )
        raise InputError(msg)


def _decode(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Text as large_string, and a mask of rows that were not valid UTF-8 (decoded with U+FFFD)."""
    try:
        as_binary = column.cast(pa.large_binary())
        decoded = as_binary.cast(pa.large_string())
        decoded.validate(full=True)
        return decoded, np.zeros(len(column), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    values = column.cast(pa.large_binary()).to_pylist()
    bad = np.zeros(len(values), dtype=bool)
    texts: list[str | None] = []
    for i, raw in enumerate(values):
        if raw is None:
            texts.append(None)
            continue
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad[i] = True
            texts.append(raw.decode("utf-8", errors="replace"))
    return pa.array(texts, type=pa.large_string()), bad


def _derived_ids(rel: str, first_row: int, n: int) -> pa.Array:
    """`rel:row` for rows `first_row` .. `first_row + n - 1` of shard `rel`, built column-wise."""
    rows = pc.cast(pa.array(np.arange(first_row, first_row + n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(pa.scalar(f"{rel}:"), rows, "")


def canonical_batch(
    raw: pa.RecordBatch, *, text_column: str, id_column: str, rel: str, first_row: int, max_text_bytes: int
) -> tuple[pa.Table, Verdict]:
    """Rename/cast the text and id columns to `text` (large_string) and `id` (string) and judge the input.

    Ids missing from the shard (no id column, or a null id) are derived from the shard's relative name and
    the row index within the shard: `rel:row`. Other columns pass through unchanged.
    """
    n = raw.num_rows
    text, bad_utf8 = _decode(raw.column(text_column))
    if id_column in raw.schema.names:
        ids = raw.column(id_column).cast(pa.string())
        if ids.null_count:
            ids = pc.coalesce(ids, _derived_ids(rel, first_row, n))
    else:
        ids = _derived_ids(rel, first_row, n)
    others = {name: raw.column(name) for name in raw.schema.names if name not in (text_column, id_column, ID, TEXT)}
    table = pa.table({ID: ids, TEXT: text, **others})

    is_null = np.asarray(pc.is_null(text).to_numpy(zero_copy_only=False), dtype=bool)
    nbytes = np.asarray(pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), False)
    # Reason codes as in engine.schema: NULL_TEXT, DECODE_ERROR, TOO_LARGE, EMPTY_TEXT.
    verdict = Verdict.from_rules(
        null_text=is_null,
        decode_error=bad_utf8,
        too_large=nbytes > max_text_bytes,
        empty_text=np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool),
    )
    return table, verdict
