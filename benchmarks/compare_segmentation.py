"""Word segmentation per language: datatrove's tokenizer against each of our backends, on real text.

For every language and every candidate backend (engine/steps/segmentation.py) this measures, on the same
documents (benchmarks/multilingual_corpus.py: Tatoeba translations and Leipzig web sentences joined into
documents, with seeded variants):

- speed: characters/s of datatrove's `word_tokenize` one document at a time, and of the backend over the batch;
- tokens: documents with exactly the same token list, token precision/recall (multiset overlap);
- decisions: keep/drop agreement of datatrove's own FineWeb-2 filters (fineweb2_reference.py, the language's
  config) run once with datatrove's tokenizer and once with the backend's tokens, per filter and chained. This
  isolates what a segmenter changes in the decisions from how the rules are computed.

    /work/venv-bench/bin/python benchmarks/compare_segmentation.py [--languages cmn_Hani,tha_Thai] [--docs 300]
        [--json benchmarks/results/compare_segmentation.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core, as datatrove runs here (set before polars loads)

import polars as pl  # noqa: E402

from benchmarks.fineweb2_reference import STEPS, chain, datatrove_filters, decide  # noqa: E402
from benchmarks.multilingual_corpus import language_documents  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.steps.languages import fineweb2_config  # noqa: E402
from engine.steps.segmentation import backend_for, backend_words, row_segmenters  # noqa: E402

# Candidates per language beyond the default backend (`backend_for`): ICU everywhere it has a dictionary.
CANDIDATES = {
    "cmn_Hani": ("jieba", "icu"),
    "jpn_Jpan": ("sudachi", "icu"),
    "kor_Hang": ("kiwi", "icu"),
    "tha_Thai": ("pythainlp", "newmm", "icu"),
    "lao_Laoo": ("lao", "icu"),
    "khm_Khmr": ("khmer", "icu"),
    "mya_Mymr": ("burmese", "icu"),
    "vie_Latn": ("pyvi", "spacy"),
}
DEFAULT_LANGUAGES = (
    "cmn_Hani,jpn_Jpan,kor_Hang,tha_Thai,lao_Laoo,khm_Khmr,mya_Mymr,arb_Arab,urd_Arab,fas_Arab,hin_Deva,ben_Beng,"
    "tam_Taml,rus_Cyrl,swh_Latn,deu_Latn,fra_Latn,vie_Latn,tur_Latn,ell_Grek,heb_Hebr,pol_Latn,spa_Latn,ind_Latn"
)


class FixedTokens:
    """A datatrove WordTokenizer that returns precomputed tokens (so datatrove's rules see our words)."""

    def __init__(self, tokens: dict[str, list[str]]) -> None:
        from datatrove.utils.word_tokenizers import WordTokenizer

        class _Tokenizer(WordTokenizer):
            def word_tokenize(self, text: str) -> list[str]:
                return tokens[text]

            def sent_tokenize(self, text: str) -> list[str]:
                raise NotImplementedError

            def span_tokenize(self, text: str) -> list[tuple[int, int]]:
                raise NotImplementedError

        self.tokenizer = _Tokenizer()


def token_overlap(reference: list[list[str]], candidate: list[list[str]]) -> dict[str, float]:
    """Exact-document share and multiset token precision/recall."""
    hits = sum(sum((Counter(a) & Counter(b)).values()) for a, b in zip(reference, candidate, strict=True))
    n_ref, n_cand = sum(map(len, reference)), sum(map(len, candidate))
    return {
        "same_tokens": sum(a == b for a, b in zip(reference, candidate, strict=True)) / len(reference),
        "token_precision": hits / max(n_cand, 1),
        "token_recall": hits / max(n_ref, 1),
    }


def decisions(config: Any, language: Any, texts: list[str]) -> dict[str, list[tuple[bool, str | None]]]:
    """datatrove's decisions per filter and chained, with words from `language` (a name or a tokenizer)."""
    filters = datatrove_filters(config, language)
    out = {name: [decide(filters[name], t) for t in texts] for name in STEPS}
    out["chain"] = [chain(filters, t) for t in texts]
    return out


def compare_language(language: str, docs: int) -> list[dict[str, Any]]:
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    config = fineweb2_config(language)
    texts = [d.text for d in language_documents(language, docs)]
    chars = sum(map(len, texts))
    reference_tokenizer = load_word_tokenizer(language)
    reference_tokenizer.word_tokenize(texts[0])  # load models outside the timing
    started = time.perf_counter()
    reference = [reference_tokenizer.word_tokenize(t) for t in texts]
    reference_seconds = time.perf_counter() - started
    reference_decisions = decisions(config, language, texts)
    rows = []
    for backend in dict.fromkeys((backend_for(config.tokenizer), *CANDIDATES.get(language, ()))):
        series = pl.Series(texts, dtype=pl.String)
        detail = row_segmenters([language], {language: backend})[0][1]  # spaCy language or script
        backend_words(series.head(1), backend, detail)  # load dictionaries outside the timing
        started = time.perf_counter()
        words = backend_words(series, backend, detail).to_list()
        seconds = time.perf_counter() - started
        ours = decisions(config, FixedTokens(dict(zip(texts, words, strict=True))).tokenizer, texts)
        agreement = {
            name: sum(a[0] == b[0] for a, b in zip(reference_decisions[name], ours[name], strict=True)) / len(texts)
            for name in (*STEPS, "chain")
        }
        row = {
            "language": language,
            "datatrove_tokenizer": config.tokenizer,
            "backend": backend,
            "docs": len(texts),
            "chars": chars,
            "datatrove_chars_per_s": chars / reference_seconds,
            "backend_chars_per_s": chars / seconds,
            "speedup": reference_seconds / seconds,
            **token_overlap(reference, words),
            "decision_agreement": agreement,
            "datatrove_kept": sum(k for k, _ in reference_decisions["chain"]) / len(texts),
            "backend_kept": sum(k for k, _ in ours["chain"]) / len(texts),
        }
        rows.append(row)
        print(
            f"{language:9s} {config.tokenizer:22s} {backend:10s} x{row['speedup']:7.1f} "
            f"({row['backend_chars_per_s'] / 1e3:7.0f} vs {row['datatrove_chars_per_s'] / 1e3:5.0f} kchar/s)  "
            f"same tokens {row['same_tokens']:6.1%}  P/R {row['token_precision']:.3f}/{row['token_recall']:.3f}  "
            f"decisions rep {agreement['gopher_repetition']:6.1%} fwq {agreement['fineweb_quality']:6.1%} "
            f"gq {agreement['gopher_quality']:6.1%} chain {agreement['chain']:6.1%}  "
            f"kept {row['datatrove_kept']:5.1%}/{row['backend_kept']:5.1%}",
            flush=True,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=DEFAULT_LANGUAGES)
    parser.add_argument("--docs", type=int, default=300, help="documents per language")
    parser.add_argument("--json", default=None, help="append one JSON line per (language, backend) to this file")
    args = parser.parse_args()
    state = git_state()  # the code that runs is the code checked out now, not when the results are written
    rows = []
    for language in args.languages.split(","):
        try:
            rows.extend(compare_language(language, args.docs))
        except (ImportError, OSError, ValueError) as error:
            print(f"{language}: skipped: {type(error).__name__}: {error}", flush=True)
    if args.json:
        provenance = {"git": state, "machine": machine()}
        with open(args.json, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({"benchmark": "compare_segmentation", **provenance, **row}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
