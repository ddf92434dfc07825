"""Our spaCy tokenizer (`engine.steps.spacy_tokenizer`, with its fast paths) against spaCy's own, token for token.

For each language: every chunk of one to three atoms (the tests' `ATOMS`), seeded random texts built from the
tests' fragment groups and the language's special cases, and the FineWeb-2 comparison's real documents
(benchmarks/multilingual_corpus.py) of the languages that have them. A token list is spaCy's blank pipeline's
`[t.text for t in nlp(text)]` with blank tokens left out and each token stripped (datatrove's SpaCyTokenizer).
`*_fast_paths_differ` counts texts where the fast paths give other tokens than the full algorithm without them.
Needs spaCy (the datatrove environment):

    /work/venv-bench/bin/python benchmarks/check_spacy_tokenizer.py [--languages el,fr,...] [--random 2000]
        [--json benchmarks/results/check_spacy_tokenizer.jsonl]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.provenance import git_state, machine  # noqa: E402
from engine.steps import spacy_tokenizer as sp  # noqa: E402
from tests.steps.test_spacy_tokenizer import ATOMS, FRAGMENT_GROUPS  # noqa: E402

CORPUS = {"ru": "rus_Cyrl", "tn": "swh_Latn", "de": "deu_Latn", "fr": "fra_Latn", "tr": "tur_Latn",
          "el": "ell_Grek", "uk": "ukr_Cyrl", "pl": "pol_Latn", "es": "spa_Latn", "id": "ind_Latn",
          "tt": "tat_Cyrl", "he": "heb_Hebr", "ar": "arb_Arab", "fa": "fas_Arab"}  # fmt: skip


def texts_for(code: str, count: int, docs: int) -> dict[str, list[str]]:
    specials = sorted(orth for orth in sp.SpacyTokenizer(code).specials if not orth.isspace())
    groups = [*FRAGMENT_GROUPS, specials]
    rng = random.Random(code)
    made = {
        "atoms": ["".join(p) for size in (1, 2, 3) for p in itertools.product(ATOMS, repeat=size)],
        "random": ["".join(rng.choice(rng.choice(groups)) for _ in range(rng.randint(1, 12))) for _ in range(count)],
    }
    if code in CORPUS and docs:
        from benchmarks.multilingual_corpus import language_documents

        made["corpus"] = [d.text for d in language_documents(CORPUS[code], docs)]
    return made


def check(code: str, count: int, docs: int) -> dict[str, Any]:
    import spacy

    nlp = spacy.blank(code)
    ours, full = sp.SpacyTokenizer(code), sp.SpacyTokenizer(code, fast=False)
    row: dict[str, Any] = {"language": code}
    for kind, texts in texts_for(code, count, docs).items():
        different, fast_paths_differ = [], 0
        for text in texts:
            theirs = [t for t in (token.text.strip() for token in nlp(text)) if t]
            if ours.words(text) != theirs:
                different.append({"text": text, "ours": ours.words(text), "spacy": theirs})
            fast_paths_differ += ours.words(text) != full.words(text)
        row[f"{kind}_texts"] = len(texts)
        row[f"{kind}_different"] = len(different)
        # the fast paths against the full algorithm (without them): a difference here is a fast-path bug
        row[f"{kind}_fast_paths_differ"] = fast_paths_differ
        row.setdefault("examples", []).extend(different[:3])
    print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
    for example in row["examples"]:
        print("   ", json.dumps(example, ensure_ascii=False))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=",".join(sp.languages()))
    parser.add_argument("--random", type=int, default=2000, help="random texts per language")
    parser.add_argument("--docs", type=int, default=300, help="real documents per language that has them")
    parser.add_argument("--json", default=None, help="append the results as JSON lines to this file")
    args = parser.parse_args()
    state = git_state()
    rows = [check(code, args.random, args.docs) for code in args.languages.split(",")]
    if args.json:
        with open(args.json, "a", encoding="utf-8") as handle:
            for row in rows:
                record = {"benchmark": "check_spacy_tokenizer", "git": state, "machine": machine(), **row}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0 if all(not any(v for k, v in r.items() if k.endswith(("_different", "_differ"))) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
