"""What a regular expression can match over a restricted alphabet, answered from its parse tree, not by running it.

The spaCy tokenizer (`engine.steps.spacy_tokenizer`) runs three large regular expressions (prefix, suffix, infix)
on every new whitespace-free chunk; most chunks are plain words, on which none of them matches. Proving that once
per language ("no suffix or infix can match inside a string of letters") lets a plain word skip them, with the
same tokens. The proof is a static over-approximation: it may answer "can match" where no string could (the fast
path is then not taken), never the other way round.

An alphabet is the letters (what `str.isalpha` accepts) plus a few extra characters. Lookarounds are honoured
where they need characters outside the alphabet (a suffix `(?<=[0-9])km` cannot match where there is no digit);
negative lookarounds, anchors and back-references are assumed to hold; case-insensitive parts may match anything.
"""

from __future__ import annotations

import bisect
import importlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_PARSER: Any = importlib.import_module("re._parser")  # sre's parser; `sre_parse` is its deprecated alias
_IGNORECASE = int(re.IGNORECASE)

# How the letters relate to each category: True = every letter is in it, False = none is.
_LETTERS_IN_CATEGORY = {
    "CATEGORY_DIGIT": False,
    "CATEGORY_NOT_DIGIT": True,
    "CATEGORY_WORD": True,
    "CATEGORY_NOT_WORD": False,
    "CATEGORY_SPACE": False,
    "CATEGORY_NOT_SPACE": True,
}
_CATEGORY_REGEX = {
    "CATEGORY_DIGIT": re.compile(r"\d"),
    "CATEGORY_NOT_DIGIT": re.compile(r"\D"),
    "CATEGORY_WORD": re.compile(r"\w"),
    "CATEGORY_NOT_WORD": re.compile(r"\W"),
    "CATEGORY_SPACE": re.compile(r"\s"),
    "CATEGORY_NOT_SPACE": re.compile(r"\S"),
}
_MOST_LETTERS_LISTED = 4096  # a class with more letters than this counts as "any letter" for `first_letters`

Node = tuple[str, Any]


@lru_cache(maxsize=1)
def _letters() -> list[int]:
    """Every code point `str.isalpha` accepts, sorted."""
    return [point for point in range(0x110000) if chr(point).isalpha()]


@dataclass
class CharClass:
    """One character class (sre `IN` items), with what the analysis asks of it worked out once."""

    items: list[tuple[str, Any]]
    negate: bool
    meets_letters: bool = False
    letters: frozenset[int] | None = None  # None: too many to list, or not known
    _has: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.meets_letters, self.letters = self._letter_facts()

    def _letter_facts(self) -> tuple[bool, frozenset[int] | None]:
        letters = _letters()
        spans: list[tuple[int, int]] = []
        for name, value in self.items:
            if name == "LITERAL":
                spans.append((value, value))
            elif name == "RANGE":
                spans.append(value)
            elif name == "CATEGORY":
                every = _LETTERS_IN_CATEGORY.get(value)
                if every is None or every:  # not modelled, or every letter: (not) every letter may match
                    return (True, None) if every is None or not self.negate else (False, frozenset())
            else:
                return True, None
        covered, end, found = 0, -1, set()
        for low, high in sorted(spans):
            low = max(low, end + 1)
            if high >= low:
                first, last = bisect.bisect_left(letters, low), bisect.bisect_right(letters, high)
                covered += last - first
                if covered <= _MOST_LETTERS_LISTED:
                    found.update(letters[first:last])
                end = high
        if self.negate:
            return covered < len(letters), None if covered < len(letters) else frozenset()
        return covered > 0, frozenset(found) if covered <= _MOST_LETTERS_LISTED else None

    def has(self, char: str) -> bool:
        """Whether the class matches `char`, as `re` decides it."""
        known = self._has.get(char)
        if known is None:
            point, inside, unknown = ord(char), False, False
            for name, value in self.items:
                if name == "LITERAL" and value == point or name == "RANGE" and value[0] <= point <= value[1]:
                    inside = True
                elif name == "CATEGORY":
                    regex = _CATEGORY_REGEX.get(value)
                    unknown = unknown or regex is None
                    inside = inside or (regex is not None and regex.fullmatch(char) is not None)
            known = unknown or inside != self.negate
            self._has[char] = known
        return known


def parse(pattern: re.Pattern[str]) -> list[Node] | None:
    """A compiled pattern's sre parse tree in the analysis's terms; None if the pattern is case-insensitive."""
    tree = _PARSER.parse(pattern.pattern, pattern.flags)
    if (pattern.flags | tree.state.flags) & _IGNORECASE:
        return None
    return _simplify(tree)


