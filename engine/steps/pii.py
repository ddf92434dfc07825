"""E-mail and IP address anonymisation (`type: pii`), as FineWeb and FineWeb-2 did it (datatrove's PIIFormatter).

Both recipes end with datatrove 0.10.1's `PIIFormatter()` at its defaults: every e-mail address matched by its
regular expression becomes `email@example.com` or `firstname.lastname@example.org` (example.com/org are reserved
for examples), and every *public* IPv4 address (Python's `ipaddress` says `is_global`) becomes one of six
addresses that did not answer pings when datatrove chose them. Private, loopback, link-local and reserved
addresses (`192.168.1.1`, `127.0.0.1`, `10.0.0.1`) are left alone.

What the rules match, as in the reference (the tests pin each case):
- an IPv4 address is four dot-separated numbers 0-255, found anywhere, even inside a longer dotted number:
  `1.2.3` (a three-part version) is untouched, `10.2.3.4` is private and kept, but a four-part version such as
  `2.4.10.1` *is* a public address and is replaced, and so are the first four parts of `8.8.8.8.8`;
- IPv6 addresses are not matched by the reference (`remove_ipv6: true` adds them: any address `ipaddress` parses
  and calls global); an IPv4 address written inside one (`::ffff:8.8.8.8`) is still replaced;
- e-mail addresses inside URLs are replaced too: `mailto:jane@mail.com`, and the `password@host.com` of
  `https://user:password@host.com/` (the regex cannot tell a userinfo part from an address).

One difference, on purpose: datatrove cycles through the replacements over the whole stream of documents, so a
document's replacement depends on the documents processed before it; here the cycle starts again in every
document (its first address gets the first replacement), so the output does not depend on batch order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field

from engine.batch import Verdict, text_column
from engine.schema import TEXT
from engine.steps import text as tx
from engine.steps.base import Measures, Transform, register

# datatrove 0.10.1 PIIFormatter's e-mail and IPv4 expressions (Apache-2.0), unchanged.
EMAIL_PATTERN = re.compile(
    r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[A-Za-z0-9](?:["
    r"A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?|\[(?:(?:25[0-5]|2[0-4][0-9]|["
    r"01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)])"
)
IPV4_PATTERN = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)")
# Candidate IPv6 addresses (hex groups and colons, optionally ending in an IPv4); `ipaddress` decides.
IPV6_PATTERN = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})?"
    r"(?![0-9A-Za-z:.])"
)
EMAIL_REPLACEMENTS = ("email@example.com", "firstname.lastname@example.org")
IP_REPLACEMENTS = (
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
)
IPV6_REPLACEMENTS = ("2001:db8::1",)  # the documentation prefix (RFC 3849)

_CHANGES_TEXT = "changes the text every later step measured"

# Cheap column-wide tests: only documents that pass them are scanned with the exact expressions.
_MAYBE_EMAIL = "@"
_MAYBE_IPV4 = r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"
_MAYBE_IPV6 = r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"


def _is_address(text: str, *, public_only: bool) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not public_only or address.is_global


def _replacer(
    pattern: re.Pattern[str], replacements: tuple[str, ...], valid: Callable[[str], bool] | None
) -> Callable[[str], tuple[str, int]]:
    """A function giving (text with matches replaced, cycling from the first replacement; replacements made)."""

    def replace(text: str) -> tuple[str, int]:
        count = 0

        def one(match: re.Match[str]) -> str:
            nonlocal count
            if valid is not None and not valid(match.group(0)):
                return match.group(0)
            value = replacements[count % len(replacements)]
            count += 1
            return value

        return pattern.sub(one, text), count

    return replace


@register
class Pii(Transform):
    """Replace e-mail addresses and public IP addresses (datatrove `PIIFormatter`, FineWeb and FineWeb-2).

    Replacements are used in turn within each document (see the module docstring for the one difference with
    datatrove and for what the expressions match). Never drops a document.

    Scores: ``emails`` and ``ips`` replaced per document.
    """

    type: Literal["pii"] = "pii"
    version: ClassVar[int] = 1
    remove_emails: bool = True
    remove_ips: bool = True
    only_remove_public_ips: bool = Field(True, description="Leave private, loopback and reserved addresses alone.")
    remove_ipv6: bool = Field(False, description="Also replace IPv6 addresses (the reference matches IPv4 only).")
    email_replacement: tuple[str, ...] = Field(EMAIL_REPLACEMENTS, min_length=1)
    ip_replacement: tuple[str, ...] = Field(IP_REPLACEMENTS, min_length=1)
    ipv6_replacement: tuple[str, ...] = Field(IPV6_REPLACEMENTS, min_length=1)
    parameters = {
        "remove_emails": Measures(_CHANGES_TEXT),
        "remove_ips": Measures(_CHANGES_TEXT),
        "only_remove_public_ips": Measures(_CHANGES_TEXT),
        "remove_ipv6": Measures(_CHANGES_TEXT),
        "email_replacement": Measures(_CHANGES_TEXT),
        "ip_replacement": Measures(_CHANGES_TEXT),
        "ipv6_replacement": Measures(_CHANGES_TEXT),
    }

    def __call__(self, batch: pa.Table) -> tuple[pa.Table, Verdict]:
        texts = tx._texts(batch)
        n = len(texts)
        emails = np.zeros(n, dtype=np.float64)
        ips = np.zeros(n, dtype=np.float64)
        checks: list[tuple[str, Callable[[str], tuple[str, int]], np.ndarray]] = []
        if self.remove_emails:
            checks.append((_MAYBE_EMAIL, _replacer(EMAIL_PATTERN, self.email_replacement, None), emails))
        public = self.only_remove_public_ips
        if self.remove_ips:
            valid = lambda ip: _is_address(ip, public_only=public)  # noqa: E731
            checks.append((_MAYBE_IPV4, _replacer(IPV4_PATTERN, self.ip_replacement, valid), ips))
        if self.remove_ipv6:
            valid6 = lambda ip: ":" in ip and _is_address(ip, public_only=public)  # noqa: E731
            checks.append((_MAYBE_IPV6, _replacer(IPV6_PATTERN, self.ipv6_replacement, valid6), ips))
        maybe = [tx.to_numpy(texts.str.contains(probe, literal=probe == "@"), bool) for probe, _, _ in checks]
        rows = np.flatnonzero(np.logical_or.reduce(maybe)) if maybe else np.zeros(0, dtype=np.int64)
        if len(rows) == 0:
            return batch, Verdict.keep_all(n, scores={"emails": emails, "ips": ips})
        values = texts.gather(rows).to_list()
        for (_, replace, counter), candidates in zip(checks, maybe, strict=True):
            for k, row in enumerate(rows.tolist()):
                if candidates[row]:
                    values[k], made = replace(values[k])
                    counter[row] += made
        column = text_column(batch)
        changed = pl.Series(column).scatter(rows, pl.Series(values, dtype=pl.String))
        new_text = pa.array(changed.to_arrow(), type=pa.large_string())
        out = batch.set_column(batch.schema.get_field_index(TEXT), TEXT, new_text)
        return out, Verdict.keep_all(n, scores={"emails": emails, "ips": ips})
