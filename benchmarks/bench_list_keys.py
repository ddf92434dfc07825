"""What a shard's URL-key sidecar costs: bytes and keys per document, and CPU per document to record them.

    python benchmarks/bench_list_keys.py [--docs 100000]

Two URL sets: the real URLs of the dolma CC-MAIN sample (../shared/corpora, 697 documents from as many sites:
Common Crawl's mix of hosts), and `--docs` distinct URLs on the benchmark corpus's pattern (one domain per
shard, `benchmarks/corpus.py`). For each: the keys a unit records for a job with both `domains_file` and
`urls_file` (`engine.runner.lists.KeyRecorder`), the sidecar's bytes, and the CPU time of `url_filter` on the
URLs with and without recording (process time, best of 3; the tldextract lookups are shared through a cache).
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
from engine.runner.lists import KeyRecorder  # noqa: E402
from engine.spec import parse_job  # noqa: E402
from engine.steps.url import URLFilter, domain_and_host  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--results", default="benchmarks/results/list_keys.jsonl")
    args = parser.parse_args()
    with gzip.open(SHARED / DOLMA, "rt", encoding="utf-8") as handle:
        real = [json.loads(line)["metadata"]["url"] for line in handle]
    synthetic = [f"news0.com/0-{i}" for i in range(args.docs)]  # one shard of --docs documents
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure("dolma-cc-sample", real, Path(tmp)), measure("benchmark-corpus", synthetic, Path(tmp))]
    append_record(
        {"benchmark": "list-keys", "git": git_state(), "machine": machine(), "results": results}, args.results
    )


if __name__ == "__main__":
    main()
