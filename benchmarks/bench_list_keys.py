"""What a shard's URL-key sidecar costs: bytes and keys per document, and CPU per document to record them.

    python benchmarks/bench_list_keys.py [--docs 100000] [--entries 1000000]

Two URL sets: the real URLs of the dolma CC-MAIN sample (../shared/corpora, 697 documents from as many sites:
Common Crawl's mix of hosts), and `--docs` distinct URLs on the benchmark corpus's pattern (one domain per
shard, `benchmarks/corpus.py`). For each: the keys a unit records for a job with both `domains_file` and
`urls_file` (`engine.runner.lists.KeyRecorder`), the sidecar's bytes, and the CPU time of `url_filter` on the
URLs with and without recording (process time, best of 3; the tldextract lookups are shared through a cache).
Then the driver's side: a list of `--entries` domains read and hashed (what `plan` does once per new list
version), the bytes of its snapshot, and a diff against a version with 0.1% of the entries replaced.
Appends one JSON line to benchmarks/results/list_keys.jsonl.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import DOLMA, SHARED  # noqa: E402

from engine.inspect.bench import append_record  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.runner.lists import KeyRecorder, ListDiff, write_snapshot  # noqa: E402
from engine.spec import parse_job  # noqa: E402
from engine.steps.url import URLFilter, domain_and_host  # noqa: E402
from engine.steps.url_keys import list_hashes  # noqa: E402

BATCH = 2048


def measure(name: str, urls: list[str], folder: Path) -> dict[str, Any]:
    """Keys, sidecar bytes and recording CPU for one URL set."""
    for list_file in ("domains.txt", "urls.txt"):
        (folder / list_file).write_text("")
    steps = [{"type": "url_filter", "domains_file": str(folder / "domains.txt"), "urls_file": str(folder / "urls.txt")}]
    job = parse_job({"input": {"path": str(folder)}, "output": {"path": str(folder / "out")}, "steps": steps})
    batches = [pa.table({"url": urls[i : i + BATCH]}) for i in range(0, len(urls), BATCH)]
    step = URLFilter(extra_domains=("blocked.example.com",))  # a non-empty domain list: the filter looks domains up

    def cpu(*, record: bool) -> float:
        recorder = KeyRecorder.for_job(job)
        assert recorder is not None
        domain_and_host.cache_clear()
        started = time.process_time()
        for batch in batches:
            if record:
                recorder.observe(0, batch)
            step(batch)
        return time.process_time() - started

    alone = min(cpu(record=False) for _ in range(3))
    recording = min(cpu(record=True) for _ in range(3))
    recorder = KeyRecorder.for_job(job)
    assert recorder is not None
    for batch in batches:
        recorder.observe(0, batch)
    sidecar = folder / f"{name}.urlkeys.parquet"
    rows, record = recorder.write(str(sidecar), {})
    size = sidecar.stat().st_size
    result = {
        "urls": name,
        "docs": len(urls),
        "keys": record["assets"],
        "keys_per_doc": round(rows / len(urls), 3),
        "sidecar_bytes": size,
        "sidecar_bytes_per_doc": round(size / len(urls), 2),
        "sidecar_bytes_per_key": round(size / rows, 2),
        "url_filter_us_per_doc": round(1e6 * alone / len(urls), 2),
        "with_recording_us_per_doc": round(1e6 * recording / len(urls), 2),
    }
    print(json.dumps(result))
    return result


def measure_list(entries: int, folder: Path) -> dict[str, Any]:
    """Seconds to read and hash a list of `entries` domains, its snapshot's bytes, and a diff's seconds."""
    old, new = folder / "old.txt", folder / "new.txt"
    names = [f"domain-{i}.example.com" for i in range(entries)]
    old.write_text("".join(f"{name}\n" for name in names))
    changed = max(1, entries // 1000)
    new.write_text("".join(f"{name}\n" for name in names[changed:]) + "".join(f"new-{i}.org\n" for i in range(changed)))
    started = time.perf_counter()
    old_hashes = list_hashes(str(old))
    hash_seconds = time.perf_counter() - started
    new_hashes = list_hashes(str(new))
    write_snapshot(str(folder / "out"), {}, "sha256:old", old_hashes)
    snapshot_bytes = sum(p.stat().st_size for p in (folder / "out").rglob("*.parquet"))
    started = time.perf_counter()
    diff = ListDiff.between(old_hashes, new_hashes)
    diff_seconds = time.perf_counter() - started
    result = {
        "entries": entries,
        "list_file_bytes": old.stat().st_size,
        "read_and_hash_seconds": round(hash_seconds, 2),
        "snapshot_bytes": snapshot_bytes,
        "snapshot_bytes_per_entry": round(snapshot_bytes / entries, 2),
        "diff": diff.summary(),
        "diff_seconds": round(diff_seconds, 3),
    }
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--results", default="benchmarks/results/list_keys.jsonl")
    args = parser.parse_args()
    with gzip.open(SHARED / DOLMA, "rt", encoding="utf-8") as handle:
        real = [json.loads(line)["metadata"]["url"] for line in handle]
    synthetic = [f"news0.com/0-{i}" for i in range(args.docs)]  # one shard of --docs documents
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure("dolma-cc-sample", real, Path(tmp)), measure("benchmark-corpus", synthetic, Path(tmp))]
        snapshot = measure_list(args.entries, Path(tmp))
    record = {"benchmark": "list-keys", "git": git_state(), "machine": machine(), "results": results, "list": snapshot}
    append_record(record, args.results)


if __name__ == "__main__":
    main()
