"""A unit's reuse key: everything a shard's phase-A output depends on, and what changed between two keys.

The key of one shard = its input's fingerprint (size, etag or mtime) + the job's phase-A configuration
(`JobSpec.phase_a_config`: steps' parameters, reader and writer settings, signature parameters) + the content
identity of every asset a step reads (`Step.assets`: models, blocklists, word lists) + every step's behaviour
version (`Step.version`; the engine's version for a step class that declares none) + the reader's version + the
signature code's version (`SIGNATURE_VERSION`, in a dedup job).
Everything but the input is the same for every shard of a run: `JobKey`, computed once on the driver (assets are
hashed there, never per unit). A marker records its shard's key, so a rerun says why it redoes a shard.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.dedup.signatures import SIGNATURE_VERSION
from engine.errors import SpecError
from engine.io.assets import asset_identity, identity_token
from engine.io.documents import READER_VERSION
from engine.io.layout import assets_file, config_file
from engine.io.markers import read_json, write_json
from engine.spec import JobSpec, config_hash
from engine.steps.base import Step
from engine.version import __version__

READER = "reader"
SIGNATURES = "signatures"


@dataclass(frozen=True)
class JobKey:
    """The part of every unit's key that the whole run shares (small: travels to every task)."""

    config: dict[str, Any]
    config_hash: str
    assets: dict[str, str]
    versions: dict[str, str]
    identities: dict[str, dict[str, Any]]

    def unit_key(self, input_fingerprint: Mapping[str, Any]) -> dict[str, Any]:
        """The key a shard with this input fingerprint is recorded under (JSON, as stored in its marker)."""
        return {
            "input": dict(input_fingerprint),
            "config": self.config_hash,
            "assets": dict(self.assets),
            "versions": dict(self.versions),
        }


def step_version(step: Step) -> str:
    """`<type>@<version>`, or `<type>@engine-<engine version>` for a step class that declares no version."""
    version = type(step).version
    return f"{step.type}@{version}" if version is not None else f"{step.type}@engine-{__version__}"


def job_key(job: JobSpec, *, known: Mapping[str, Mapping[str, Any]] | None = None) -> JobKey:
    """The run's shared key part; `known` holds asset identities recorded before (skip rehashing unchanged files).

    Raises:
        SpecError: an asset is missing or unreadable (naming the step's parameter).
    """
    assets: dict[str, str] = {}
    identities: dict[str, dict[str, Any]] = {}
    for index, step in enumerate(job.steps):
        for name, url in step.assets().items():
            where = f"steps[{index}].{name}"
            if url not in identities:
                try:
                    identities[url] = asset_identity(url, known=known)
                except FileNotFoundError:
                    msg = f"{where}: {url!r} does not exist; check the path (a step reads it)"
                    raise SpecError(msg) from None
                except (OSError, ValueError) as error:
                    msg = f"{where}: {url!r} cannot be read: {type(error).__name__}: {error}"
                    raise SpecError(msg) from None
            assets[where] = identity_token(identities[url])
    versions = {f"steps[{i}]": step_version(step) for i, step in enumerate(job.steps)}
    versions[READER] = str(READER_VERSION)
    if job.dedup is not None:
        versions[SIGNATURES] = str(SIGNATURE_VERSION)
    config = job.phase_a_config()
    return JobKey(config, config_hash(config), assets, versions, identities)


def known_identities(job: JobSpec) -> dict[str, dict[str, Any]]:
    """The asset identities the last run recorded in its output (the hash cache), or none."""
    recorded = read_json(assets_file(job.output.path), job.output.storage_options) or {}
    return {url: value for url, value in recorded.items() if isinstance(value, dict)}


def save_key(job: JobSpec, key: JobKey) -> None:
    """Record the run's configuration (so later runs can name changed parameters) and the asset hash cache."""
    out, options = job.output.path, job.output.storage_options
    if read_json(config_file(out, key.config_hash), options) is None:
        write_json(config_file(out, key.config_hash), key.config, options)
    known = known_identities(job)
    merged = {**known, **key.identities}
    if merged != known:  # an unchanged rerun writes nothing here
        write_json(assets_file(out), merged, options)


