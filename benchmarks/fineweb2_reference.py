"""datatrove 0.10.1's FineWeb-2 filters, built exactly as huggingface/fineweb-2's `fineweb-2-pipeline.py` builds them.

Stage 5 of that pipeline, per language: GopherRepetitionFilter (paragraph and line-character rules off, the
language's `dup_line_frac`, `top_n_grams`, `dup_n_grams`), FineWebQualityFilter (`short_line_thr=999`,
`char_duplicates_ratio=0.1`, the language's `line_punct_thr` and `new_line_ratio`), GopherQualityFilter (the
language's word lengths, stop words and alphabetic-word ratio, `min_stop_words=2`); no C4 filters. Stage 3 keeps
`language_score >= language_score`. Settings come from the same configs the engine ships.

Needs the benchmark venv (datatrove[processing]==0.10.1 plus the word tokenizers).
"""

from __future__ import annotations

from typing import Any

from engine.steps.languages import LanguageConfig

STEPS = ("gopher_repetition", "fineweb_quality", "gopher_quality")


def datatrove_filters(config: LanguageConfig, language: Any = None) -> dict[str, Any]:
    """The three FineWeb-2 filters for one language; `language` (a name or a WordTokenizer) splits the words."""
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    language = config.name if language is None else language
    return {
        "gopher_repetition": GopherRepetitionFilter(
            language=language,
            dup_para_frac=0,
            dup_line_char_frac=0,
            dup_para_char_frac=0,
            dup_line_frac=config.dup_line_frac,
            top_n_grams=config.top_n_grams,
            dup_n_grams=config.dup_n_grams,
        ),
        "fineweb_quality": FineWebQualityFilter(
            language=language,
            short_line_thr=999,
            char_duplicates_ratio=0.1,
            line_punct_thr=config.line_punct_thr,
            new_line_ratio=config.new_line_ratio,
        ),
        "gopher_quality": GopherQualityFilter(
            language=language,
            max_avg_word_length=config.max_avg_word_length,
            min_avg_word_length=config.min_avg_word_length,
            stop_words=list(config.stopwords),
            max_non_alpha_words_ratio=config.max_non_alpha_words_ratio,
            min_stop_words=2,
        ),
    }


def decide(filter_: Any, text: str, doc_id: str = "x") -> tuple[bool, str | None]:
    """One datatrove filter's (keep, reason) for one text; a crash is recorded as a reason, not raised."""
    from datatrove.data import Document

    try:
        result = filter_.filter(Document(text=text, id=doc_id))
    except Exception as error:  # datatrove divides by zero on some inputs (no words, no lines)
        return False, f"error:{type(error).__name__}"
    if isinstance(result, tuple):
        return bool(result[0]), (result[1] or None) if not result[0] else None
    return bool(result), None


def chain(filters: dict[str, Any], text: str) -> tuple[bool, str | None]:
    """The three filters in FineWeb-2's order: the first that drops gives `step/reason`."""
    for name in STEPS:
        keep, reason = decide(filters[name], text)
        if not keep:
            return False, f"{name}/{reason}"
    return True, None
