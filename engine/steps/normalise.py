"""Optional unicode repair and normalisation of `text` (not part of the FineWeb recipe; off unless listed)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from engine.batch import Verdict
from engine.schema import TEXT
from engine.steps import text as tx
from engine.steps.base import Measures, Transform, register


def _ftfy() -> object:
    try:
        import ftfy
    except ImportError as error:
        msg = "normalise with fix_text: true needs ftfy: pip install ftfy (or set fix_text: false)"
        raise ImportError(msg) from error
    return ftfy


@register
class Normalise(Transform):
    """Repair mojibake and normalise unicode in `text`; never drops a document.

    `fix_text` runs ftfy's `fix_text` (mojibake such as "cafÃ©" -> "café", HTML entities left alone, curly
    quotes kept, no NFC from ftfy itself) document by document: ftfy has no batch API, so this loops over the
    column. `form` then applies a unicode normalisation form to the whole column at once (polars). Documents
    that are unchanged keep their exact bytes.

    `ftfy: datatrove` uses the settings of datatrove 0.10.1's `FTFYFormatter()`, the one FineWeb-2 ran: HTML
    entities unescaped when the text has no tags ("auto"), terminal escapes and control characters removed,
    ligatures, widths, quotes and line breaks left alone.
    """

    type: Literal["normalise"] = "normalise"
    version: ClassVar[int] = 1
    fix_text: bool = True
    ftfy: Literal["engine", "datatrove"] = "engine"
    form: Literal["NFC", "NFKC", "NFD", "NFKD", "none"] = "NFC"
    parameters = {
        "fix_text": Measures("changes the text every later step measured"),
        "ftfy": Measures("changes the text every later step measured"),
        "form": Measures("changes the text every later step measured"),
    }

    def check(self) -> None:
        if self.fix_text:
            _ftfy()

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        texts = tx._texts(batch)
        n = len(texts)
        original_null = pl.Series(batch[TEXT]).is_null().to_numpy() if n else np.zeros(0, bool)
        if self.fix_text:
            ftfy = _ftfy()
            # Pure-ASCII documents cannot contain mojibake: skip them without calling ftfy.
            ascii_only = tx.to_numpy(texts.str.len_bytes() == texts.str.len_chars(), bool)
            if self.ftfy == "datatrove":
                config = ftfy.TextFixerConfig(  # type: ignore[attr-defined]
                    unescape_html="auto",
                    fix_latin_ligatures=False,
                    fix_character_width=False,
                    uncurl_quotes=False,
                    fix_line_breaks=False,
                    normalization=None,
                )
                # These settings also change ASCII text, through entities, terminal escapes and control characters.
                ascii_only &= ~tx.to_numpy(texts.str.contains(r"[&\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"), bool)
            else:
                config = ftfy.TextFixerConfig(  # type: ignore[attr-defined]
                    unescape_html=False, fix_character_width=False, uncurl_quotes=False, normalization=None
                )
            values = texts.to_list()
            for i in np.flatnonzero(~ascii_only):
                values[i] = ftfy.fix_text(values[i], config=config)  # type: ignore[attr-defined]
            texts = pl.Series("text", values, dtype=pl.String)
        if self.form != "none":
            texts = texts.str.normalize(self.form)
        changed = texts.ne_missing(tx._texts(batch)).to_numpy()
        column = pa.array(texts.to_list(), type=pa.large_string())
        if original_null.any():
            column = pa.array(
                [None if null else value for null, value in zip(original_null, column.to_pylist(), strict=True)],
                type=pa.large_string(),
            )
        new_batch = batch.set_column(batch.schema.get_field_index(TEXT), TEXT, column)
        return new_batch, Verdict.keep_all(n, scores={"changed": changed.astype(np.float64)})
