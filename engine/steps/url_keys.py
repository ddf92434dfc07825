"""What `url_filter`'s blocklists are matched against, as hashed keys: documents' side and the lists' side.

A domain blocklist (`domains_file`) drops a document when its registered domain or its full host name is an
entry; a URL blocklist (`urls_file`) when its URL is an entry (`engine.steps.url`). So a list change can only
change the verdict on a document one of whose keys is an entry added to or removed from the list: a shard none
of whose documents presents such a key gives the same output under both versions of the list.

Both sides are hashed with xxh3-64 of the UTF-8 string, the very strings `url_filter` compares. Lists are kept
as full 64-bit hashes (a diff between two versions misses a change only if a changed entry collides with
another entry: about n / 2**64 per changed entry). A shard records its documents' keys cut to `KEY_BITS` bits,
sorted and delta-encoded in Parquet (about 4.3 bytes a key at 100k keys): a collision there can only make a
shard look affected when it is not (about keys x changed entries / 2**48, 7e-6 for 200k keys and 10k changed
entries), never the reverse, so the cut costs at most a rare extra redo, not a wrong output.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import xxhash

from engine.schema import URL
from engine.steps.base import Step
from engine.steps.url import URLFilter, domain_and_host, read_blocklist

KEY_BITS = 48
LIST_FILES = {"domains_file": "domain", "urls_file": "url"}
"""The `url_filter` parameters whose lists can be diffed, and what of a document each is matched on."""

U64 = npt.NDArray[np.uint64]


@lru_cache(maxsize=1)
def key_scheme() -> str:
    """How keys are made; keys recorded under another scheme cannot be compared (the shard is redone).

    Holds the hash, the cut and the version of tldextract (its public-suffix snapshot decides registered domains).
    """
    from importlib.metadata import version

    return f"xxh3_64/{KEY_BITS}-bits;tldextract-{version('tldextract')};v1"


def string_hashes(values: Iterable[str]) -> U64:
    """xxh3-64 of each string's UTF-8 bytes, in order."""
    return np.fromiter((xxhash.xxh3_64_intdigest(v.encode("utf-8", "surrogatepass")) for v in values), dtype=np.uint64)


def to_keys(hashes: U64) -> U64:
    """Full hashes cut to the `KEY_BITS` bits a shard records, sorted and unique."""
    return np.unique(hashes >> np.uint64(64 - KEY_BITS))


def blocklist_files(step: Step) -> dict[str, str]:
    """The diffable blocklist files of `step` (parameter -> path), or none for any other step."""
    if not isinstance(step, URLFilter):
        return {}
    return {name: str(getattr(step, name)) for name in LIST_FILES if getattr(step, name) is not None}


def list_hashes(url: str) -> U64:
    """The entries of the blocklist at `url`, as `url_filter` reads them, hashed: sorted and unique."""
    return np.unique(string_hashes(read_blocklist(url)))


def document_keys(batch: pa.Table, parameters: Iterable[str]) -> dict[str, U64]:
    """Per list parameter (`domains_file`, `urls_file`), the keys the documents of `batch` present to it.

    Documents without a URL (no `url` column, null or empty) present none: `url_filter` lets them pass.
    """
    wanted = list(parameters)
    empty = np.zeros(0, dtype=np.uint64)
    if URL not in batch.column_names or not batch.num_rows:
        return {name: empty for name in wanted}
    urls = pl.Series("url", batch[URL]).cast(pl.String).fill_null("")
    unique = urls.filter(urls.str.len_bytes() > 0).unique().to_list()
    keys: dict[str, U64] = {}
    for name in wanted:
        if LIST_FILES[name] == "url":
            keys[name] = to_keys(string_hashes(unique))
        else:
            parts = {part for url in unique for part in domain_and_host(url)}
            keys[name] = to_keys(string_hashes(parts))
    return keys
