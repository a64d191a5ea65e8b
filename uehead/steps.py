"""Step lines on stderr for long jobs without a natural progress bar (export, the benchmarks).

    steps = StepLines("uehead export", total=6)
    steps.start("graph export")          # uehead export [1/6] graph export ... (0 s in)
    steps.note("backbone: 22.7M parameters")
    steps.done()                         # uehead export: done in 41.2 s

Each line is flushed at once, so a slow step shows which one it is; ``enabled=False`` prints nothing.
"""
from __future__ import annotations

import sys
import time

__all__ = ["StepLines"]


class StepLines:
    """Numbered step lines for ``label``'s ``total`` steps, on ``stream`` (default: stderr)."""

    def __init__(self, label: str, total: int, *, enabled: bool = True, stream=None):
        self.label, self.total, self.enabled, self.stream = label, total, enabled, stream
        self.number = 0
        self.started = time.perf_counter()

    def _print(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream or sys.stderr, flush=True)

    def start(self, what: str) -> None:
        """Begin the next step; the line shows the seconds since the job began."""
        self.number += 1
        self._print(f"{self.label} [{self.number}/{self.total}] {what} ... "
                    f"({time.perf_counter() - self.started:.0f} s in)")

    def note(self, text: str) -> None:
        """A detail of the current step, indented under it."""
        self._print(f"    {text}")

    def done(self, what: str = "done") -> None:
        self._print(f"{self.label}: {what} in {time.perf_counter() - self.started:.1f} s")
