"""`validate_dataset_dir`: structural checks, per-dataset GX suites, cross-split checks, JSON + HTML report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from genbench_tasks.data.build import RL_SCHEMA, SFT_SCHEMA, DatasetEntry, load_manifest, sha256_file
from genbench_tasks.errors import DataValidationError, GenbenchError
from genbench_tasks.families import get_family
from genbench_tasks.profiles import Profile
from genbench_tasks.validation.contamination import TextItem, heldout_leak_check, ngram_contamination_check
from genbench_tasks.validation.report import REPORT_NAME, DatasetResult, ValidationReport

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FORMATS = {"rl": RL_SCHEMA, "sft": SFT_SCHEMA}


def read_dataset(data_dir: Path, entry: DatasetEntry) -> pa.Table:
    """Read one manifest entry. Unreadable, malformed, empty or changed files and missing top-level columns
    raise a one-line GenbenchError; wrong types and unexpected columns are left to the suites."""
    path = data_dir / entry.path
    if entry.format not in FORMATS:
        raise GenbenchError(
            f"{entry.name}: unknown format {entry.format!r} in datasets.json (expected rl or sft)"
        )
    if not path.exists():
        raise GenbenchError(f"{entry.name}: {path} is listed in datasets.json but does not exist")
    if not path.is_file():
        raise GenbenchError(f"cannot read {path}: not a file")
    try:
        size = path.stat().st_size
        digest = sha256_file(path)
    except OSError as exc:
        raise GenbenchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise GenbenchError(f"{path}: empty file (0 bytes), not a parquet file")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError with long messages
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise GenbenchError(f"{path}: not a valid parquet file ({first})") from exc
    if table.num_rows == 0:
        raise GenbenchError(f"{path}: parquet file has no rows")
    if digest != entry.sha256:
        raise GenbenchError(
            f"{path}: sha256 {digest[:12]} does not match datasets.json ({entry.sha256[:12]}); "
            "the file changed after the build, rebuild with `genbench data build`"
        )
    expected = FORMATS[entry.format]
    missing = [name for name in expected.names if name not in table.column_names]
    if missing:
        extra = [name for name in table.column_names if name not in expected.names]
        also = f" (unexpected: {extra})" if extra else ""
        raise GenbenchError(
            f"{path}: missing columns {missing}{also}; {entry.format} datasets need {expected.names}"
        )
    return table


def expected_rows(profile: Profile | None, entry: DatasetEntry) -> tuple[int, int | None]:
    """Row-count bounds: the profile's size for the family/split plus its custom datasets; without a profile, >= 1."""
    if profile is None:
        return 1, None
    generated = 0
    sizes = profile.data.sizes.get(entry.family)
    if sizes is not None and entry.family in profile.data.families:
        generated = getattr(sizes, entry.split, 0)
    custom = [c for c in profile.data.custom if c.family == entry.family and c.split == entry.split]
    low = generated + len(custom)  # a custom dataset contributes >= 1 row (empty ones fail the build)
    if any(c.limit is None for c in custom):
        return low, None
    return low, generated + sum(c.limit or 0 for c in custom)


def _text_items(name: str, fmt: str, df: pd.DataFrame) -> list[TextItem]:
    prompt_col, answer_col = ("prompt_text", "reference") if fmt == "rl" else ("prompt", "response")
    if prompt_col not in df.columns:
        return []
    ids = df["id"] if "id" in df.columns else df["row"].map(lambda r: f"row{r}")
    answers = df[answer_col] if answer_col in df.columns else [None] * len(df)
    out = []
    for id_, prompt, answer in zip(ids, df[prompt_col], answers, strict=True):
        if isinstance(prompt, str):
            texts = (prompt, answer) if isinstance(answer, str) else (prompt,)
            out.append(TextItem(name, str(id_), texts))
    return out


