"""FineWeb-2 side by side: datatrove 0.10.1's FineWeb-2 filters and ours, same documents, same configs, same run.

Documents: benchmarks/multilingual_corpus.py (Tatoeba translations and Leipzig web sentences joined into
documents, seeded variants near each threshold), each labelled with its gold FineWeb-2 language, as FineWeb-2's
filtering stage saw them (one language folder at a time, after language id). For every language:

- keep/drop agreement per step (each step alone on every document) and for the chain, in FineWeb-2's order
  (gopher_repetition, fineweb_quality, gopher_quality), and the share kept by each side;
- the final touches (ftfy with datatrove's settings, PII, symbol lines): share of documents with the same text
  (datatrove's PII replacement cycle restarted per document, as ours does);

and per language family (whitespace, CJK, Thai/Lao/Khmer/Burmese, Arabic script) the filter chain's docs/s on
one core: datatrove one document at a time, ours one batch (the family's languages mixed) through the same
`process_batch` a job runs. `--baseline` adds what the engine kept before FineWeb-2 support: language id (any
language, score >= 0.65) and the FineWeb steps with their English settings, on the translated documents only.

    /work/venv-bench/bin/python benchmarks/compare_fineweb2.py [--docs 300] [--languages ...] [--baseline]
        [--json benchmarks/results/compare_fineweb2.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core, as datatrove runs here (set before polars loads)

from benchmarks.fineweb2_reference import STEPS, datatrove_filters, decide  # noqa: E402
from benchmarks.multilingual_corpus import FAMILIES, LANGUAGES, language_documents, translated_documents  # noqa: E402
from engine.batch import make_batch  # noqa: E402
from engine.pipeline import process_batch  # noqa: E402
from engine.provenance import git_state, machine  # noqa: E402
from engine.steps.base import Step, build_step  # noqa: E402
from engine.steps.languages import fineweb2_config  # noqa: E402
from engine.steps.presets import expand_preset  # noqa: E402

BASELINE_LANGUAGES = (
    "cmn_Hani,jpn_Jpan,kor_Hang,tha_Thai,arb_Arab,rus_Cyrl,hin_Deva,swh_Latn,deu_Latn,fra_Latn,vie_Latn,tur_Latn"
)


def our_steps() -> dict[str, Step]:
    """The preset's three filters as `preset: fineweb2` builds them."""
    mappings = {m["type"]: m for m in expand_preset("fineweb2")}
    return {name: build_step(mappings[name], name) for name in STEPS}


def final_touches() -> tuple[list[Step], list[Any]]:
    """The preset's final touches, ours and datatrove's (FineWeb-2's stage 6)."""
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter, SymbolLinesFormatter

    ours = [build_step(m, m["type"]) for m in expand_preset("fineweb2")[5:]]
    theirs = [FTFYFormatter(), PIIFormatter(), SymbolLinesFormatter(symbols_to_remove=["|"], replace_char="\n")]
    return ours, theirs


def datatrove_touch(formatters: list[Any], text: str) -> str:
    """datatrove's final touches on one text, the PII cycle restarted (as ours restarts it per document)."""
    for formatter in formatters:
        for replacer in (getattr(formatter, "emails_replacer", None), getattr(formatter, "ip_replacer", None)):
            if replacer is not None:
                replacer._replace_i = 0
        text = formatter.format(text)
    return text


def family_of(language: str) -> str:
    return next((family for family, members in FAMILIES.items() if language in members), "other")


