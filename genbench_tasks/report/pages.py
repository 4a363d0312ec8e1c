"""A run's rendered pages: what publishing uploads beside the run's files, each rendered once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genbench_tasks.report.data import IndexEntry, RunData, load_run
from genbench_tasks.report.history import render_history
from genbench_tasks.report.run import render_run_report


class RunPages:
    """The report of ``run`` (per ``base_href``, rendered on first use) and the history page renderer."""

    def __init__(self, run: RunData):
        self.run = run
        self._reports: dict[str | None, str] = {}

    @classmethod
    def load(cls, rundir: str | Path) -> RunPages:
        return cls(load_run(Path(rundir)))

    def run_report(self, base_href: str | None = None) -> str:
        if base_href not in self._reports:
            self._reports[base_href] = render_run_report(self.run, base_href=base_href)
        return self._reports[base_href]

    def history(self, entries: Sequence[IndexEntry]) -> str:
        return render_history(list(entries))
