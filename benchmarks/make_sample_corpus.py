"""Build the sample corpus in data/sample/ from real Common Crawl text in ../shared/corpora.

Source: dolma's test fixture CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz (697 documents from one
CC-MAIN-2019-30 WARC, ~55 languages). Written as 4 zstd Parquet shards with small row groups (so that the
streaming reader really streams), keeping `id`, `text`, `url`, `warc_date` and `source`.

    python benchmarks/make_sample_corpus.py [--shared ../shared] [--out data/sample]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SOURCE = "corpora/dolma-tests/data-history/formats/gz/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--out", default="data/sample")
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()

    with gzip.open(Path(args.shared) / SOURCE, "rt", encoding="utf-8") as handle:
        docs = [json.loads(line) for line in handle]
    rows = [
        {
            "id": d["id"],
            "text": d["text"],
            "url": (d.get("metadata") or {}).get("url"),
            "warc_date": (d.get("metadata") or {}).get("warc_date"),
            "source": d.get("source"),
        }
        for d in docs
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(rows) // args.shards)
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.large_string()),
            ("url", pa.string()),
            ("warc_date", pa.string()),
            ("source", pa.string()),
        ]
    )
    for index in range(args.shards):
        part = rows[index * per_shard : (index + 1) * per_shard]
        table = pa.Table.from_pylist(part, schema=schema)
        pq.write_table(
            table, out / f"part-{index:03d}.parquet", compression="zstd", row_group_size=64, write_page_checksum=True
        )
    print(f"wrote {len(rows)} documents in {args.shards} shards to {out}")


if __name__ == "__main__":
    main()