def compare(languages: list[str], docs_per_language: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    steps = our_steps()
    ours_touch, theirs_touch = final_touches()
    rows, timings = [], {}
    by_family: dict[str, list[tuple[str, str]]] = {}
    for language in languages:
        config = fineweb2_config(language)
        docs = language_documents(language, docs_per_language)
        texts = [d.text for d in docs]
        filters = datatrove_filters(config)
        reference = {name: [decide(filters[name], t) for t in texts] for name in STEPS}
        batch = make_batch({"id": [d.id for d in docs], "text": texts, "language": [language] * len(texts)})
        ours = {name: steps[name](batch) for name in STEPS}
        row: dict[str, Any] = {"language": language, "family": family_of(language), "docs": len(texts)}
        chain_ref = [all(reference[name][i][0] for name in STEPS) for i in range(len(texts))]
        chain_ours = [all(bool(ours[name].keep[i]) for name in STEPS) for i in range(len(texts))]
        for name in STEPS:
            same = sum(a[0] == bool(b) for a, b in zip(reference[name], ours[name].keep, strict=True))
            row[f"{name}_agreement"] = same / len(texts)
        row["chain_agreement"] = sum(a == b for a, b in zip(chain_ref, chain_ours, strict=True)) / len(texts)
        row["datatrove_kept"] = sum(chain_ref) / len(texts)
        row["ours_kept"] = sum(chain_ours) / len(texts)
        row["disagreements"] = [
            {"id": d.id, "kind": d.kind, "datatrove": chain_reason(reference, i), "ours": our_reason(ours, i)}
            for i, d in enumerate(docs)
            if chain_ref[i] != chain_ours[i]
        ][:5]
        touched = batch
        for step in ours_touch:
            touched, _ = step.apply(touched)
        expected = [datatrove_touch(theirs_touch, t) for t in texts]
        row["final_touches_same_text"] = sum(
            a == b for a, b in zip(expected, touched["text"].to_pylist(), strict=True)
        ) / len(texts)
        rows.append(row)
        by_family.setdefault(row["family"], []).extend((language, t) for t in texts)
        print(
            f"{language:9s} {row['family']:22s} docs {len(texts):4d}  kept datatrove {row['datatrove_kept']:6.1%} "
            f"ours {row['ours_kept']:6.1%}  agreement rep {row['gopher_repetition_agreement']:6.1%} "
            f"fwq {row['fineweb_quality_agreement']:6.1%} gq {row['gopher_quality_agreement']:6.1%} "
            f"chain {row['chain_agreement']:6.1%}  touches {row['final_touches_same_text']:6.1%}",
            flush=True,
        )
    for family, items in by_family.items():
        timings[family] = time_family(family, items, steps)
    return rows, list(timings.values())


def chain_reason(reference: dict[str, list[tuple[bool, str | None]]], i: int) -> str | None:
    for name in STEPS:
        keep, reason = reference[name][i]
        if not keep:
            return f"{name}/{reason}"
    return None


def our_reason(ours: dict[str, Any], i: int) -> str | None:
    for name in STEPS:
        if not ours[name].keep[i]:
            return f"{name}/{ours[name].reason[i]}"
    return None


# datatrove's GopherRepetitionFilter rules that drop a document before its words are split (its three filters
# share one split per document, datatrove.utils.text.split_into_parts' cache): such documents are never segmented.
LINE_RULES = {"empty", "dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"}


def time_family(family: str, items: list[tuple[str, str]], steps: dict[str, Step]) -> dict[str, Any]:
    """docs/s on one core of the filter chain, datatrove one document at a time, ours one batch per 2048 rows.

    Wall and CPU seconds (`time.process_time`, every thread of the process: robust when others load the machine);
    our remembered spaCy words are forgotten first (cold, as a new worker starts). The word splitters alone give
    the ceiling: datatrove's time over the splitters' time on every document (what we split), and on the
    documents datatrove splits (those its line rules keep), which is the most skipping them could give.
    """
    from engine.steps.spacy_tokenizer import forget_words

    filters = {
        language: datatrove_filters(fineweb2_config(language)) for language in dict.fromkeys(lang for lang, _ in items)
    }
    # Different texts than the agreement pass (a trailing space), so datatrove's word cache cannot help.
    texts = [(language, text + " ") for language, text in items]
    segmented = []
    wall, cpu = time.perf_counter(), time.process_time()
    for language, text in texts:
        reached = True
        for name in STEPS:
            keep, reason = decide(filters[language][name], text)
            if not keep:
                reached = not (name == "gopher_repetition" and reason in LINE_RULES)
                break
        segmented.append(reached)
    datatrove_seconds, datatrove_cpu = time.perf_counter() - wall, time.process_time() - cpu
    chain = [steps[name] for name in STEPS]
    forget_words()
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), 2048):
        part = texts[start : start + 2048]
        batch = make_batch({"text": [t for _, t in part], "language": [lang for lang, _ in part]})
        process_batch(batch, chain)
    ours_seconds, ours_cpu = time.perf_counter() - wall, time.process_time() - cpu
    forget_words()
    segmenter_cpu = time_segmenters(texts)
    forget_words()
    segmented_cpu = time_segmenters([t for t, reached in zip(texts, segmented, strict=True) if reached])
    result = {
        "family": family,
        "docs": len(texts),
        "mb": sum(len(t.encode()) for _, t in texts) / 1e6,
        "datatrove_docs_per_s": len(texts) / datatrove_seconds,
        "ours_docs_per_s": len(texts) / ours_seconds,
        "speedup": datatrove_seconds / ours_seconds,
        "datatrove_docs_per_cpu_s": len(texts) / datatrove_cpu,
        "ours_docs_per_cpu_s": len(texts) / ours_cpu,
        "speedup_cpu": datatrove_cpu / ours_cpu,
        "ours_seconds": ours_seconds,
        "datatrove_seconds": datatrove_seconds,
        "ours_cpu_s": ours_cpu,
        "datatrove_cpu_s": datatrove_cpu,
        # The word splitters alone (the libraries, as `per_language` calls them), CPU seconds per language.
        "segmenter_cpu_s": segmenter_cpu,
        "segmenter_share_of_ours": sum(segmenter_cpu.values()) / ours_cpu,
        "datatrove_segmented_share": sum(segmented) / len(texts),
        "ceiling_speedup": datatrove_cpu / max(sum(segmenter_cpu.values()), 1e-9),
        "ceiling_speedup_if_skipping": datatrove_cpu / max(sum(segmented_cpu.values()), 1e-9),
    }
    print(
        f"speed {family:22s} {len(texts):5d} docs: datatrove {result['datatrove_docs_per_cpu_s']:8.0f} docs/CPU-s, "
        f"ours {result['ours_docs_per_cpu_s']:8.0f} docs/CPU-s, x{result['speedup_cpu']:.1f} (wall x"
        f"{result['speedup']:.1f}); word splitters alone {sum(segmenter_cpu.values()):.1f} CPU-s of ours "
        f"{ours_cpu:.1f}: ceiling x{result['ceiling_speedup']:.1f}, x{result['ceiling_speedup_if_skipping']:.1f} "
        f"splitting only the {result['datatrove_segmented_share']:.0%} datatrove splits",
        flush=True,
    )
    return result


