"""URL blocklist filter (FineWeb section 3.1, "URL filtering"), as implemented by datatrove 0.10.1's `URLFilter`."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any, ClassVar, Literal

import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
from fsspec.core import url_to_fs
from pydantic import Field

from engine.batch import Verdict
from engine.errors import SpecError
from engine.io.assets import current_version
from engine.schema import URL
from engine.steps import text as tx
from engine.steps.base import Decides, Filter, Measures, register

_DATA = "url"
_LISTS_MEASURED = "changes a list the URLs were matched against (the run stored which rules matched)"


def _normalize(word: str) -> str:
    """datatrove's `normalize`: drop every character outside [a-zA-Z0-9], lowercase."""
    import re

    return re.sub(r"[^a-zA-Z0-9]+", "", word).lower()


def _read_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


_SHIPPED_LISTS = ("banned_words.txt", "banned_subwords.txt", "soft_banned_words.txt")


def _shipped_path(name: str) -> str:
    return str(resources.files("engine") / "data" / _DATA / name)


@lru_cache(maxsize=8)
def _shipped_words(name: str) -> frozenset[str]:
    path = resources.files("engine") / "data" / _DATA / name
    return frozenset(_normalize(w) for w in _read_lines(path.read_text(encoding="utf-8")))


def _file_entries(url: str) -> frozenset[str]:
    """The entries of a blocklist (local path or fsspec URL), read again when the file is replaced."""
    return _entries_of_version(url, current_version(url))


@lru_cache(maxsize=4)
def _entries_of_version(url: str, version: tuple[int, str]) -> frozenset[str]:
    del version  # part of the cache key only
    return frozenset(read_blocklist(url))


def read_blocklist(url: str) -> list[str]:
    """The entries of a `domains_file` / `urls_file` exactly as `url_filter` matches them (`engine.steps.url_keys`)."""
    with fsspec.open(url, "r", encoding="utf-8") as handle:
        return [line.strip() for line in _read_lines(handle.read())]


@lru_cache(maxsize=1 << 16)
def domain_and_host(url: str) -> tuple[str, str]:
    """The registered domain and the full host name of `url`, the two keys a domain blocklist is matched on.

    Cached: a unit recording its documents' keys (`engine.steps.url_keys`) asks for the URLs the filter just did.
    """
    info = _extractor()(url)
    return info.top_domain_under_public_suffix, info.fqdn


@lru_cache(maxsize=1)
def _extractor() -> Any:
    try:
        from tldextract import TLDExtract
    except ImportError as error:
        msg = "url_filter needs tldextract for domain blocklists: pip install tldextract"
        raise ImportError(msg) from error
    # The public-suffix snapshot shipped inside tldextract: no download, no cache directory.
    return TLDExtract(cache_dir=None, suffix_list_urls=())


def hosts(urls: pl.Series) -> pl.Series:
    """The host of every URL exactly as tldextract 5's `lenient_netloc` finds it, column-wise.

    Scheme (`letters+digits+.-` then `://`, or a leading `//`) dropped; the authority ends at the first `/`,
    `?` or `#`; user info ends at the last `@`; a bracketed IPv6 address is kept with its brackets; otherwise
    the host ends at the first `:`, is stripped of whitespace and of trailing dots (ASCII and full-width).
    """
    rest = (
        urls.str.replace(r"^(?://|[A-Za-z0-9+.\-]+://)", "")
        .str.replace(r"(?s)[/?#].*", "")
        .str.replace(r"(?s)^.*@", "")
    )
    bracketed = rest.str.extract(r"^(\[[^\]]*\])", 1)
    plain = rest.str.replace(r"(?s):.*", "").str.strip_chars(tx.PY_SPACE).str.strip_chars_end(".\u3002\uff0e\uff61")
    return pl.select(pl.when(bracketed.is_not_null()).then(bracketed).otherwise(plain)).to_series()


