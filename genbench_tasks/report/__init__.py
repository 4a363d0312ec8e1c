"""Self-contained HTML reports (inline CSS + SVG, no scripts): one page per run and a history page."""

from genbench_tasks.report.data import IndexEntry, RunData, index_entry, load_run
from genbench_tasks.report.history import render_history
from genbench_tasks.report.pages import RunPages
from genbench_tasks.report.run import render_run_report

__all__ = [
    "IndexEntry",
    "RunData",
    "RunPages",
    "index_entry",
    "load_run",
    "render_history",
    "render_run_report",
]
