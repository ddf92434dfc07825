"""Phase D, removal: one task per shard writes `kept/` without its duplicates (and the duplicates apart).

A shard's task reads its fate file (`state/fates/<rel>.parquet`, written by the fates task) and streams its staged
kept documents once: rows whose fate names another document (`duplicate_of`) go to `rejected/<rel>.duplicates`
with their reason, the others to `kept/`. Conservation is counted: the rows written to each file are counted by
its writer and checked against the committed files' Parquet footers, and the staged rows read (checked against
the staged file's footer) must equal the rows kept plus the duplicates removed. The task's marker
(`state/removal/<rel>.json`, written last) records the files, the counts and the key of what they were made from:
the removal settings, the shard's staged file (phase A's identity) and the content of its fate that reaches the
output (which rows are duplicates of what, and why; cluster columns when written). A later run whose key is the
same skips the shard and reports what it wrote: a night that adds shards rewrites `kept/` only for the new shards
and for old shards whose duplicates changed (issue 11).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.dedup.kept_rows import INPUT_ROW, StagedRows, View, kept_rows_url, rebuild
from engine.dedup.plan import ROW, Plan, Removal, digest, staged_url
from engine.errors import ConservationError, InputError
from engine.io.layout import KEPT, REJECTED
from engine.io.markers import read_json, write_json
from engine.io.parquet import PartitionedWriter, check_footers, open_parquet, read_table, stream_batches
from engine.io.paths import all_exist, filesystem, fingerprint, remove_files
from engine.pipeline import read_documents
from engine.schema import CLUSTER_ID, CLUSTER_SIZE, DUPLICATE_OF, ID, LANGUAGE, REASON
from engine.steps.base import Step


@dataclass(frozen=True)
class ShardRemoval:
    """What removal wrote for one shard: rows kept, duplicates removed, and duplicate rows written."""

    rel: str
    kept: int
    duplicates: int
    duplicates_written: int
    outputs: tuple[str, ...] = ()
    duplicates_by_language: dict[str, int] = field(default_factory=dict)
    """Duplicates removed per `language` (when the kept documents have one): the report's kept languages."""
    key: str = ""
    """The key its outputs were made under (`removal_key`; empty: a shard phase A left nothing for)."""


Chunk = tuple[int, int, Callable[[npt.NDArray[np.int64]], pa.Table], Callable[[npt.NDArray[np.int64]], pa.Array | None]]
"""`(offset, n, documents, languages)`: staged rows `offset .. offset + n - 1`; `documents(positions)` gives those
of them at `positions` (0-based in the chunk) as kept documents, `languages(positions)` their `language` (if any)."""


def remove_duplicates(plan: Plan, removal: Removal, shard: int, *, rewrite: bool = False) -> ShardRemoval:
    """Write shard `shard`'s final kept documents (and its removed duplicates); what it wrote. `rewrite`: even
    when its marker's key matches (an output was changed since removal wrote it).

    Raises:
        InputError: the staged file, the fate file or (without staged text) the input is missing, or the input
            changed since phase A read it (names it and what to do).
        ConservationError: the rows written do not account for the rows staged (names the shard).
    """
    rel = plan.shards[shard]
    options = plan.storage_options
    staged = staged_url(removal.output, rel) if removal.stage_text else kept_rows_url(removal.output, rel)
    if plan.rows[shard] == 0:
        fs, path = filesystem(staged, options)
        if not fs.exists(path):  # a shard phase A left nothing for (its documents were all dropped)
            return ShardRemoval(rel, 0, 0, 0)
    fates = _read_fates(plan, shard)
    key = removal_key(removal, shard, fates_digest(fates, cluster_columns=removal.add_cluster_columns))
    marker_url = plan.removal_marker_url(rel)
    previous = read_json(marker_url, options)
    reusable = previous is not None and previous.get("key") == key and not removal.force and not rewrite
    if reusable and previous is not None and all_exist(previous["outputs"], options):
        return ShardRemoval(
            rel,
            int(previous["kept"]),
            int(previous["duplicates"]),
            int(previous["duplicates_written"]),
            tuple(previous["outputs"]),
            {str(k): int(v) for k, v in (previous.get("duplicates_by_language") or {}).items()},
            key,
        )
    with ExitStack() as stack:
        if removal.stage_text:
            staged_rows, kept_schema, chunks = _staged_text(stack, staged, options, removal.batch_rows)
        else:
            staged_rows, kept_schema, chunks = _from_input(stack, plan, removal, shard, staged)
        written = _write(plan, removal, rel, fates, staged_rows, kept_schema, chunks)
    kept_rows, removed, written_dups, counted, by_language = written
    outputs = sorted(counted)
    if previous is not None:
        remove_files([u for u in previous.get("outputs", []) if u not in outputs], options)
    marker = {
        "key": key,
        "kept": kept_rows,
        "duplicates": removed,
        "duplicates_written": written_dups,
        "duplicates_by_language": by_language,
        "outputs": outputs,
        "rows": counted,
    }
    write_json(marker_url, marker, options)
    return ShardRemoval(rel, kept_rows, removed, written_dups, tuple(outputs), by_language, key)


