"""``validation/validation_report.json``: per-dataset expectation failures, cross-split checks, a readable
summary (written by ``validation.validate``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from genbench_tasks.artifacts.io import write_model
from genbench_tasks.artifacts.layout import VALIDATION_REPORT

MAX_SAMPLE_ROWS = 5
REPORT_NAME = VALIDATION_REPORT


class FailedExpectation(BaseModel):
    """One failed expectation (a GX expectation, or our explicit Arrow-schema check)."""

    expectation: str  # e.g. "expect_column_values_to_not_be_null", "arrow_schema_matches"
    column: str | None = None
    details: str
    sample_offending_rows: list[dict[str, Any]] = Field(default_factory=list)  # at most MAX_SAMPLE_ROWS


class DatasetResult(BaseModel):
    """Validation of one dataset file (one manifest entry)."""

    name: str  # manifest name, e.g. "rewriting/train" or "rewriting/train.sft"
    path: str  # relative to the data dir
    family: str
    split: str
    format: str  # "rl" | "sft"
    rows: int
    success: bool
    expectations_evaluated: int = 0
    failed_expectations: list[FailedExpectation] = Field(default_factory=list)


class CrossCheckResult(BaseModel):
    """A check across datasets (held-out prompt leak, n-gram contamination)."""

    name: str
    success: bool
    details: str
    stats: dict[str, Any] = Field(default_factory=dict)
    sample_offending_rows: list[dict[str, Any]] = Field(default_factory=list)


class ValidationReport(BaseModel):
    success: bool
    data_dir: Path
    profile: str | None = None
    datasets: list[DatasetResult]
    cross_checks: list[CrossCheckResult]
    report_path: Path
    html_dir: Path | None = None
    sandbox: str | None = None  # the isolation that ran the reference solutions (None: no code datasets)
    cached_from: str | None = None  # a passing report of identical inputs was reused (validation cache)

    def failures(self) -> list[tuple[str, FailedExpectation]]:
        """(where, failure) pairs over datasets and cross-checks, in report order."""
        out = [(d.name, f) for d in self.datasets for f in d.failed_expectations]
        for check in self.cross_checks:
            if not check.success:
                out.append(
                    (
                        "cross-check",
                        FailedExpectation(
                            expectation=check.name,
                            details=check.details,
                            sample_offending_rows=check.sample_offending_rows,
                        ),
                    )
                )
        return out

    def one_line(self, max_rows: int = 2) -> str:
        """The first failure as one line (the message of DataValidationError), plus a failure count."""
        failures = self.failures()
        if not failures:
            return f"{self.data_dir}: all {len(self.datasets)} datasets valid"
        where, first = failures[0]
        col = f" on column {first.column!r}" if first.column else ""
        rows = _rows_inline(first.sample_offending_rows[:max_rows])
        more = f" (+{len(failures) - 1} more failures)" if len(failures) > 1 else ""
        text = f"validation failed: {where}: {first.expectation}{col}: {first.details}{rows}{more}"
        return " ".join(text.split())

    def summary(self, max_rows: int = 3) -> str:
        """Readable multi-line summary: each failing dataset, expectation and a few offending rows."""
        n_ok = sum(d.success for d in self.datasets)
        status = "PASSED" if self.success else "FAILED"
        lines = [f"validation {status}: {n_ok}/{len(self.datasets)} datasets valid ({self.data_dir})"]
        for where, failure in self.failures():
            col = f" [{failure.column}]" if failure.column else ""
            lines.append(f"  {where}: {failure.expectation}{col}: {_clip(failure.details, 300)}")
            for row in failure.sample_offending_rows[:max_rows]:
                lines.append(f"      row: {_clip(json.dumps(row, default=str), 240)}")
        for check in self.cross_checks:
            if check.success:
                lines.append(f"  cross-check {check.name}: ok ({_clip(check.details, 200)})")
        if self.sandbox:
            lines.append(f"  reference solutions ran in the sandbox: {self.sandbox}")
        lines.append(f"report: {self.report_path}")
        if self.html_dir is not None:
            lines.append(f"data docs: {self.html_dir / 'index.html'}")
        return "\n".join(lines)

    def write(self) -> Path:
        return write_model(self.report_path, self)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rows_inline(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    return "; offending rows: " + ", ".join(_clip(json.dumps(r, default=str), 160) for r in rows)
