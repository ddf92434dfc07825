"""url_filter: every reason code, file blocklists, documents without URL, shared properties."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.batch import make_batch
from engine.errors import SpecError
from engine.steps.url import URLFilter, _extractor, hosts
from tests.steps.property_checks import check_batch, check_step_properties


@pytest.mark.parametrize(
    ("url", "params", "reason"),
    [
        ("https://www.badsite.co.uk/page", {"extra_domains": ["badsite.co.uk"]}, "blocked_domain"),
        ("https://shop.example.com/page", {"extra_domains": ["shop.example.com"]}, "blocked_subdomain"),
        ("https://example.org/a/b?c=1", {"extra_urls": ["https://example.org/a/b?c=1"]}, "blocked_url"),
        ("https://example.org/free-porn-videos", {}, "banned_word"),
        ("https://example.org/babes-and-boobs", {}, "soft_banned_words"),
        ("https://example.org/watchpornhubnow", {}, "banned_subword"),
    ],
)
def test_url_reasons(url: str, params: dict[str, list[str]], reason: str) -> None:
    batch = make_batch({"text": ["a", "b"], "url": [url, "https://en.wikipedia.org/wiki/Library"]})
    verdict = URLFilter(**params)(batch)
    assert verdict.reason[0] == reason
    assert verdict.keep[1]


def test_url_case_sensitive_words_as_in_datatrove() -> None:
    # datatrove splits the raw URL (case kept) but lowercases the list words: "PORN" is not a banned word,
    # yet the lowercased URL still contains the banned subword.
    verdict = URLFilter(use_integrated_lists=False, banned_words=("porn",))(
        make_batch({"text": ["a", "b"], "url": ["https://x.org/PORN", "https://x.org/porn"]})
    )
    assert list(verdict.keep) == [True, False]


def test_documents_without_url_pass() -> None:
    assert URLFilter()(make_batch({"text": ["a", "b"]})).keep.all()
    verdict = URLFilter(extra_domains=("x.com",))(make_batch({"text": ["a", "b"], "url": [None, ""]}))
    assert verdict.keep.all()


def test_blocklist_files(tmp_path: Path) -> None:
    domains = tmp_path / "domains"
    domains.write_text("# comment\nblocked.net\n\n", encoding="utf-8")
    urls = tmp_path / "urls"
    urls.write_text("http://ok.org/exact\n", encoding="utf-8")
    step = URLFilter(domains_file=str(domains), urls_file=str(urls))
    step.check()
    batch = make_batch({"text": ["a"] * 3, "url": ["http://a.blocked.net/x", "http://ok.org/exact", "http://ok.org/"]})
    assert list(step(batch).reason) == ["blocked_domain", "blocked_url", None]


def test_missing_blocklist_file_fails_at_validate(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="domains_file"):
        URLFilter(domains_file=str(tmp_path / "nope")).check()


def test_url_properties() -> None:
    check_step_properties(URLFilter(extra_domains=("example.com",)))


URLS = [
    "https://www.example.com/a?b=1",
    "http://shop.blocked.example.com/free-porn",
    "not a url at all",
    "http://[::1]:8080/x",
    "https://例え.テスト/パス",
    "",
    "ftp://user:pass@host/x",
]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(urls=st.lists(st.one_of(st.text(max_size=80), st.none(), st.sampled_from(URLS)), min_size=1, max_size=8))
@example(urls=URLS)
@example(urls=[None, None])
def test_url_properties_with_urls(urls: list[str | None]) -> None:
    check_batch(URLFilter(extra_domains=("example.com",)), ["text"] * len(urls), url=urls)


url_parts = st.sampled_from(
    ["http", "HTTPS", "://", "//", ":", "/", "@", "?", "#", "[", "]", "::1", ".", "\u3002", "\uff0e", " ", "\n",
     "www", "example", "co", "uk", "com", "user", "8080", "x+y", "\u00e9"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(url_parts, max_size=12).map("".join), max_size=20))
@example(["http://[2001:db8::1]:80/x", "HTTPS://User@Example.COM.:8080/a", "//x.org", " http://a.com ", ":/"])
def test_hosts_are_found_as_tldextract_finds_them(urls: list[str]) -> None:
    from tldextract.remote import lenient_netloc

    assert hosts(pl.Series(urls, dtype=pl.String)).to_list() == [lenient_netloc(u) for u in urls]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(url_parts, max_size=12).map("".join), min_size=1, max_size=20))
@example([". .co"])
def test_domain_rules_asked_per_host_match_tldextract_per_url(urls: list[str]) -> None:
    extract = _extractor()
    answers = [extract(u) for u in urls]
    # list entries are stripped as a blocklist line is (a host of `. .co` has the registered domain ` .co`)
    domains = {a.top_domain_under_public_suffix.strip() for a in answers[::2]} | {a.fqdn.strip() for a in answers[1::3]}
    verdict = URLFilter(extra_domains=tuple(sorted(domains - {""})), use_integrated_lists=False)(
        make_batch({"text": ["t"] * len(urls), "url": urls})
    )
    blocked = verdict.reason.tolist()
    for url, answer, reason in zip(urls, answers, blocked, strict=True):
        if not url:
            assert reason is None
        elif answer.top_domain_under_public_suffix in domains - {""}:
            assert reason == "blocked_domain"
        elif answer.fqdn in domains - {""}:
            assert reason == "blocked_subdomain"