def removal_inputs(removal: Removal, shard: int) -> str:
    """A digest of what a shard's removal output depends on besides its fates: the removal settings (output
    settings; without staged text, how the input is read and the text-rewriting steps rerun) and phase A's
    identity of the shard (its unit key: input fingerprint, step parameters, asset contents, step versions)."""
    return digest(_key_parts(removal, shard))


def removal_key(removal: Removal, shard: int, fates: str) -> str:
    """The key of a shard's removal output: what `removal_inputs` covers and the `fates_digest` of its fates."""
    return digest([*_key_parts(removal, shard), fates])


def _key_parts(removal: Removal, shard: int) -> list[str]:
    return [removal.settings, removal.identities[shard] if removal.identities else removal.settings]


def _write(
    plan: Plan,
    removal: Removal,
    rel: str,
    fates: pa.Table,
    staged_rows: int,
    kept_schema: pa.Schema,
    chunks: Iterator[Chunk],
) -> tuple[int, int, int, dict[str, int], dict[str, int]]:
    """Stream the staged documents into kept/ (and the duplicates apart), counted and checked against the files'
    footers; (rows kept, duplicates removed, duplicate rows written, rows per file, duplicates per language)."""
    options = plan.storage_options
    fate_rows = np.asarray(fates[ROW].to_numpy(), dtype=np.int64)
    if removal.add_cluster_columns:
        kept_schema = kept_schema.append(pa.field(CLUSTER_ID, pa.string()))
        kept_schema = kept_schema.append(pa.field(CLUSTER_SIZE, pa.int64()))
    kept = PartitionedWriter(
        removal.output,
        KEPT,
        rel,
        kept_schema,
        partition_column=removal.partition_column,
        storage_options=options,
        compression=plan.compression,
        layout=removal.layout,
    )
    writers = [kept]
    duplicates_writer = None
    if removal.write_duplicates:
        dup_schema = kept_schema.append(pa.field(REASON, pa.string())).append(pa.field(DUPLICATE_OF, pa.string()))
        duplicates_writer = PartitionedWriter(
            removal.output,
            REJECTED,
            f"{rel}.duplicates",
            dup_schema,
            storage_options=options,
            compression=plan.compression,
            layout=removal.layout,
        )
        writers.append(duplicates_writer)
    removed = 0
    offset = 0
    by_language: Counter[str] = Counter()
    try:
        for first, n, documents, languages in chunks:
            if first != offset:
                msg = f"shard {rel}: staged rows are not in order (row {first} after {offset}); this is a bug"
                raise RuntimeError(msg)
            lo, hi = np.searchsorted(fate_rows, [offset, offset + n])
            local = fate_rows[lo:hi] - offset
            fate_slice = fates.slice(int(lo), int(hi - lo))
            position = np.full(n, -1, dtype=np.int64)
            position[local] = np.arange(len(local))
            is_duplicate = np.zeros(n, dtype=bool)
            is_duplicate[local] = np.asarray(pc.is_valid(fate_slice[DUPLICATE_OF]).to_numpy(zero_copy_only=False))
            n_dups = int(is_duplicate.sum())
            removed += n_dups
            if n_dups:
                language = languages(np.flatnonzero(is_duplicate))
                if language is not None:
                    by_language.update(str(v) for v in language.to_pylist())
            wanted = np.arange(n) if duplicates_writer is not None else np.flatnonzero(~is_duplicate)
            table = documents(wanted)
            chosen = position[wanted]
            clustered = chosen >= 0
            _check_ids(table, np.flatnonzero(clustered), fate_slice.take(pa.array(chosen[clustered])), rel)
            take = pa.array(chosen, mask=~clustered)
            duplicate_of = fate_slice[DUPLICATE_OF].take(take)
            if removal.add_cluster_columns:
                table = table.append_column(CLUSTER_ID, fate_slice[CLUSTER_ID].take(take))
                table = table.append_column(CLUSTER_SIZE, fate_slice[CLUSTER_SIZE].take(take))
            wanted_duplicate = pc.is_valid(duplicate_of)
            kept.write(table.filter(pc.invert(wanted_duplicate)))
            if duplicates_writer is not None and n_dups:
                dups = table.filter(wanted_duplicate)
                dups = dups.append_column(REASON, fate_slice[REASON].take(take).filter(wanted_duplicate))
                dups = dups.append_column(DUPLICATE_OF, duplicate_of.filter(wanted_duplicate))
                duplicates_writer.write(dups)
            offset += n
        if len(fate_rows) and int(fate_rows[-1]) >= offset:
            msg = f"shard {rel}: dedup refers to row {int(fate_rows[-1])} but phase A staged {offset} rows"
            raise RuntimeError(msg)
        for writer in writers:
            writer.close()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    counted = {url: rows for writer in writers for url, rows in writer.rows_by_file.items()}
    where = f"dedup removal of shard {rel}"
    check_footers(counted, options, where=where)
    written_dups = duplicates_writer.rows if duplicates_writer is not None else 0
    if offset != staged_rows or kept.rows + removed != staged_rows or (duplicates_writer and written_dups != removed):
        msg = (
            f"conservation violated in {where}: {staged_rows:,} rows staged (footer), {offset:,} read, {kept.rows:,}"
            f" written to kept/ + {removed:,} duplicates ({written_dups:,} written); this is a bug, please report it"
        )
        raise ConservationError(msg)
    return kept.rows, removed, written_dups, counted, dict(sorted(by_language.items()))


