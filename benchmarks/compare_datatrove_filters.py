"""Agreement of our heuristic steps with datatrove 0.10.1's filters on real documents.

Runs each of our steps and the datatrove filter it reproduces, with the same parameters, on the same real
documents from /work/shared/corpora, and reports per step the share of documents with the same keep/drop
decision, the same reason, and (for c4_quality) the same rewritten text; lists the disagreements.

Needs datatrove[processing]==0.10.1 and spaCy (the benchmark venv), never the engine's runtime:

    /work/venv-bench/bin/python benchmarks/compare_datatrove_filters.py [--show 5] [--json out.jsonl]

`--tokens` compares the words instead: ours (`engine.steps.text.words`) against datatrove's `split_into_words`
(a blank spaCy English tokenizer, whitespace tokens dropped) per document, as one JSON line.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import io
import json
import os
import pickle
import sys
import tarfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

CORPORA = Path(os.environ.get("CORPORA", "/work/shared/corpora"))

# our reason code -> datatrove's, where they differ
REASON_MAP = {
    "gopher_quality": {
        "too_few_words": "gopher_short_doc",
        "too_many_words": "gopher_long_doc",
        "mean_word_length_low": "gopher_below_avg_threshold",
        "mean_word_length_high": "gopher_above_avg_threshold",
        "too_many_hashes": "gopher_too_many_hashes",
        "too_many_ellipses": "gopher_too_many_ellipsis",
        "too_many_bullet_lines": "gopher_too_many_bullets",
        "too_many_ellipsis_lines": "gopher_too_many_end_ellipsis",
        "too_few_alpha_words": "gopher_below_alpha_threshold",
        "too_few_stop_words": "gopher_enough_stop_words",
    },
    "c4_badwords": {"badwords": "document_removed_with_badwords"},
    "url_filter": {
        "blocked_domain": "domain",
        "blocked_subdomain": "subdomain",
        "blocked_url": "url",
        "banned_word": "hard_blacklisted",
        "soft_banned_words": "soft_blacklisted",
        "banned_subword": "blacklisted_subword",
    },
}


def load_documents() -> list[dict[str, Any]]:
    """Real web documents: dolma-tests CC-MAIN sample, dragnet corrected text, HF dummy c4 and oscar."""
    docs: list[dict[str, Any]] = []
    cc = CORPORA / "dolma-tests/data-history/formats/gz/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
    with gzip.open(cc, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            d = json.loads(line)
            docs.append({"id": f"dolma-cc/{i}", "text": d["text"], "url": (d.get("metadata") or {}).get("url")})
    with tarfile.open(CORPORA / "dragnet-corrected-text/dragnet_Corrected.tar.gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.isfile():
                raw = tar.extractfile(member).read()  # type: ignore[union-attr]
                docs.append(
                    {"id": f"dragnet/{Path(member.name).name}", "text": raw.decode("utf-8", "replace"), "url": None}
                )
    for path in sorted(glob.glob(str(CORPORA / "hf-datasets-dummy/c4/dummy/*/0.0.0/dummy_data.zip"))):
        config = path.split("/")[-3]
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if name.endswith(".json.gz") and "MACOSX" not in name:
                    with gzip.open(zf.open(name), "rt", encoding="utf-8") as f:
                        for j, line in enumerate(f):
                            d = json.loads(line)
                            docs.append(
                                {"id": f"c4/{config}/{Path(name).name}/{j}", "text": d["text"], "url": d["url"]}
                            )
    for path in sorted(glob.glob(str(CORPORA / "hf-datasets-dummy/oscar/dummy/*/1.0.0/dummy_data.zip"))):
        config = path.split("/")[-3]
        with zipfile.ZipFile(path) as zf:
            for name in sorted(zf.namelist()):
                if name.endswith(".txt.gz"):
                    raw = gzip.open(io.BytesIO(zf.read(name))).read().decode("utf-8", "replace")
                    for j, part in enumerate(raw.split("\n\n")):
                        if part.strip():
                            docs.append({"id": f"oscar/{config}/{j}", "text": part, "url": None})
    return docs


def load_holdout_documents() -> list[dict[str, Any]]:
    """Documents never looked at while writing the tokenizer: article-extraction-benchmark texts (human ground
    truth, trafilatura and the raw html-text baseline, with their URLs) and data-juicer RedPajama samples."""
    docs: list[dict[str, Any]] = []
    bench = CORPORA / "article-extraction-benchmark"
    truth = json.loads((bench / "ground-truth.json").read_text(encoding="utf-8"))
    for source, path in (
        ("truth", bench / "ground-truth.json"),
        ("trafilatura", bench / "output/trafilatura.json"),
        ("html-text", bench / "output/html-text.json"),
    ):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "output" in data:
            data = data["output"]  # extractor outputs: {"output": {id: {...}}, "version": ...}
        for key in sorted(data):
            text = data[key].get("articleBody") or ""
            docs.append({"id": f"aeb-{source}/{key[:12]}", "text": text, "url": truth.get(key, {}).get("url")})
    for path in sorted((CORPORA / "data-juicer-samples").glob("*.jsonl")):
        for j, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            docs.append({"id": f"data-juicer/{path.stem}/{j}", "text": json.loads(line)["text"], "url": None})
    return docs


def datatrove_filters() -> dict[str, Callable[[], Any]]:
    """Factories of the reference filters, FineWeb settings."""
    from datatrove.pipeline.filters import (
        C4BadWordsFilter,
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return {
        "gopher_repetition": GopherRepetitionFilter,
        "gopher_quality": GopherQualityFilter,
        "c4_quality": lambda: C4QualityFilter(filter_no_terminal_punct=False),
        "fineweb_quality": FineWebQualityFilter,
        "c4_badwords": lambda: C4BadWordsFilter(fail_on_missing_language=False),
        "url_filter": _datatrove_url_filter,
    }


def _datatrove_url_filter() -> Any:
    from datatrove.pipeline.filters import URLFilter

    step = URLFilter()
    step.download_data()  # extracts the shipped UT1 lists into the local HF assets cache (no network)
    return step


def ut1_lists() -> tuple[str, str]:
    """Paths of datatrove's extracted UT1 `domains` and `urls` lists (extracted by its URLFilter)."""
    from huggingface_hub import cached_assets_path

    folder = cached_assets_path(library_name="datatrove", namespace="filters", subfolder="url_filter")
    return str(Path(folder) / "domains"), str(Path(folder) / "urls")


