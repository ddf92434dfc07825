"""Small JSON files in storage: per-unit stats and completion markers, written atomically."""

from __future__ import annotations

import json
import uuid
from typing import Any

from engine.io.paths import filesystem


def write_json(url: str, data: dict[str, Any], storage_options: dict[str, Any]) -> None:
    """Write `data` as JSON at `url`: to a temporary name first, then renamed into place."""
    fs, path = filesystem(url, storage_options)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    fs.mv(tmp, path)


def read_json(url: str, storage_options: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON at `url`, or None if it does not exist or is unreadable (a half-written marker counts as absent)."""
    fs, path = filesystem(url, storage_options)
    try:
        with fs.open(path, "r") as handle:
            data = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
