"""Regenerate engine/data/fineweb2/ from FineWeb-2's published configs and datatrove 0.10.1's tokenizer table.

Inputs (nothing downloaded):
- ../shared/corpora/fineweb2-filter-configs/configs/*.yml: FineWeb-2's per-language thresholds and stop words
  (huggingface/fineweb-2 at d0defb24, Apache-2.0), one file per language-script (`cmn_Hani.yml`).
- datatrove 0.10.1's `assets/tokenizer_assignment.csv` (Apache-2.0): the word tokenizer datatrove uses for each
  language-script, and which ISO 639-3 language is the default for an ISO 639-1 code.

Outputs:
- configs.json.gz: {config name: {thresholds..., stopwords, tokenizer}}, compact (one gzip'd JSON).
- lid176.tsv: lid.176 label -> FineWeb-2 config name(s), one per script, with how the mapping was chosen.
- spacy_rules.json.gz: for each spaCy language datatrove tokenizes a FineWeb-2 language with, how its rules differ
  from the English ones engine/steps/text.py approximates: dotted abbreviations kept whole, words with an
  apostrophe kept whole, whether hyphens split words and numbers, whether "'s" and elisions ("l'") split.
- spacy_tokenizers.json.gz: the same spaCy languages' tokenizers as data (affix regular expressions, token and URL
  matches, special cases) for engine/steps/spacy_tokenizer.py, which runs spaCy's algorithm on them.

Run with the benchmark venv (it has datatrove):

    /work/venv-bench/bin/python benchmarks/build_fineweb2_data.py
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from pathlib import Path

import yaml

CORPORA = Path(os.environ.get("CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))
CONFIGS = CORPORA / "fineweb2-filter-configs" / "configs"
OUT = Path(__file__).resolve().parents[1] / "engine" / "data" / "fineweb2"

# lid.176 labels whose ISO 639-3 language is not what datatrove's table (or the code itself) gives, with why.
LID176_OVERRIDES = {
    "als": ("gsw", "lid.176 'als' is Alemannic (Wikipedia code), ISO 639-3 gsw; GlotLID's als is Tosk Albanian"),
    "bh": ("bho", "lid.176 'bh' (Bihari, Wikipedia code) is trained on bh.wikipedia, written in Bhojpuri"),
    "ku": ("kmr", "lid.176 has 'ckb' for Sorani; its 'ku' is Kurmanji (ku.wikipedia)"),
    "no": ("nob", "Norwegian: Bokmal (nob); lid.176 has 'nn' for Nynorsk"),
    "tl": ("fil", "Tagalog: FineWeb-2 has fil_Latn (Filipino) and no tgl config"),
}
# lid.176 labels with no FineWeb-2 config, with why.
LID176_UNMAPPED = {
    "en": "FineWeb-2 has no English config: English is FineWeb (preset: fineweb)",
    "sh": "Serbo-Croatian: FineWeb-2 splits it into srp, hrv, bos, cnr; map it yourself with language_map",
}
# Words French-like tokenizers keep their hyphen on ("dit-il" -> "dit", "-il"), tested per language.
HYPHEN_PRONOUNS = (
    "t il ils elle elles on ce ci je tu nous vous moi toi lui leur leurs en y le la les là me te se nous-mêmes"
).split()
# spaCy languages whose tokenizer segments words with another library (not rules): zh jieba, ja Sudachi, vi pyvi.
SPACY_SEGMENTERS = {"SpaCyTokenizer:zh", "SpaCyTokenizer:ja", "SpaCyTokenizer:vi"}
LID176_LABELS = (
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy da "
    "de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy ia id "
    "ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn "
    "mr mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa "
    "sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa "
    "war wuu xal xmf yi yo yue zh"
).split()


def tokenizer_rows() -> list[dict[str, str]]:
    """datatrove 0.10.1's tokenizer_assignment.csv rows."""
    from datatrove.utils._import_utils import ASSETS_PATH

    with open(os.path.join(ASSETS_PATH, "tokenizer_assignment.csv"), encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def build_configs(rows: list[dict[str, str]]) -> dict[str, dict[str, object]]:
    """Every FineWeb-2 config with the datatrove tokenizer of its language-script (`Class:code`)."""
    from datatrove.utils.word_tokenizers import load_tokenizer_assignments

    factories = load_tokenizer_assignments()
    configs: dict[str, dict[str, object]] = {}
    for path in sorted(CONFIGS.glob("*.yml")):
        name = path.stem
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        factory = factories[name]  # every config has one (checked when this table was built)
        class_name, code = factory.args
        config["tokenizer"] = f"{class_name}:{code}" if code else class_name
        configs[name] = config
    return configs


def build_lid176(rows: list[dict[str, str]], names: set[str]) -> list[tuple[str, str, str]]:
    """(lid.176 label, config names by script or "", how) for every lid.176 label."""
    default_script = {(r["code_3"], r["script"]) for r in rows if r["default_script"] == "TRUE"}
    table = []
    for label in LID176_LABELS:
        if label in LID176_UNMAPPED:
            table.append((label, "", LID176_UNMAPPED[label]))
            continue
        if label in LID176_OVERRIDES:
            code3, how = LID176_OVERRIDES[label]
        elif len(label) == 2:
            defaults = sorted({r["code_3"] for r in rows if r["code_1"] == label and r["default_code_1"] == "TRUE"})
            code3, how = defaults[0], "ISO 639-1 default language in datatrove's tokenizer table"
        else:
            code3, how = label, "same ISO 639-3 code"
        candidates = sorted(n for n in names if n.split("_")[0] == code3)
        # The default script first: it is used when the text's script does not pick another.
        candidates.sort(key=lambda n: (code3, n.split("_")[1]) not in default_script)
        if not candidates:
            msg = f"lid.176 label {label!r} -> {code3!r} has no FineWeb-2 config; add it to LID176_UNMAPPED"
            raise SystemExit(msg)
        table.append((label, ",".join(candidates), how))
    return table


def spacy_profile(code: str) -> dict[str, object]:
    """What a blank spaCy pipeline of `code` does where languages differ (spaCy's data, MIT licence)."""
    import spacy

    nlp = spacy.blank(code)

    def tokens(text: str) -> list[str]:
        return [t.text for t in nlp(text) if t.text.strip()]

    rules = getattr(nlp.tokenizer, "rules", None) or {}
    whole = [k for k in rules if " " not in k and len(rules[k]) == 1]  # exceptions that stay one token
    abbreviations = sorted(k for k in whole if k.endswith(".") and any(c.isalpha() for c in k))
    apostrophes = sorted(k for k in whole if ("'" in k or "’" in k) and k[0].isalpha())
    # Words with a hyphen kept whole (Indonesian and Malay reduplication, "orang-orang"), when hyphens split.
    hyphenated: list[str] = []
    if len(tokens("abc-def")) == 3:
        hyphenated = sorted(k for k in whole if "-" in k and sum(c.isalpha() for c in k) > 2)
    # Exceptions that split a word into given pieces (Persian "مادرم" -> "مادر", "م").
    pieces = {
        k: [t.text for t in nlp(k)]
        for k in rules
        if " " not in k and len(rules[k]) > 1 and sum(c.isalpha() for c in k) > 1 and not k.endswith(".")
    }
    return {
        "abbreviations": abbreviations,
        "apostrophe_words": apostrophes,
        "hyphen_words": hyphenated,
        "split_words": {k: v for k, v in sorted(pieces.items()) if len(v) > 1},
        "split_letter_hyphen": len(tokens("abc-def")) == 3,
        "split_digit_hyphen": len(tokens("2020-2021")) == 3,
        "split_possessive": tokens("abcd's") == ["abcd", "'s"],
        "split_elision": tokens("l'homme") == ["l'", "homme"],
        "number_dot": tokens("xyz 11.") == ["xyz", "11."],
        "number_percent": tokens("xyz 60%") == ["xyz", "60%"],
        "hyphen_pronouns": [p for p in HYPHEN_PRONOUNS if tokens(f"dit-{p}") == ["dit", f"-{p}"]],
    }


def spacy_tokenizer(code: str) -> dict[str, object]:
    """A blank spaCy pipeline's tokenizer as data (spaCy's, MIT licence): its prefix, suffix and infix regular
    expressions, token and URL matches (pattern and flags, for Python's `re`, as spaCy compiles them) and its
    special cases (word -> pieces), so engine/steps/spacy_tokenizer.py runs spaCy's algorithm on them."""
    import spacy

    tokenizer = spacy.blank(code).tokenizer

    def regex(method: object) -> list[object] | None:
        compiled = getattr(method, "__self__", None)
        return None if compiled is None else [compiled.pattern, compiled.flags]

    return {
        "prefix": regex(tokenizer.prefix_search),
        "suffix": regex(tokenizer.suffix_search),
        "infix": regex(tokenizer.infix_finditer),
        "token_match": regex(tokenizer.token_match),
        "url_match": regex(tokenizer.url_match),
        "faster_heuristics": bool(tokenizer.faster_heuristics),
        "rules": {orth: [piece[65] for piece in pieces] for orth, pieces in sorted(tokenizer.rules.items())},
    }


def main() -> None:
    rows = tokenizer_rows()
    configs = build_configs(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(configs, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    (OUT / "configs.json.gz").write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    lines = ["lid176\tconfigs\thow"] + ["\t".join(row) for row in build_lid176(rows, set(configs))]
    (OUT / "lid176.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    codes = {"xx"} | {
        str(c["tokenizer"]).split(":")[1]
        for c in configs.values()
        if str(c["tokenizer"]).startswith("SpaCyTokenizer:") and str(c["tokenizer"]) not in SPACY_SEGMENTERS
    }
    profiles = {code: spacy_profile(code) for code in sorted(codes - {"en"})}  # English: engine/steps/text.py
    payload = json.dumps(profiles, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    (OUT / "spacy_rules.json.gz").write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    tokenizers = {code: spacy_tokenizer(code) for code in sorted(codes)}
    payload = json.dumps(tokenizers, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    (OUT / "spacy_tokenizers.json.gz").write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    print(f"{len(configs)} configs, {len(lines) - 1} lid.176 labels -> {OUT}")


if __name__ == "__main__":
    main()