def _use_shipped_badwords() -> None:
    """Point datatrove's bad-word download at our shipped LDNOOBW lists (there is no network here)."""
    from datatrove.pipeline.filters import c4_filters

    data = Path(__file__).resolve().parents[1] / "engine" / "data" / "ldnoobw"

    def local(remote_path: str, **_: Any) -> str:
        language = "en" if remote_path == c4_filters._EN_BADWORDS_URL else remote_path.rsplit("/", 1)[-1]
        return str(data / f"{language}.txt")

    c4_filters.cached_asset_path_or_download = local


def reference_decisions(
    name: str, docs: list[dict[str, Any]], cache_dir: Path | None
) -> list[tuple[bool, str | None, str]]:
    """(keep, reason, text after the filter) per document from datatrove, cached by step name."""
    cache = cache_dir / f"datatrove-{name}-{len(docs)}.pkl" if cache_dir else None
    if cache is not None and cache.exists():
        return pickle.loads(cache.read_bytes())  # noqa: S301 - our own cache file
    from datatrove.data import Document

    if name == "c4_badwords":
        _use_shipped_badwords()
    step = datatrove_filters()[name]()
    out = []
    for d in docs:
        doc = Document(text=d["text"], id=d["id"], metadata={"url": d["url"]} if d["url"] else {})
        result = step.filter(doc)
        keep, reason = (result, None) if isinstance(result, bool) else (bool(result[0]), result[1])
        out.append((keep, None if keep else reason, doc.text))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(out))
    return out


def our_step(name: str) -> Any:
    from engine.steps import build_step

    params: dict[str, Any] = {"type": name}
    if name == "c4_badwords":
        params["default_language"] = "en"
    if name == "url_filter":
        params["domains_file"], params["urls_file"] = ut1_lists()
    return build_step(params)