def _staged_text(
    stack: ExitStack, staged: str, options: dict[str, Any], batch_rows: int
) -> tuple[int, pa.Schema, Iterator[Chunk]]:
    """The staged kept documents (`_stage/kept/`, `dedup.stage_text`): their rows (footer), schema, and chunks."""
    parquet = stack.enter_context(open_parquet(staged, options))

    def chunks() -> Iterator[Chunk]:
        offset = 0
        for batch in stream_batches(parquet, staged, batch_rows):
            table = pa.Table.from_batches([batch])
            yield offset, table.num_rows, functools.partial(_take, table), functools.partial(_languages, table)
            offset += table.num_rows

    return parquet.metadata.num_rows, parquet.schema_arrow, chunks()


def _from_input(
    stack: ExitStack, plan: Plan, removal: Removal, shard: int, staged: str
) -> tuple[int, pa.Schema, Iterator[Chunk]]:
    """The kept documents rebuilt from the input shard and the `_stage/rows` file (`engine.dedup.kept_rows`).

    Raises:
        InputError: the input is gone, or is not the one phase A read (its fingerprint or row count differs).
    """
    rel, options = plan.shards[shard], plan.storage_options
    spec = removal.input
    assert spec is not None
    recorded = StagedRows.of(read_table(staged, options), staged)
    url = (removal.input_urls[shard] if removal.input_urls else None) or recorded.url
    redo = "rerun the job: phase A redoes the shard, then removal"
    try:
        now = fingerprint(url, spec.storage_options)
    except FileNotFoundError:
        msg = f"shard {rel}: its input {url} is gone, and removal rebuilds kept/ from it; {redo}"
        raise InputError(msg) from None
    if now != recorded.fingerprint:
        msg = (
            f"shard {rel}: its input {url} changed since phase A filtered it (fingerprint {recorded.fingerprint}"
            f" then, {now} now); removal would rebuild other texts than phase A kept; {redo}"
        )
        raise InputError(msg)
    indices = sorted(index for index, _ in removal.rewriters)
    if sorted(recorded.views) != indices:
        msg = f"shard {rel}: {staged} was written for other steps that rewrite text; {redo}"
        raise InputError(msg)
    parquet = stack.enter_context(open_parquet(url, spec.storage_options))
    if parquet.metadata.num_rows != recorded.input_rows:
        found = parquet.metadata.num_rows
        msg = f"shard {rel}: its input {url} holds {found:,} rows, phase A read {recorded.input_rows:,}; {redo}"
        raise InputError(msg)
    rewriters = [(step, recorded.views[index]) for index, step in removal.rewriters]
    stored = recorded.table
    input_rows = np.asarray(stored[INPUT_ROW].to_numpy(), dtype=np.int64)
    if len(input_rows) and (
        np.any(np.diff(input_rows) <= 0) or input_rows[0] < 0 or input_rows[-1] >= recorded.input_rows
    ):
        msg = f"shard {rel}: {staged} lists input rows out of order or out of range; {redo}"
        raise InputError(msg)
    language_from_input = LANGUAGE in recorded.kept_schema.names and LANGUAGE not in stored.column_names

    def chunks() -> Iterator[Chunk]:
        row = 0
        for raw in stream_batches(parquet, url, removal.batch_rows):
            first, row = row, row + raw.num_rows
            lo, hi = (int(i) for i in np.searchsorted(input_rows, [first, row]))
            if hi == lo:
                continue
            documents, _ = read_documents(raw, spec, rel=rel, first_row=first)
            rows = input_rows[lo:hi] - first
            part = stored.slice(lo, hi - lo)

            rebuilt = functools.partial(_rebuilt, documents, rows, part, recorded.kept_schema, rewriters)
            languages = functools.partial(_input_languages, documents, rows, part, from_input=language_from_input)
            yield lo, hi - lo, rebuilt, languages

    return stored.num_rows, recorded.kept_schema, chunks()