def domains_and_hosts(urls: pl.Series) -> tuple[pl.Series, pl.Series]:
    """`domain_and_host` of every URL, column-wise: the registered domain and the full host name.

    tldextract's answer depends only on the host (`hosts`), so it is asked once per distinct host (a crawl
    has many pages per host), for one URL standing for all of them, and the answers are joined back.
    """
    host = hosts(urls)
    sample = pl.DataFrame({"host": host, "url": urls}).unique(subset="host", keep="first", maintain_order=True)
    answers = [domain_and_host(url) for url in sample["url"].to_list()]
    table = pl.DataFrame(
        {
            "host": sample["host"],
            "registered": pl.Series([a[0] for a in answers], dtype=pl.String),
            "fqdn": pl.Series([a[1] for a in answers], dtype=pl.String),
        }
    )
    joined = pl.DataFrame({"host": host}).join(table, on="host", how="left", maintain_order="left")
    return joined["registered"], joined["fqdn"]


def _domain_hits(urls: pl.Series, has_url: np.ndarray, domains: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per URL: is its registered domain / its full host name in `domains` (tldextract's public-suffix rules)."""
    with_url = pl.Series(has_url)
    registered, fqdn = domains_and_hosts(urls.filter(with_url))
    domain_hit = np.zeros(len(urls), dtype=bool)
    subdomain_hit = np.zeros(len(urls), dtype=bool)
    listed = list(domains)
    domain_hit[has_url] = tx.to_numpy(registered.is_in(listed), bool)
    subdomain_hit[has_url] = tx.to_numpy(fqdn.is_in(listed), bool)
    return domain_hit, subdomain_hit


@register
class URLFilter(Filter):
    """Drop documents whose URL is blocklisted (datatrove `URLFilter`, FineWeb's URL filtering).

    Rules, in datatrove's order: registered domain (public-suffix aware, via tldextract's shipped snapshot) in
    the domain blocklist; full host name in the domain blocklist; exact URL in the URL blocklist; any banned
    word among the URL's alphanumeric runs (case-sensitive runs against lowercased list words, as in datatrove);
    at least `soft_word_threshold` distinct soft-banned words; a banned subword inside the URL stripped of
    non-alphanumerics and lowercased. Documents without a URL (no `url` column, null or empty) pass.
    Default word lists are datatrove 0.10.1's assets (engine/data/url/SOURCE.md). The domain and URL blocklists
    (datatrove uses the UT1 blacklists, 123 MB) are not shipped: give them with `domains_file` / `urls_file`
    (one entry per line, `#` comments) or inline with `extra_domains` / `extra_urls`.

    Drops with: ``blocked_domain``, ``blocked_subdomain``, ``blocked_url``, ``banned_word``,
    ``soft_banned_words``, ``banned_subword``.
    """

    type: Literal["url_filter"] = "url_filter"
    version: ClassVar[int] = 1
    domains_file: str | None = None
    urls_file: str | None = None
    extra_domains: tuple[str, ...] = ()
    extra_urls: tuple[str, ...] = ()
    banned_words: tuple[str, ...] = ()
    banned_subwords: tuple[str, ...] = ()
    soft_banned_words: tuple[str, ...] = ()
    use_integrated_lists: bool = Field(True, description="Add the shipped banned/soft-banned/subword lists.")
    soft_word_threshold: int = Field(2, ge=1)
    parameters = {
        **dict.fromkeys(
            (
                "domains_file",
                "urls_file",
                "extra_domains",
                "extra_urls",
                "banned_words",
                "banned_subwords",
                "soft_banned_words",
                "use_integrated_lists",
            ),
            Measures(_LISTS_MEASURED),
        ),
        "soft_word_threshold": Decides(("soft_banned_words",)),
    }

    def check(self) -> None:
        for field in ("domains_file", "urls_file"):
            path = getattr(self, field)
            if path is None:
                continue
            fs, inner = url_to_fs(path)
            if not fs.isfile(inner):
                msg = f"url_filter.{field}: {path!r} is not a readable file; give a text file with one entry per line"
                raise SpecError(msg)

    def assets(self) -> dict[str, str]:
        files = {f: getattr(self, f) for f in ("domains_file", "urls_file") if getattr(self, f) is not None}
        if self.use_integrated_lists:
            files.update({f"shipped/{name}": _shipped_path(name) for name in _SHIPPED_LISTS})
        return files

    def _lists(self) -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
        domains = set(d.strip() for d in self.extra_domains)
        urls = set(u.strip() for u in self.extra_urls)
        if self.domains_file:
            domains |= _file_entries(self.domains_file)
        if self.urls_file:
            urls |= _file_entries(self.urls_file)
        banned = {_normalize(w) for w in self.banned_words}
        subwords = {_normalize(w) for w in self.banned_subwords}
        soft = {_normalize(w) for w in self.soft_banned_words}
        if self.use_integrated_lists:
            banned |= _shipped_words("banned_words.txt")
            subwords |= _shipped_words("banned_subwords.txt")
            soft |= _shipped_words("soft_banned_words.txt")
        subwords.discard("")
        return frozenset(domains), frozenset(urls), frozenset(banned), frozenset(subwords), frozenset(soft)

    def __call__(self, batch: pa.Table) -> Verdict:
        n = batch.num_rows
        if URL in batch.column_names:
            urls = pl.Series("url", batch[URL]).cast(pl.String).fill_null("")
        else:
            urls = pl.Series("url", [""] * n, dtype=pl.String)
        has_url = tx.to_numpy(urls.str.len_bytes() > 0, bool)
        domains, blocked_urls, banned, subwords, soft = self._lists()
        domain_hit = np.zeros(n, dtype=bool)
        subdomain_hit = np.zeros(n, dtype=bool)
        if domains:
            domain_hit, subdomain_hit = _domain_hits(urls, has_url, domains)
        url_hit = tx.to_numpy(urls.is_in(list(blocked_urls)), bool) if blocked_urls else np.zeros(n, bool)
        runs = tx.flatten(urls.str.extract_all(r"[a-zA-Z0-9]+"))
        banned_hit = np.zeros(n, dtype=bool)
        soft_count = np.zeros(n, dtype=np.float64)
        if len(runs.values):
            if banned:
                is_banned = tx.to_numpy(runs.values.is_in(list(banned)), bool)
                banned_hit = np.bincount(runs.row[is_banned], minlength=n) > 0
            if soft:
                is_soft = tx.to_numpy(runs.values.is_in(list(soft)), bool)
                distinct = (
                    pl.DataFrame({"row": runs.row[is_soft], "word": runs.values.filter(pl.Series(is_soft))})
                    .unique()
                    .get_column("row")
                    .to_numpy()
                )
                soft_count = np.bincount(distinct, minlength=n).astype(np.float64)
        subword_hit = np.zeros(n, dtype=bool)
        if subwords:
            normalised = urls.str.replace_all(r"[^a-zA-Z0-9]+", "").str.to_lowercase()
            subword_hit = tx.to_numpy(normalised.str.contains_any(sorted(subwords)), bool)
        matches = {
            "blocked_domain": domain_hit,
            "blocked_subdomain": subdomain_hit,
            "blocked_url": url_hit,
            "banned_word": banned_hit,
            "banned_subword": subword_hit,
        }
        scores = {name: (hit & has_url).astype(np.float64) for name, hit in matches.items()}
        return self.decide({**scores, "soft_banned_words": soft_count})

    def decide(self, measured: Mapping[str, np.ndarray]) -> Verdict:
        """The rules in datatrove's order from the stored matches (1/0) and the soft-banned word count.

        A document without a URL matches nothing and counts 0 soft-banned words, so it passes.
        """

        def hit(name: str) -> np.ndarray:
            matched: np.ndarray = np.asarray(measured[name], dtype=np.float64) == 1.0
            return matched

        soft_count = np.asarray(measured["soft_banned_words"], dtype=np.float64)
        return Verdict.from_rules(
            blocked_domain=hit("blocked_domain"),
            blocked_subdomain=hit("blocked_subdomain"),
            blocked_url=hit("blocked_url"),
            banned_word=hit("banned_word"),
            soft_banned_words=soft_count >= self.soft_word_threshold,
            banned_subword=hit("banned_subword"),
            scores=measured,
        )
