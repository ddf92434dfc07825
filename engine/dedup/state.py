"""The dedup state kept between builds: the shard registry, which fixes build order.

`state/registry.json` under a dedup folder records, for every shard dedup has seen, the build in which it was first
seen. Shards are ordered by `(build first seen, name)` and node ids follow that order (`shard position << 32 | row`,
`engine.dedup.plan.node_ids`), so a document of a shard published earlier always has a smaller node than any
document of a shard added later, whatever their names. `keep: first_seen` keeps each cluster's smallest node: the
document first seen in build order (its shard's first build, then the shard's name, then its row), so adding
shards never replaces a representative that was already published (issue 11: `"p:10" < "p:9"`).

A changed shard (same name, new content) keeps its build (its documents keep their age); a vanished shard leaves
the registry (if it comes back, it is new). An output without a registry (a first build, or one made by an older
engine) gets one in which every shard present is of build 1: ordered by name, as before registries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.io.layout import join
from engine.io.markers import read_json, write_json

REGISTRY_FORMAT = 1


@dataclass(frozen=True)
class Registry:
    """`build`: the latest build's number; `first_seen`: each shard's first build."""

    build: int
    first_seen: dict[str, int]

    def order(self) -> list[str]:
        """The shards in build order: first build, then name."""
        return sorted(self.first_seen, key=lambda rel: (self.first_seen[rel], rel))

    def to_json(self) -> dict[str, Any]:
        return {"format": REGISTRY_FORMAT, "build": self.build, "first_seen": dict(sorted(self.first_seen.items()))}


def registry_url(root: str) -> str:
    """`state/registry.json` under a dedup folder (`engine.dedup.signatures.dedup_root`)."""
    return join(root, "state", "registry.json")


def read_registry(root: str, storage_options: dict[str, Any]) -> Registry | None:
    """The registry the last build left (None: none yet).

    Raises:
        ValueError: the file is of a format this engine does not know (written by a newer engine).
    """
    data = read_json(registry_url(root), storage_options)
    if data is None:
        return None
    if data.get("format") != REGISTRY_FORMAT:
        msg = (
            f"{registry_url(root)} has format {data.get('format')!r}, this engine reads {REGISTRY_FORMAT};"
            " run the engine version that wrote it, or delete the file to rebuild the dedup order from shard names"
        )
        raise ValueError(msg)
    return Registry(int(data["build"]), {str(rel): int(b) for rel, b in data["first_seen"].items()})


def register(previous: Registry | None, shards: Sequence[str]) -> Registry:
    """The registry of a build over `shards`: known shards keep their build, new ones get the next build's number,
    vanished ones leave."""
    if previous is None:
        return Registry(1, dict.fromkeys(shards, 1))
    new = [rel for rel in shards if rel not in previous.first_seen]
    build = previous.build + 1 if new else previous.build
    first_seen = {rel: previous.first_seen.get(rel, build) for rel in shards}
    return Registry(build, first_seen)


def write_registry(root: str, registry: Registry, storage_options: dict[str, Any]) -> None:
    write_json(registry_url(root), registry.to_json(), storage_options)


__all__ = ["Registry", "read_registry", "register", "registry_url", "write_registry"]