def time_segmenters(texts: list[tuple[str, str]]) -> dict[str, float]:
    """CPU seconds of each language's word splitter alone over its documents (what `per_language` calls)."""
    import polars as pl

    from engine.steps.segmentation import backend_words, row_segmenters

    seconds: dict[str, float] = {}
    for language in dict.fromkeys(lang for lang, _ in texts):
        ((backend, detail),) = set(row_segmenters([language]))
        own = pl.Series([t for lang, t in texts if lang == language])
        started = time.process_time()
        backend_words(own, backend, detail)
        seconds[f"{language}:{backend}"] = time.process_time() - started
    return seconds


def baseline(languages: list[str]) -> list[dict[str, Any]]:
    """Share kept by the engine's steps before FineWeb-2 (any language, English settings), translated text."""
    mappings = [
        {"type": "language_id", "min_score": 0.65},
        {"type": "gopher_repetition"},
        {"type": "gopher_quality"},
        {"type": "c4_quality", "filter_no_terminal_punct": False},
        {"type": "fineweb_quality"},
    ]
    chain = [build_step(m, m["type"]) for m in mappings]
    fineweb2 = [build_step(m, m["type"]) for m in expand_preset("fineweb2")[1:5]]
    rows = []
    for language in languages:
        texts = translated_documents(language)
        if not texts:
            continue
        batch = make_batch({"text": texts})
        before = process_batch(batch, chain)
        pinned = make_batch({"text": texts, "language": [language] * len(texts), "language_score": [1.0] * len(texts)})
        after = process_batch(pinned, fineweb2)
        row = {
            "language": language,
            "translated_docs": len(texts),
            "kept_before": before.kept.num_rows / len(texts),
            "top_reasons_before": before.stats.dropped.most_common(3),
            "kept_fineweb2": after.kept.num_rows / len(texts),
        }
        rows.append(row)
        reasons = ", ".join(f"{reason} {count}" for reason, count in row["top_reasons_before"])
        print(
            f"baseline {language:9s} {len(texts):3d} translated docs: kept before {row['kept_before']:6.1%} "
            f"({reasons}); with fineweb2 {row['kept_fineweb2']:6.1%}",
            flush=True,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--docs", type=int, default=300, help="documents per language")
    parser.add_argument("--baseline", action="store_true", help="also measure the pre-FineWeb-2 steps")
    parser.add_argument("--json", default=None, help="append the results as JSON lines to this file")
    args = parser.parse_args()
    state = git_state()  # the code that runs is the code checked out now, not when the results are written
    languages = args.languages.split(",")
    rows, timings = compare(languages, args.docs)
    base = baseline([lang for lang in BASELINE_LANGUAGES.split(",") if lang in languages]) if args.baseline else []
    if args.json:
        provenance = {"git": state, "machine": machine(), "docs_per_language": args.docs}
        with open(args.json, "a", encoding="utf-8") as handle:
            for kind, items in (("agreement", rows), ("speed", timings), ("baseline", base)):
                for item in items:
                    record = {"benchmark": "compare_fineweb2", "kind": kind, **provenance, **item}
                    handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
