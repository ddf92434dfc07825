"""Small JSON files in storage: per-unit stats and completion markers, written atomically."""

from __future__ import annotations

import json
from typing import Any

from engine.io.atomic import write_text
from engine.io.paths import filesystem


def write_json(url: str, data: dict[str, Any], storage_options: dict[str, Any], *, tmp_dir: str | None = None) -> None:
    """Write `data` as JSON at `url`: whole or not at all (the temporary file in `tmp_dir` when given)."""
    write_text(url, json.dumps(data, indent=1, sort_keys=True), storage_options, tmp_dir=tmp_dir)


def read_json(url: str, storage_options: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON at `url`, or None if it does not exist or is unreadable (a half-written marker counts as absent)."""
    fs, path = filesystem(url, storage_options)
    try:
        with fs.open(path, "r") as handle:
            data = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
