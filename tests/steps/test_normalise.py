"""normalise: mojibake repair and NFC, never drops, keeps nulls, shared properties."""

from __future__ import annotations

import unicodedata

from engine.batch import make_batch
from engine.steps.normalise import Normalise
from tests.steps.property_checks import check_step_properties


def test_repairs_mojibake_and_composes() -> None:
    decomposed = unicodedata.normalize("NFD", "café")
    batch = make_batch({"text": ["cafÃ© au lait", decomposed, "plain ascii", None, "&amp; “quotes”"]})
    out, verdict = Normalise()(batch)
    assert out["text"].to_pylist() == ["café au lait", "café", "plain ascii", None, "&amp; “quotes”"]
    assert verdict.keep.all()
    assert list(verdict.scores["changed"]) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_form_only() -> None:
    out, _ = Normalise(fix_text=False, form="NFKC")(make_batch({"text": ["ﬁle Ｆｕｌｌ", "cafÃ©"]}))
    assert out["text"].to_pylist() == ["file Full", "cafÃ©"]


def test_normalise_properties() -> None:
    check_step_properties(Normalise())
