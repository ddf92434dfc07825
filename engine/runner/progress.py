"""Live progress on the user's terminal: one redrawn line on a TTY, plain log lines elsewhere (CI, Ray job logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _eta(seconds: float) -> str:
    if seconds < 0 or seconds != seconds:  # NaN
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Shards done / total, docs/s, docs dropped so far and an ETA for one phase of a run."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, enabled: bool = True, counts_docs: bool = True
    ) -> None:
        self.label, self.total = label, total
        self.counts_docs = counts_docs
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = self.skipped = self.failed = 0
        self.docs = self.dropped = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._log_every = 10.0

    def update(self, *, docs: int = 0, dropped: int = 0, skipped: bool = False, failed: bool = False) -> None:
        """Record one finished task."""
        self.done += 1
        self.skipped += int(skipped)
        self.failed += int(failed)
        self.docs += docs
        self.dropped += dropped
        self._draw(final=False)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.docs / elapsed
        share = f"{100 * self.dropped / self.docs:.1f}%" if self.docs else "-"
        remaining = (self.total - self.done) * elapsed / self.done if self.done else float("nan")
        extra = "".join(
            [
                f", {self.skipped} skipped" if self.skipped else "",
                f", {self.failed} FAILED" if self.failed else "",
            ]
        )
        if not self.counts_docs:
            return f"[{self.label}] tasks {self.done}/{self.total}{extra} | ETA {_eta(remaining)}"
        return (
            f"[{self.label}] shards {self.done}/{self.total}{extra} | {self.docs:,} docs, {rate:,.0f} docs/s"
            f" | dropped {self.dropped:,} ({share}) | ETA {_eta(remaining)}"
        )

    def _draw(self, *, final: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.is_tty:
            if final or now - self._last_draw > 0.2:
                self.stream.write("\r\033[K" + self.line() + ("\n" if final else ""))
                self.stream.flush()
                self._last_draw = now
        elif final or now - self._last_draw > self._log_every or self.done == self.total:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last_draw = now

    def finish(self) -> None:
        """Draw the final state (once)."""
        if self.is_tty or self.done != self.total:
            self._draw(final=True)