# --------------------------------------------------------------------------------------------------
# What changed between a marker's key and the current one, in the words `plan` prints.

INPUT_CHANGED = "changed input"
NO_KEY = "marker written by an older engine (no reuse key)"


def key_changes(
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    *,
    previous_config: Mapping[str, Any] | None,
    current_config: Mapping[str, Any],
) -> list[str]:
    """Why a shard recorded under key `previous` must be redone under key `current` (empty: it need not)."""
    if not previous:
        return [NO_KEY]
    reasons = []
    if previous.get("input") != current["input"]:
        reasons.append(INPUT_CHANGED)
    old_types = _step_types(previous.get("versions", {}))
    new_types = _step_types(current["versions"])
    steps_differ = old_types != new_types
    if steps_differ:
        reasons.append(f"steps changed: {', '.join(old_types) or '(none)'} -> {', '.join(new_types) or '(none)'}")
    if previous.get("config") != current["config"]:
        if previous_config is None:
            reasons.append("changed configuration (the previous one is not recorded)")
        else:
            reasons.extend(
                f"changed parameter {path}: {_show(a)} -> {_show(b)}"
                for path, a, b in _differences(previous_config, current_config)
                if not (steps_differ and path.startswith("steps"))
            )
    if not steps_differ:
        reasons.extend(_asset_changes(previous.get("assets", {}), current["assets"]))
        reasons.extend(_version_changes(previous.get("versions", {}), current["versions"]))
    else:
        reasons.extend(_version_changes(previous.get("versions", {}), current["versions"], steps=False))
    if not reasons and dict(previous) != dict(current):
        reasons.append("changed reuse key")
    return reasons


def _step_types(versions: Mapping[str, str]) -> list[str]:
    steps = sorted((k for k in versions if k.startswith("steps[")), key=lambda k: int(k[6:-1]))
    return [str(versions[k]).partition("@")[0] for k in steps]


def _asset_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    reasons = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            reasons.append(f"new asset {name}")
        elif name not in new:
            reasons.append(f"asset {name} no longer read")
        elif old[name] != new[name]:
            reasons.append(f"changed asset {name}")
    return reasons


def _version_changes(old: Mapping[str, str], new: Mapping[str, str], *, steps: bool = True) -> list[str]:
    """Versions that differ; with `steps=False` only the reader's and the signatures' (steps were replaced)."""
    reasons = []
    for where in sorted(new, key=_order):
        if (not steps and where.startswith("steps[")) or old.get(where) == new[where]:
            continue
        if where in _NAMED_VERSIONS:
            reasons.append(f"{_NAMED_VERSIONS[where]} version {old.get(where, '?')} -> {new[where]}")
            continue
        kind, _, after = str(new[where]).partition("@")
        before = str(old.get(where, "")).partition("@")[2] or "?"
        reasons.append(f"step {where} {kind}: version {before} -> {after}")
    return reasons


_NAMED_VERSIONS = {READER: "reader", SIGNATURES: "signature code"}


def _order(where: str) -> tuple[int, str]:
    return (int(where[6:-1]), "") if where.startswith("steps[") else (1 << 30, where)


def _differences(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Every leaf that differs between two JSON-like values, by key path (`steps[2].min_words`)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found = []
        for key in sorted(set(old) | set(new)):
            where = f"{path}.{key}" if path else str(key)
            found.extend(_differences(old.get(key, _ABSENT), new.get(key, _ABSENT), where))
        return found
    if isinstance(old, list) and isinstance(new, list) and path == "steps" and len(old) == len(new):
        found = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            found.extend(_differences(a, b, f"{path}[{index}]"))
        return found
    return [] if old == new else [(path, old, new)]


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, _Absent) else json.dumps(value)
