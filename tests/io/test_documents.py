from __future__ import annotations

import pyarrow as pa
import pytest

from engine.errors import InputError
from engine.io.documents import canonical_batch, check_schema


def judge(raw: pa.RecordBatch, **kwargs: object) -> tuple[pa.Table, list[str | None]]:
    options = {
        "text_column": "text",
        "id_column": "id",
        "rel": "dir/part",
        "first_row": 10,
        "max_text_bytes": 50,
    }
    table, verdict = canonical_batch(raw, **{**options, **kwargs})  # type: ignore[arg-type]
    return table, verdict.prefixed("input").reason.tolist()


def test_bad_documents_get_reason_codes() -> None:
    raw = pa.record_batch({"text": ["fine text", None, "   \n\t", "x" * 51], "id": ["a", "b", "c", "d"]})
    table, reasons = judge(raw)
    assert reasons == [None, "input/null_text", "input/empty_text", "input/too_large"]
    assert table["text"].type == pa.large_string()


def test_invalid_utf8_is_a_reason_not_a_crash() -> None:
    raw = pa.record_batch({"text": pa.array([b"ok \xc3\xa9", b"bad \xff\xfe"], type=pa.binary())})
    table, reasons = judge(raw)
    assert reasons == [None, "input/decode_error"]
    assert table["text"].to_pylist() == ["ok é", "bad \ufffd\ufffd"]


def test_ids_derived_from_shard_and_row_when_missing() -> None:
    table, _ = judge(pa.record_batch({"text": ["a", "b"]}))
    assert table["id"].to_pylist() == ["dir/part:10", "dir/part:11"]


def test_null_ids_are_derived_and_other_ids_cast_to_string() -> None:
    table, _ = judge(pa.record_batch({"text": ["a", "b"], "doc": [7, None]}), id_column="doc")
    assert table["id"].to_pylist() == ["7", "dir/part:11"]
    assert table["id"].type == pa.string()


def test_custom_text_column_is_renamed_and_others_pass_through() -> None:
    raw = pa.record_batch({"content": ["hello"], "url": ["http://x"]})
    table, _ = judge(raw, text_column="content")
    assert table.column_names == ["id", "text", "url"]


def test_missing_text_column_is_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"shard s\.parquet has no text column 'text' \(its columns: body\)"):
        check_schema(pa.schema([("body", pa.string())]), text_column="text", shard="s.parquet")


def test_non_string_text_column_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="has type int64, expected a string column"):
        check_schema(pa.schema([("text", pa.int64())]), text_column="text", shard="s.parquet")