def validate_dataset_dir(
    data_dir: str | Path,
    profile: Profile | None = None,
    report_dir: str | Path | None = None,
    raise_on_failure: bool = False,
    *,
    build_html: bool = True,
) -> ValidationReport:
    """Validate every dataset listed in DATA_DIR/datasets.json and the cross-split invariants.

    Writes `validation_report.json` and (with `build_html`) GX data docs under `report_dir/html`
    (default report_dir: DATA_DIR/validation). Structural problems (missing manifest or file, unreadable,
    malformed or empty parquet, sha256 mismatch, missing columns) raise GenbenchError before any GX work;
    data problems (types, extra columns, nulls, duplicates, lengths, data_source, row counts, leaks,
    contamination) are recorded in the report and raise DataValidationError only with `raise_on_failure`.
    """
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir)
    if not manifest.datasets:
        raise GenbenchError(f"{data_dir}/datasets.json lists no datasets")
    loaded = [(entry, get_family(entry.family), read_dataset(data_dir, entry)) for entry in manifest.datasets]

    report_dir = Path(report_dir) if report_dir is not None else data_dir / "validation"
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenbenchError(f"cannot write to {report_dir}: {exc.strerror or exc}") from exc

    from genbench_tasks.validation.suites import (
        GXRunner,
        arrow_schema_failures,
        build_expectations,
        flatten_rl,
        flatten_sft,
    )

    html_dir = report_dir / "html" if build_html else None
    runner = GXRunner(html_dir)
    results: list[DatasetResult] = []
    training: list[TextItem] = []
    seen_training: set[tuple[str, ...]] = set()
    eval_prompts: dict[tuple[str, str], list[TextItem]] = {}
    heldout_texts: dict[tuple[str, str], list[TextItem]] = {}
    for entry, family, table in loaded:
        df = flatten_rl(table) if entry.format == "rl" else flatten_sft(table)
        min_rows, max_rows = expected_rows(profile, entry)
        expectations = build_expectations(entry.format, family, entry.split, df, min_rows, max_rows)
        n_evaluated, failed = runner.run(entry.name, df, expectations)
        failed = arrow_schema_failures(table.schema, FORMATS[entry.format]) + failed
        results.append(
            DatasetResult(
                name=entry.name,
                path=entry.path,
                family=entry.family,
                split=entry.split,
                format=entry.format,
                rows=table.num_rows,
                success=not failed,
                expectations_evaluated=n_evaluated + 1,
                failed_expectations=failed,
            )
        )
        log.info("validated %s: %s", entry.name, "ok" if not failed else f"{len(failed)} failed expectations")
        items = _text_items(entry.name, entry.format, df)
        if entry.split == "train":  # RL and SFT training texts, each distinct text pair once
            fresh = [i for i in items if i.texts not in seen_training]
            seen_training.update(i.texts for i in fresh)
            training.extend(fresh)
            continue
        # Held-out side: one copy per (family, split); prefer the RL file, fall back to SFT.
        key = (entry.family, entry.split)
        if entry.format == "rl" or key not in eval_prompts:
            eval_prompts[key] = items
            if family.role == "heldout":
                heldout_texts[key] = items

    ngram = profile.data.contamination_ngram if profile else 13
    max_fraction = profile.data.contamination_max_fraction if profile else 0.0
    cross = [
        heldout_leak_check(training, [i for items in eval_prompts.values() for i in items]),
        ngram_contamination_check(
            training,
            [i for items in heldout_texts.values() for i in items],
            n=ngram,
            max_fraction=max_fraction,
        ),
    ]
    report = ValidationReport(
        success=all(r.success for r in results) and all(c.success for c in cross),
        data_dir=data_dir,
        profile=profile.name if profile else None,
        datasets=results,
        cross_checks=cross,
        report_path=report_dir / REPORT_NAME,
        html_dir=html_dir if html_dir is not None and (html_dir / "index.html").is_file() else None,
    )
    report.write()
    if raise_on_failure and not report.success:
        raise DataValidationError(report.one_line(), report=report.model_dump(mode="json"))
    return report
