"""How the engine's dedup normalisation differs from datatrove's `simplify_text`, measured on real text.

    /work/venv-bench/bin/python benchmarks/compare_normalisation.py [--out benchmarks/results/normalisation.jsonl]

For every document of the dolma CC-MAIN sample (670 non-empty pages, ~55 languages) and Dragnet (1,381 English
articles), compares the engine's normalised words (`engine.dedup.normalise.normalised_words`, what MinHash
shingles) with datatrove 0.10.1's `simplify_text(text).split()`, and the two sets of word 5-gram shingles. Each
differing word pair is attributed to the first rule that explains it (digits, symbols, compatibility forms), so
engine/dedup/normalise.py can say how the two differ, and how often, on real text.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import pyarrow as pa  # noqa: E402
from bench_dedup import dolma_texts, dragnet_texts  # noqa: E402

from engine.dedup.normalise import normalised_words  # noqa: E402
from engine.provenance import git_state  # noqa: E402


def engine_words(texts: list[str]) -> list[list[str]]:
    words = normalised_words(pa.array(texts, type=pa.large_string()))
    vocabulary = words.vocabulary.to_pylist()
    return [[vocabulary[i] for i in words.indices[words.offsets[d] : words.offsets[d + 1]]] for d in range(len(texts))]


def shingles(words: list[str], n: int = 5) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))} if words else set()


def cause(text: str) -> str:
    """The first normalisation rule that explains why a datatrove word differs from the engine's."""
    if any(ch.isdigit() for ch in text):
        return "numbers: datatrove turns each number (digits with one decimal part) into one 0, the engine each digit"
    if any(unicodedata.category(ch)[0] in "PS" for ch in text):
        return "symbols: the engine separates words at every Unicode punctuation or symbol, datatrove at its list"
    if unicodedata.normalize("NFKD", text) != unicodedata.normalize("NFD", text):
        return "compatibility forms: the engine folds them (NFKD: ligatures, full-width, superscripts), datatrove not"
    return "other"


def compare(name: str, texts: list[str]) -> dict[str, object]:
    from datatrove.utils.text import simplify_text

    ours = engine_words(texts)
    identical = same_shingles = 0
    jaccards = []
    causes: Counter[str] = Counter()
    for text, engine in zip(texts, ours, strict=True):
        reference = simplify_text(text).split()
        if reference == engine:
            identical += 1
        a, b = shingles(engine), shingles(reference)
        same_shingles += a == b
        jaccards.append(len(a & b) / len(a | b) if a | b else 1.0)
        if reference != engine:
            for word in set(reference) - set(engine):
                causes[cause(word)] += 1
    jaccards.sort()
    return {
        "corpus": name,
        "docs": len(texts),
        "identical_words": identical,
        "identical_shingles": same_shingles,
        "shingle_jaccard_median": round(jaccards[len(jaccards) // 2], 4),
        "shingle_jaccard_p10": round(jaccards[len(jaccards) // 10], 4),
        "datatrove_words_missing_in_engine_by_cause": dict(causes.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", help="append the JSON line to this file")
    args = parser.parse_args()
    import datatrove

    record = {
        "bench": "normalisation",
        "git": git_state(),
        "datatrove": datatrove.__version__ if hasattr(datatrove, "__version__") else "0.10.1",
        "corpora": [
            compare("dolma CC-MAIN sample", [t for t in dolma_texts() if t.strip()]),
            compare("dragnet", dragnet_texts()),
        ],
    }
    line = json.dumps(record, sort_keys=True)
    print(json.dumps(record, indent=2))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
