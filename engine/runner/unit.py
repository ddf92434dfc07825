"""One unit of work: one input shard -> steps -> kept, rejected, stats, then the completion marker.

Pure of Ray: `run_unit` can be called from a notebook or a test. Outputs are written under temporary names and
renamed into place; the marker is written last, so a shard is complete exactly when its marker says so. A rerun
skips a shard whose marker records the same input fingerprint and the same phase-A configuration hash.
"""

from __future__ import annotations

import resource
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from engine.errors import EngineError, InputError, StorageError
from engine.io.documents import check_schema
from engine.io.layout import KEPT, REJECTED, SCORES, STAGE, join, shard_file, unit_marker_file, unit_stats_file
from engine.io.markers import read_json, write_json
from engine.io.parquet import PartitionedWriter, StreamWriter, open_parquet, stream_batches
from engine.io.paths import Shard, all_exist, fingerprint, remove_files
from engine.pipeline import output_schema, process_batch, read_documents
from engine.schema import ID, REASON
from engine.spec import JobSpec
from engine.stats import Stats
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
    """Phase-A kept output goes to `kept/`, or to `_stage/kept/` when dedup still has to run."""
    return KEPT if job.dedup is None else join(STAGE, KEPT)


def run_unit(job: JobSpec, shard: Shard) -> UnitResult:
    """Process one shard, or skip it if its marker matches the input and the configuration.

    Raises:
        InputError: the shard is unreadable or lacks a text column (names the file).
        UnitError: anything else went wrong (names the file and the step).
        StorageError: storage failed even after the client's retries (an OSError: the scheduler retries it).
    """
    try:
        return _run_unit(job, shard)
    except StorageError:
        raise
    except OSError as error:
        msg = f"shard {shard.url}: storage error after retries: {type(error).__name__}: {error}"
        raise StorageError(msg) from error


def _run_unit(job: JobSpec, shard: Shard) -> UnitResult:
    out, out_options = job.output.path, job.output.storage_options
    marker_url = unit_marker_file(out, shard.rel)
    input_print = fingerprint(shard.url, job.input.storage_options)
    config_hash = job.phase_a_hash()
    previous = read_json(marker_url, out_options)
    if (
        previous is not None
        and previous.get("fingerprint") == input_print
        and previous.get("config_hash") == config_hash
        and all_exist(previous.get("outputs", []), out_options)
    ):
        return UnitResult(shard.rel, "skipped", previous["stats"], previous["outputs"])

    started = time.perf_counter()
    try:
        stats, outputs = _process(job, shard)
    except (EngineError, OSError):
        raise
    except Exception as error:
        where = "; ".join(getattr(error, "__notes__", [])) or "outside any step"
        msg = f"shard {shard.url} failed ({where}): {type(error).__name__}: {error}\n{traceback.format_exc()}"
        raise UnitError(msg) from error
    stats.seconds = time.perf_counter() - started
    stats.peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    stats.check_conservation(f"shard {shard.url}")

    stats_dict = stats.to_dict()
    write_json(unit_stats_file(out, shard.rel), stats_dict, out_options)
    if previous is not None:
        remove_files([u for u in previous.get("outputs", []) if u not in outputs], out_options)
    marker = {
        "input": shard.url,
        "rel": shard.rel,
        "fingerprint": input_print,
        "config_hash": config_hash,
        "outputs": outputs,
        "stats": stats_dict,
        "engine_version": __version__,
    }
    write_json(marker_url, marker, out_options)
    return UnitResult(shard.rel, "processed", stats_dict, outputs)


_EMPTY_SCORES = pa.schema([pa.field(ID, pa.string()), pa.field(REASON, pa.string())])


def _process(job: JobSpec, shard: Shard) -> tuple[Stats, list[str]]:
    """Stream the shard through the steps into its writers; the stats and the files written."""
    spec, out, options = job.input, job.output.path, job.output.storage_options
    writers: list[PartitionedWriter | StreamWriter] = []

    def _writer(url: str, schema: pa.Schema) -> StreamWriter:
        return StreamWriter(url, schema, storage_options=options, compression=job.output.compression)

    stats = Stats(shards_total=1, shards_processed=1)
    try:
        with open_parquet(shard.url, spec.storage_options) as parquet:
            check_schema(parquet.schema_arrow, text_column=spec.text_column, shard=shard.url)
            empty = pa.RecordBatch.from_pylist([], schema=parquet.schema_arrow)
            canonical, _ = read_documents(empty, spec, rel=shard.rel, first_row=0)
            kept_schema = output_schema(canonical.schema, job.steps)
            kept = PartitionedWriter(
                out,
                kept_area(job),
                shard.rel,
                kept_schema,
                partition_column=job.partition_column() if job.dedup is None else None,
                storage_options=options,
                compression=job.output.compression,
            )
            writers.append(kept)
            rejected = None
            if job.output.write_rejected:
                rejected_schema = kept_schema.append(pa.field(REASON, pa.string()))
                rejected = PartitionedWriter(
                    out,
                    REJECTED,
                    shard.rel,
                    rejected_schema,
                    storage_options=options,
                    compression=job.output.compression,
                )
                writers.append(rejected)
            signatures = None
            if job.dedup is not None:
                from engine.dedup.signatures import signature_table, signatures_file

                signature_schema = signature_table(kept_schema.empty_table(), job.dedup).schema
                signatures = _writer(signatures_file(out, job.dedup, shard.rel), signature_schema)
                writers.append(signatures)

            scores: StreamWriter | None = None
            row = 0
            for raw in stream_batches(parquet, shard.url, spec.batch_rows):
                batch, input_verdict = read_documents(raw, spec, rel=shard.rel, first_row=row)
                row += raw.num_rows
                result = process_batch(
                    batch, job.steps, input_verdict=input_verdict, keep_scores=job.output.keep_scores
                )
                stats = stats + result.stats
                if result.scores is not None and result.scores.num_rows:
                    if scores is None:
                        scores = _writer(shard_file(out, SCORES, shard.rel), result.scores.schema)
                        writers.append(scores)
                    scores.write(result.scores)
                kept.write(result.kept)
                if rejected is not None:
                    rejected.write(result.rejected)
                if signatures is not None and job.dedup is not None and result.kept.num_rows:
                    signatures.write(signature_table(result.kept, job.dedup))
        if job.output.keep_scores and scores is None:
            writers.append(_writer(shard_file(out, SCORES, shard.rel), _EMPTY_SCORES))
        outputs: list[str] = []
        for writer in writers:
            closed = writer.close()
            outputs.extend([closed] if isinstance(closed, str) else closed)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return stats, sorted(outputs)


__all__ = ["InputError", "UnitError", "UnitResult", "kept_area", "run_unit"]