def _rebuilt(
    documents: pa.Table,
    rows: npt.NDArray[np.int64],
    stored: pa.Table,
    kept_schema: pa.Schema,
    rewriters: list[tuple[Step, View]],
    wanted: npt.NDArray[np.int64],
) -> pa.Table:
    """Staged rows `wanted` of a chunk rebuilt from the input batch's `documents` (`rows`: theirs in the batch)."""
    chosen = pa.array(wanted, type=pa.int64())
    return rebuild(documents.take(pa.array(rows[wanted])), stored.take(chosen), kept_schema, rewriters)


def _input_languages(
    documents: pa.Table,
    rows: npt.NDArray[np.int64],
    stored: pa.Table,
    wanted: npt.NDArray[np.int64],
    *,
    from_input: bool,
) -> pa.Array | None:
    if LANGUAGE in stored.column_names:
        return stored[LANGUAGE].take(pa.array(wanted, type=pa.int64()))
    if from_input:
        return documents[LANGUAGE].take(pa.array(rows[wanted]))
    return None


def _take(table: pa.Table, wanted: npt.NDArray[np.int64]) -> pa.Table:
    return table if len(wanted) == table.num_rows else table.take(pa.array(wanted, type=pa.int64()))


def _languages(table: pa.Table, wanted: npt.NDArray[np.int64]) -> pa.Array | None:
    if LANGUAGE not in table.column_names:
        return None
    return table[LANGUAGE].take(pa.array(wanted, type=pa.int64()))


def fates_digest(fates: pa.Table, *, cluster_columns: bool) -> str:
    """A digest of what of a fate file reaches the removal's output: which rows are duplicates, of what and why
    (plus every clustered row's cluster id and size when the cluster columns are written)."""
    columns = [ROW, ID, DUPLICATE_OF, REASON] + ([CLUSTER_ID, CLUSTER_SIZE] if cluster_columns else [])
    chosen = fates
    if not cluster_columns:  # only the duplicates matter: a representative's row carries no output change
        chosen = fates.filter(pc.is_valid(fates[DUPLICATE_OF]))
    hasher = hashlib.sha256()
    for name in columns:
        hasher.update(json.dumps(chosen[name].to_pylist()).encode())
    return hasher.hexdigest()[:20]


def _read_fates(plan: Plan, shard: int) -> pa.Table:
    url = plan.fates_url(shard)
    try:
        return read_table(url, plan.storage_options)
    except InputError as error:
        msg = f"shard {plan.shards[shard]}: its dedup fate file cannot be read ({error}); rerun the job to redo it"
        raise InputError(msg) from None


def _check_ids(table: pa.Table, local: npt.NDArray[np.int64], fates: pa.Table, rel: str) -> None:
    if len(local) == 0:
        return
    ids = table[ID].take(pa.array(local))
    if not pc.all(pc.equal(ids.cast(pa.string()), fates[ID])).as_py():
        msg = (
            f"shard {rel}: the staged kept documents and their signatures disagree (ids differ); "
            "delete the shard's _units marker and rerun so phase A rewrites both"
        )
        raise RuntimeError(msg)