def our_decisions(name: str, docs: list[dict[str, Any]]) -> list[tuple[bool, str | None, str]]:
    from engine.batch import make_batch

    columns: dict[str, list[Any]] = {"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]}
    if name == "url_filter":
        columns["url"] = [d["url"] for d in docs]
    batch = make_batch(columns)
    step = our_step(name)
    new_batch, verdict = step.apply(batch)
    texts = new_batch["text"].to_pylist()
    mapping = REASON_MAP.get(name, {})
    return [
        (bool(k), None if k else mapping.get(str(r), str(r)), t)
        for k, r, t in zip(verdict.keep, verdict.reason, texts, strict=True)
    ]


def compare(name: str, docs: list[dict[str, Any]], cache_dir: Path | None, show: int) -> dict[str, Any]:
    if name == "url_filter":  # datatrove asserts a URL; only documents that have one
        docs = [d for d in docs if d["url"]]
    ref = reference_decisions(name, docs, cache_dir)
    ours = our_decisions(name, docs)
    same_keep = sum(a[0] == b[0] for a, b in zip(ref, ours, strict=True))
    same_reason = sum(a[0] == b[0] and a[1] == b[1] for a, b in zip(ref, ours, strict=True))
    same_text = sum(a[0] == b[0] and (not a[0] or a[2] == b[2]) for a, b in zip(ref, ours, strict=True))
    disagreements = [
        (d["id"], a[1] or "keep", b[1] or "keep") for d, a, b in zip(docs, ref, ours, strict=True) if a[0] != b[0]
    ]
    row = {
        "step": name,
        "docs": len(docs),
        "keep_agreement": same_keep / len(docs),
        "reason_agreement": same_reason / len(docs),
        "text_agreement": same_text / len(docs),
        "datatrove_drops": Counter(a[1] for a in ref if not a[0]).most_common(),
        "disagreements": len(disagreements),
        "disagreement_pairs": Counter((a, b) for _, a, b in disagreements).most_common(),
    }
    print(
        f"{name:18s} keep/drop {row['keep_agreement']:.4f}  reason {row['reason_agreement']:.4f}  "
        f"text {row['text_agreement']:.4f}  ({len(disagreements)} of {len(docs)} differ)"
    )
    print(f"    datatrove drops: {row['datatrove_drops']}")
    for doc_id, a, b in disagreements[:show]:
        print(f"    {doc_id}: datatrove={a} ours={b}")
    return row


def write_golden(docs: list[dict[str, Any]], steps: list[str], cache_dir: Path | None, path: Path) -> None:
    """Write the golden fixture: small real documents covering every reason datatrove gave, with its decisions.

    Only documents where our decision equals datatrove's on every step are kept (the known differences are
    listed by the comparison instead); per step and reason the smallest 3 documents, plus 12 kept by all.
    """
    import hashlib

    ref = {name: reference_decisions(name, docs, cache_dir) for name in steps}
    ours = {name: our_decisions(name, docs) for name in steps}
    agree = [all(ref[s][i][:2] == ours[s][i][:2] for s in steps) for i in range(len(docs))]
    chosen: set[int] = set()
    by_size = sorted(range(len(docs)), key=lambda i: len(docs[i]["text"]))
    for name in steps:
        reasons = {r[1] for r in ref[name] if not r[0]}
        for reason in sorted(reasons):
            picks = [i for i in by_size if agree[i] and ref[name][i][1] == reason and len(docs[i]["text"]) < 20_000]
            chosen.update(picks[:3])
    kept_all = [i for i in by_size if agree[i] and all(ref[s][i][0] for s in steps) and len(docs[i]["text"]) > 500]
    chosen.update(kept_all[:12])
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i in sorted(chosen):
            d = docs[i]
            expected = {s: ref[s][i][1] or "keep" for s in steps}
            c4_text = ref["c4_quality"][i][2] if "c4_quality" in steps and ref["c4_quality"][i][0] else None
            row = {
                "id": d["id"],
                "text": d["text"],
                "url": d["url"],
                "expected": expected,
                "c4_text_sha1": hashlib.sha1(c4_text.encode()).hexdigest() if c4_text is not None else None,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(chosen)} documents to {path} ({path.stat().st_size / 1024:.0f} KiB)")


def compare_tokens(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Documents whose word lists are identical to datatrove's, and whose word counts are within 1%."""
    import polars as pl
    from datatrove.utils.text import split_into_words

    from engine.steps import text as tx

    texts = [d["text"] or "" for d in docs]
    ours = tx.words(pl.Series(texts, dtype=pl.String))
    values, rows = ours.values.to_list(), ours.row.tolist()
    per_doc: list[list[str]] = [[] for _ in texts]
    for row, word in zip(rows, values, strict=True):
        per_doc[row].append(word)
    identical = within = 0
    for text, mine in zip(texts, per_doc, strict=True):
        reference = split_into_words(text, "en")
        identical += mine == reference
        within += abs(len(mine) - len(reference)) <= 0.01 * max(len(reference), 1)
    return {"what": "tokens", "docs": len(texts), "identical": identical, "count_within_1pct": within}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", default="gopher_repetition,gopher_quality,c4_quality,fineweb_quality,c4_badwords,url_filter"
    )
    parser.add_argument("--show", type=int, default=10, help="disagreements to list per step")
    parser.add_argument("--cache", default="/tmp/compare-datatrove-cache", help="cache of datatrove decisions")
    parser.add_argument("--json", default=None, help="append the results as JSON lines to this file")
    parser.add_argument("--holdout", action="store_true", help="use the held-out documents instead")
    parser.add_argument("--write-golden", default=None, help="write the golden test fixture (jsonl.gz) here")
    parser.add_argument("--tokens", action="store_true", help="compare the word lists instead of the decisions")
    args = parser.parse_args()
    docs = load_holdout_documents() if args.holdout else load_documents()
    print(f"{len(docs)} documents: {dict(Counter(d['id'].split('/')[0] for d in docs))}")
    if args.tokens:
        from engine.provenance import git_state

        row = {**compare_tokens(docs), "git": git_state(), "holdout": args.holdout}
        print(json.dumps(row))
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        return 0
    if args.write_golden:
        write_golden(docs, args.steps.split(","), Path(args.cache) if args.cache else None, Path(args.write_golden))
        return 0
    rows = []
    for name in args.steps.split(","):
        started = time.perf_counter()
        rows.append(compare(name, docs, Path(args.cache) if args.cache else None, args.show))
        rows[-1]["seconds"] = time.perf_counter() - started
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