def _simplify(tree: Any) -> list[Node]:
    out: list[Node] = []
    for op, value in tree:
        name = op.name
        if name == "LITERAL":
            out.append(("LITERAL", value))
        elif name == "IN":
            items = [(item.name, v.name if item.name == "CATEGORY" else v) for item, v in value]
            negate = any(n == "NEGATE" for n, _ in items)
            out.append(("IN", CharClass([(n, v) for n, v in items if n != "NEGATE"], negate)))
        elif name in ("NOT_LITERAL", "ANY"):
            out.append(("ANY", None))
        elif name == "BRANCH":
            out.append(("BRANCH", [_simplify(alternative) for alternative in value[1]]))
        elif name == "SUBPATTERN":
            _group, add, remove, inner = value
            out.append(("ANY_WIDTH", None) if add & _IGNORECASE else ("GROUP", _simplify(inner)))
        elif name == "ATOMIC_GROUP":
            out.append(("GROUP", _simplify(value)))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, inner = value
            out.append(("REPEAT", (low, high, _simplify(inner))))
        elif name == "ASSERT":
            out.append(("ASSERT", _simplify(value[1])))
        elif name in ("AT", "ASSERT_NOT"):
            out.append(("ZERO", None))
        else:
            out.append(("ANY_WIDTH", None))  # back-references and anything not modelled: assume it can match
    return out


class Alphabet:
    """The letters plus `extra` characters (letters among them are ignored: they are in already)."""

    def __init__(self, extra: str = "") -> None:
        self.extra = [char for char in dict.fromkeys(extra) if not char.isalpha()]

    def meets(self, char_class: CharClass) -> bool:
        return char_class.meets_letters or any(char_class.has(char) for char in self.extra)

    def has(self, point: int) -> bool:
        char = chr(point)
        return char.isalpha() or char in self.extra


def widths(tree: list[Node], alphabet: Alphabet) -> tuple[bool, bool]:
    """(can match the empty string, can match a non-empty one) somewhere in a string over `alphabet`;
    (False, False): cannot match at all."""
    empty, nonempty = True, False
    for name, value in tree:
        item_empty, item_nonempty = _item(name, value, alphabet)
        if not (item_empty or item_nonempty):
            return False, False
        empty, nonempty = empty and item_empty, (empty and item_nonempty) or nonempty
    return empty, nonempty


def _item(name: str, value: Any, alphabet: Alphabet) -> tuple[bool, bool]:
    if name == "LITERAL":
        return False, alphabet.has(value)
    if name == "IN":
        return False, alphabet.meets(value)
    if name == "ANY":
        return False, True
    if name == "BRANCH":
        found = [widths(alternative, alphabet) for alternative in value]
        return any(e for e, _ in found), any(n for _, n in found)
    if name == "GROUP":
        return widths(value, alphabet)
    if name == "REPEAT":
        low, high, inner = value
        inner_empty, inner_nonempty = widths(inner, alphabet)
        if high == 0:
            return True, False
        return (True, inner_nonempty) if low == 0 else (inner_empty, inner_nonempty)
    if name == "ASSERT":
        return any(widths(value, alphabet)), False
    if name == "ZERO":
        return True, False
    return True, True


def first_letters(tree: list[Node], alphabet: Alphabet | None = None) -> frozenset[str] | None:
    """The letters a non-empty match can consume first, in a string over `alphabet` (None: any string); None
    when any letter may be (or the tree says too little to tell)."""
    found = _first(tree, alphabet)[1]
    return None if found is None else frozenset(map(chr, found))


def _first(tree: list[Node], alphabet: Alphabet | None) -> tuple[bool, set[int] | None]:
    """(can consume nothing, letters consumed first) for a sequence; only matches possible over `alphabet`."""
    if alphabet is not None and widths(tree, alphabet) == (False, False):
        return False, set()
    found: set[int] | None = set()
    for name, value in tree:
        nullable, letters = _first_item(name, value, alphabet)
        found = None if found is None or letters is None else found | letters
        if not nullable:
            return False, found
    return True, found


def _first_item(name: str, value: Any, alphabet: Alphabet | None) -> tuple[bool, set[int] | None]:
    if name == "LITERAL":
        return False, {value} if chr(value).isalpha() else set()
    if name == "IN":
        return False, None if value.letters is None else set(value.letters)
    if name == "BRANCH":
        nullable = False
        letters_of_branch: set[int] | None = set()
        for alternative in value:
            more_nullable, more = _first(alternative, alphabet)
            nullable = nullable or more_nullable
            letters_of_branch = None if letters_of_branch is None or more is None else letters_of_branch | more
        return nullable, letters_of_branch
    if name == "GROUP":
        return _first(value, alphabet)
    if name == "REPEAT":
        low, high, inner = value
        if high == 0:
            return True, set()
        inner_nullable, inner_letters = _first(inner, alphabet)
        return low == 0 or inner_nullable, inner_letters
    if name in ("ASSERT", "ZERO"):
        return True, set()
    return (False, None) if name == "ANY" else (True, None)
