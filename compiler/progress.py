"""Progress reporting for long steps: a rich bar on a terminal, silence elsewhere."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


class Progress:
    """Reports stage messages and per-item progress to stderr.

    Args:
        enabled: False for ``--json`` runs and library use (nothing is printed).
    """

    def __init__(self, enabled: bool = False):
        self.enabled = enabled
        self._bar = None

    def message(self, text: str) -> None:
        if self.enabled:
            print(f"[edgec] {text}", file=sys.stderr, flush=True)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator["_Task"]:
        """A progress bar for ``total`` items; yields an object with ``advance(n=1)``."""
        if not self.enabled:
            yield _Task(None, None)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn
        from rich.console import Console

        console = Console(stderr=True)
        with RichProgress(TextColumn("[edgec] {task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=not console.is_terminal) as bar:
            tid = bar.add_task(description, total=total)
            yield _Task(bar, tid)


class _Task:
    def __init__(self, bar, tid):
        self._bar, self._tid = bar, tid

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._tid, n)


SILENT = Progress(False)
