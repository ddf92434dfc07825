"""One unit of work: one input shard -> steps -> kept, rejected, stats, then the completion marker.

Pure of Ray: `run_unit` can be called from a notebook or a test. A unit first drops its old marker (a shard being
rewritten is not complete) and whatever a killed attempt left in its temporary folder `OUT/_tmp/<rel>/`; its
outputs are written there and renamed into place; the marker is written last, so a shard is complete exactly when
its marker says so. The marker records the shard's reuse key (`engine.runner.keys`): a rerun skips a shard whose
key is unchanged and whose files are all there.

In a dedup job phase A stages its kept documents for removal: their text under `_stage/kept/` with
`dedup.stage_text`, else (the default) only their input rows and the columns steps wrote, under `_stage/rows/`
(`engine.dedup.kept_rows`: removal rebuilds the text from the input).

Conservation is counted: the rows read (checked against the input's Parquet footer) must equal the rows written
to kept (or staged for dedup) plus the rows written to rejected, counted by the writers and checked against the
committed files' footers, read back from storage. With `write_rejected: false`, rows read = rows written to kept
+ rows the steps dropped (counted, not written).
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from engine.dedup.kept_rows import kept_rows_url, rows_layout
from engine.errors import ConservationError, EngineError, InputError, StorageError
from engine.histograms import count_bins
from engine.io.assets import forget_versions
from engine.io.atomic import remove_temporary
from engine.io.documents import check_schema
from engine.io.layout import (
    KEPT,
    REJECTED,
    SCORES,
    STAGE,
    config_file,
    join,
    shard_file,
    unit_list_keys_file,
    unit_marker_file,
    unit_stats_file,
    unit_tmp_dir,
)
from engine.io.markers import read_json, write_json
from engine.io.parquet import PartitionedWriter, StreamWriter, check_footers, open_parquet, stream_batches
from engine.io.paths import Shard, all_exist, fingerprint, remove_files
from engine.pipeline import output_schema, process_batch, read_documents, score_schema
from engine.runner.keys import JobKey, job_key, known_identities
from engine.runner.lists import KeyRecorder
from engine.schema import REASON
from engine.spec import JobSpec
from engine.stats import KEPT_ROWS, REJECTED_ROWS, STAGED_ROWS, Stats, task_peak_rss
from engine.version import __version__

Status = Literal["processed", "skipped"]


class UnitError(EngineError):
    """A shard failed for a reason other than bad input (a bug in a step, say); names the shard."""


@dataclass
class UnitResult:
    """What a unit reports back to the driver (small: no data)."""

    rel: str
    status: Status
    stats: dict[str, Any]
    outputs: list[str] = field(default_factory=list)


def kept_area(job: JobSpec) -> str:
    """Phase-A kept documents go to `kept/`, or to `_stage/kept/` when dedup still has to run (with staged text)."""
    return KEPT if job.dedup is None else join(STAGE, KEPT)


def run_unit(
    job: JobSpec,
    shard: Shard,
    *,
    key: JobKey | None = None,
    input_fingerprint: dict[str, Any] | None = None,
    force: bool = False,
) -> UnitResult:
    """Process one shard, or skip it if its marker records the same key and its files are all there (never with
    `force`: a full rebuild).

    `key` and `input_fingerprint` come from the driver's plan (`engine.runner.plan`); alone, a unit computes them.

    Raises:
        InputError: the shard is unreadable or lacks a text column (names the file).
        UnitError: anything else went wrong (names the file and the step).
        ConservationError: the rows written do not account for the rows read (names the shard).
        StorageError: storage failed even after the client's retries (an OSError: the scheduler retries it).
    """
    try:
        return _run_unit(job, shard, key, input_fingerprint, force=force)
    except StorageError:
        raise
    except OSError as error:
        msg = f"shard {shard.url}: storage error after retries: {type(error).__name__}: {error}"
        raise StorageError(msg) from error


def _run_unit(
    job: JobSpec, shard: Shard, key: JobKey | None, input_fingerprint: dict[str, Any] | None, *, force: bool
) -> UnitResult:
    out, out_options = job.output.path, job.output.storage_options
    forget_versions()  # a model or blocklist may have been replaced since this worker last read it
    own_key = key is None
    if key is None:
        key = job_key(job, known=known_identities(job))
    unit_key = key.unit_key(input_fingerprint or fingerprint(shard.url, job.input.storage_options))
    marker_url = unit_marker_file(out, shard.rel)
    previous = read_json(marker_url, out_options)
    if (
        not force
        and previous is not None
        and previous.get("key") == unit_key
        and all_exist(previous.get("outputs", []), out_options)
    ):
        return UnitResult(shard.rel, "skipped", previous["stats"], previous["outputs"])

    tmp_dir = unit_tmp_dir(out, shard.rel)
    remove_temporary(tmp_dir, out_options)  # what a killed attempt left behind
    if previous is not None:
        remove_files([marker_url], out_options)  # being rewritten: not complete until the new marker
    started = time.perf_counter()
    try:
        stats, rows, list_keys = _process(job, shard, tmp_dir, unit_key["input"])
    except (EngineError, OSError):
        raise
    except Exception as error:
        where = "; ".join(getattr(error, "__notes__", [])) or "outside any step"
        msg = f"shard {shard.url} failed ({where}): {type(error).__name__}: {error}\n{traceback.format_exc()}"
        raise UnitError(msg) from error
    outputs = sorted(rows)
    stats.seconds = time.perf_counter() - started
    stats.shard_seconds_bins = count_bins(np.asarray([stats.seconds]))
    stats.shard_seconds_total = stats.seconds
    stats.slowest_shards = [[round(stats.seconds, 3), shard.rel, stats.docs_in, stats.docs_kept]]
    stats.peak_rss_bytes = task_peak_rss()
    stats.check_conservation(f"shard {shard.url}")
    stats.check_written(f"shard {shard.url}", rejected_written=job.output.write_rejected)

    stats_dict = stats.to_dict()
    write_json(unit_stats_file(out, shard.rel), stats_dict, out_options, tmp_dir=tmp_dir)
    if previous is not None:
        remove_files([u for u in previous.get("outputs", []) if u not in outputs], out_options)
    if own_key and read_json(config_file(out, key.config_hash), out_options) is None:
        write_json(config_file(out, key.config_hash), key.config, out_options)  # the driver writes it otherwise
    marker = {
        "input": shard.url,
        "rel": shard.rel,
        "key": unit_key,
        "outputs": outputs,
        "rows": rows,
        "stats": stats_dict,
        "engine_version": __version__,
    }
    if list_keys is not None:
        marker["list_keys"] = list_keys
    write_json(marker_url, marker, out_options, tmp_dir=tmp_dir)
    remove_temporary(tmp_dir, out_options)
    return UnitResult(shard.rel, "processed", stats_dict, outputs)


def _process(
    job: JobSpec, shard: Shard, tmp_dir: str, input_fingerprint: dict[str, Any]
) -> tuple[Stats, dict[str, int], dict[str, Any] | None]:
    """Stream the shard through the steps into its writers (`input_fingerprint`: what the unit's key holds of it).

    Returns the stats, the rows in every file written, and what the marker records of the keys the documents
    present to blocklists (`engine.runner.lists`; None when no step reads a diffable list).
    """
    spec, out, options = job.input, job.output.path, job.output.storage_options
    writers: list[PartitionedWriter | StreamWriter] = []
    compression, layout = job.output.compression, job.output.write_layout()

    def _writer(url: str, schema: pa.Schema) -> StreamWriter:
        return StreamWriter(
            url, schema, storage_options=options, compression=compression, tmp_dir=tmp_dir, layout=layout
        )

    def _area(area: str, schema: pa.Schema, partition_column: str | None = None) -> PartitionedWriter:
        return PartitionedWriter(
            out,
            area,
            shard.rel,
            schema,
            partition_column=partition_column,
            storage_options=options,
            compression=compression,
            tmp_dir=tmp_dir,
            layout=layout,
        )

    stats = Stats(shards_total=1, shards_processed=1)
    recorder = KeyRecorder.for_job(job)
    list_keys = None
    try:
        with open_parquet(shard.url, spec.storage_options) as parquet:
            check_schema(parquet.schema_arrow, text_column=spec.text_column, shard=shard.url)
            empty = pa.RecordBatch.from_pylist([], schema=parquet.schema_arrow)
            canonical, empty_verdict = read_documents(empty, spec, rel=shard.rel, first_row=0)
            kept_schema = output_schema(canonical.schema, job.steps)
            staged_rows = None
            kept: PartitionedWriter | StreamWriter
            if job.dedup is not None and not job.dedup.stage_text:
                staged_rows = rows_layout(canonical.schema, kept_schema, job.steps)
                rows_schema = staged_rows.schema(
                    url=shard.url, fingerprint=input_fingerprint, input_rows=parquet.metadata.num_rows
                )
                kept = _writer(kept_rows_url(out, shard.rel), rows_schema)
            else:
                kept = _area(kept_area(job), kept_schema, job.partition_column() if job.dedup is None else None)
            writers.append(kept)
            rejected = None
            if job.output.write_rejected:
                rejected = _area(REJECTED, kept_schema.append(pa.field(REASON, pa.string())))
                writers.append(rejected)
            signatures = None
            if job.dedup is not None:
                from engine.dedup.signatures import signature_table, signatures_file

                signature_schema = signature_table(kept_schema.empty_table(), job.dedup).schema
                signatures = _writer(signatures_file(out, job.dedup, shard.rel), signature_schema)
                writers.append(signatures)

            scores = None
            if job.output.keep_scores:
                sheet_schema = score_schema(canonical.schema, job.steps, input_verdict=empty_verdict)
                scores = _writer(shard_file(out, SCORES, shard.rel), sheet_schema)
                writers.append(scores)
            row = 0
            for index, raw in enumerate(stream_batches(parquet, shard.url, spec.batch_rows)):
                first_row = row
                batch, input_verdict = read_documents(raw, spec, rel=shard.rel, first_row=first_row)
                row += raw.num_rows
                result = process_batch(
                    batch,
                    job.steps,
                    input_verdict=input_verdict,
                    keep_scores=scores is not None,
                    batch_index=index,
                    before_step=recorder.observe if recorder is not None else None,
                )
                stats = stats + result.stats
                if scores is not None and result.scores is not None:
                    scores.write(result.scores)
                if staged_rows is not None and result.kept_rows is not None:
                    kept.write(staged_rows.rows_table(result.kept, first_row + result.kept_rows))
                else:
                    kept.write(result.kept)
                if rejected is not None:
                    rejected.write(result.rejected)
                if signatures is not None and job.dedup is not None and result.kept.num_rows:
                    signatures.write(signature_table(result.kept, job.dedup))
            input_rows = parquet.metadata.num_rows
        rows: dict[str, int] = {}
        for writer in writers:
            if isinstance(writer, PartitionedWriter):
                writer.close()
                rows.update(writer.rows_by_file)
            else:
                rows[writer.close()] = writer.rows
        if recorder is not None:
            keys_url = unit_list_keys_file(out, shard.rel)
            rows[keys_url], list_keys = recorder.write(keys_url, options, tmp_dir=tmp_dir)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    where = f"shard {shard.url}"
    if row != input_rows or stats.docs_in != row:
        msg = (
            f"conservation violated in {where}: its Parquet footer holds {input_rows:,} rows, {row:,} were read"
            f" and {stats.docs_in:,} reached the steps; this is a bug, please report it"
        )
        raise ConservationError(msg)
    check_footers(rows, options, where=where)
    written: Counter[str] = Counter({STAGED_ROWS if job.dedup is not None else KEPT_ROWS: kept.rows})
    if rejected is not None:
        written[REJECTED_ROWS] = rejected.rows
    stats.written = written
    _check_sidecar(where, "signatures", signatures.rows if signatures else None, kept.rows)
    _check_sidecar(where, "scores", scores.rows if scores else None, stats.docs_in)
    return stats, rows, list_keys


def _check_sidecar(where: str, name: str, rows: int | None, expected: int) -> None:
    """A per-document sidecar (signatures of kept documents, scores of every document) has one row per document."""
    if rows is not None and rows != expected:
        msg = f"conservation violated in {where}: {rows:,} rows written to {name}, expected {expected:,}"
        raise ConservationError(msg)


__all__ = ["InputError", "UnitError", "UnitResult", "kept_area", "run_unit"]
