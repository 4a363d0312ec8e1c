"""`validate_dataset_dir`: manifest and structural checks, GX suites and row checks per dataset, reference
solutions in the sandbox, cross-split checks, JSON + HTML report."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from genbench_tasks.artifacts.io import read_model, write_model
from genbench_tasks.artifacts.validation import (
    MAX_SAMPLE_ROWS,
    REPORT_NAME,
    CrossCheckResult,
    DatasetResult,
    ValidationReport,
)
from genbench_tasks.data.build import (
    RL_SCHEMA,
    SFT_SCHEMA,
    DatasetEntry,
    DatasetManifest,
    load_manifest,
)
from genbench_tasks.errors import DataValidationError, GenbenchError
from genbench_tasks.families import all_families, get_family
from genbench_tasks.hashing import content_key, file_sha256
from genbench_tasks.profiles import Profile
from genbench_tasks.validation.contamination import (
    TextItem,
    heldout_leak_check,
    near_duplicate_check,
    ngram_contamination_check,
)
from genbench_tasks.validation.manifest import check_manifest
from genbench_tasks.validation.rows import (
    RowChecks,
    add_reference_results,
    check_rl,
    check_sft,
    invalid_utf8,
    utf8_failure,
)

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
        digest = file_sha256(path)
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
    if table.num_rows != entry.rows:
        raise GenbenchError(
            f"{path}: {table.num_rows} rows, but datasets.json entry {entry.name} says rows={entry.rows}"
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


def validate_dataset_dir(
    data_dir: str | Path,
    profile: Profile | None = None,
    report_dir: str | Path | None = None,
    raise_on_failure: bool = False,
    *,
    build_html: bool = False,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
) -> ValidationReport:
    """Validate every dataset listed in DATA_DIR/datasets.json and the cross-split invariants.

    Writes `validation_report.json` and (with `build_html`) GX data docs under `report_dir/html`
    (default report_dir: DATA_DIR/validation, created first). With `cache_dir`, a passing report is kept
    there under the content key of the inputs (datasets.json, which holds every file's sha256, the profile and
    the code): unchanged data is re-checked by its hashes only (seconds), not re-validated. Structural problems (missing or malformed
    manifest, an entry inconsistent with the registry, the layout or another entry, a missing, unreadable,
    malformed, empty or changed file, row counts or columns that differ from the manifest) raise GenbenchError
    before any GX work. Data problems are recorded in the report and raise DataValidationError only with
    `raise_on_failure`: GX suites (types, nulls, duplicates, lengths, data_source, row counts), row checks
    (every message, control characters, blank texts, code ground truth, reference solutions run in the
    sandbox with `workers` processes), and cross-split checks (leaks, n-gram contamination, near-duplicates,
    ids across splits, the held-out family present).
    """
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir)
    if not manifest.datasets:
        raise GenbenchError(f"{data_dir}/datasets.json lists no datasets")
    check_manifest(data_dir, manifest)
    report_dir = Path(report_dir) if report_dir is not None else data_dir / "validation"
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenbenchError(f"cannot write to {report_dir}: {exc.strerror or exc}") from exc
    loaded = [(entry, get_family(entry.family), read_dataset(data_dir, entry)) for entry in manifest.datasets]
    key = _cache_key(data_dir, profile, build_html)
    cached = _cached_report(cache_dir, key, data_dir, report_dir)
    if cached is not None:
        return cached

    row_checks: dict[str, RowChecks] = {}
    undecodable: dict[str, list] = {}
    for entry, family, table in loaded:
        found = invalid_utf8(table)
        if found:
            undecodable[entry.name] = utf8_failure(table, found)
        elif entry.format == "rl":
            row_checks[entry.name] = check_rl(entry.name, family, entry.split, table)
        else:
            row_checks[entry.name] = check_sft(entry.name, entry.split, table)

    from genbench_tasks.validation.suites import (
        SuitePool,
        arrow_schema_failures,
        build_expectations,
        flatten_rl,
        flatten_sft,
    )

    html_dir = report_dir / "html" if build_html else None
    checked = [item for item in loaded if item[0].name not in undecodable]
    # The GX suites run in forked processes (forked first, before any thread starts) while the reference
    # solutions run in the sandbox from a thread here.
    with SuitePool(html_dir, jobs=len(checked)) as suites:
        pending = {}
        for entry, family, table in checked:
            df = flatten_rl(table) if entry.format == "rl" else flatten_sft(table)
            min_rows, max_rows = expected_rows(profile, entry)
            expectations = build_expectations(entry.format, family, entry.split, df, min_rows, max_rows)
            pending[entry.name] = suites.submit(entry.name, df, expectations)
        jobs = [job.job for checks in row_checks.values() for job in checks.code_jobs]
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="references")
        references = pool.submit(_run_references, jobs, workers) if jobs else None
        try:
            results: list[DatasetResult] = []
            for entry, _family, table in loaded:
                if entry.name in undecodable:
                    n_evaluated, failed = 1, undecodable[entry.name]
                else:
                    n_evaluated, failed = pending[entry.name]()
                    failed = arrow_schema_failures(table.schema, FORMATS[entry.format]) + failed
                    n_evaluated += 1 + len(row_checks[entry.name].checks)
                results.append(
                    DatasetResult(
                        name=entry.name,
                        path=entry.path,
                        family=entry.family,
                        split=entry.split,
                        format=entry.format,
                        rows=table.num_rows,
                        success=not failed,
                        expectations_evaluated=n_evaluated,
                        failed_expectations=failed,
                    )
                )
            outcomes, seconds = references.result() if references is not None else ([], 0.0)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    sandbox = outcomes[0].isolation if outcomes else None
    if outcomes:
        passed = sum(o.passed for o in outcomes)
        log.info(
            "reference solutions: %d/%d pass their tests (%.1fs, sandbox: %s)",
            passed,
            len(outcomes),
            seconds,
            sandbox,
        )
    offset = 0
    for checks in row_checks.values():
        n = len(checks.code_jobs)
        add_reference_results(checks, outcomes[offset : offset + n])
        offset += n
    for result in results:
        if result.name in row_checks:
            result.failed_expectations += row_checks[result.name].failures()
            result.success = not result.failed_expectations
        log.info(
            "validated %s: %s",
            result.name,
            "ok" if result.success else f"{len(result.failed_expectations)} failed expectations",
        )

    training, eval_prompts, heldout_prompts = _cross_split_items(loaded, row_checks)
    ngram = profile.data.contamination_ngram if profile else 13
    max_fraction = profile.data.contamination_max_fraction if profile else 0.0
    cross = [
        heldout_leak_check(training, [i for items in eval_prompts.values() for i in items]),
        ngram_contamination_check(training, heldout_prompts, n=ngram, max_fraction=max_fraction),
        near_duplicate_check(training, heldout_prompts, max_fraction=max_fraction),
        ids_unique_across_splits(loaded, row_checks),
        heldout_family_present(manifest, profile),
    ]
    report = ValidationReport(
        success=all(r.success for r in results) and all(c.success for c in cross),
        data_dir=data_dir,
        profile=profile.name if profile else None,
        datasets=results,
        cross_checks=cross,
        report_path=report_dir / REPORT_NAME,
        html_dir=html_dir if html_dir is not None and (html_dir / "index.html").is_file() else None,
        sandbox=sandbox,
    )
    report.write()
    if cache_dir is not None and report.success:
        _store_report(cache_dir, key, report)
    if raise_on_failure and not report.success:
        raise DataValidationError(report.one_line(), report=report.model_dump(mode="json"))
    return report


def _cache_key(data_dir: Path, profile: Profile | None, build_html: bool) -> str:
    from genbench_tasks.provenance import code_version

    profile_hash = profile.config_hash() if profile else None
    return content_key((data_dir / "datasets.json").read_bytes(), [profile_hash, code_version(), build_html])


def _cached_report(
    cache_dir: str | Path | None, key: str, data_dir: Path, report_dir: Path
) -> ValidationReport | None:
    """The passing report of identical inputs (every file was just re-hashed by read_dataset), if kept."""
    if cache_dir is None or not (Path(cache_dir) / key / REPORT_NAME).is_file():
        return None
    cached = read_model(Path(cache_dir) / key / REPORT_NAME, ValidationReport)
    report = cached.model_copy(
        update={
            "data_dir": data_dir,
            "report_path": report_dir / REPORT_NAME,
            "html_dir": None,
            "cached_from": str(Path(cache_dir) / key),
        }
    )
    report.write()
    log.info("validation: inputs unchanged (key %s): reusing the passing report from %s", key, cache_dir)
    return report


def _store_report(cache_dir: str | Path, key: str, report: ValidationReport) -> None:
    write_model(Path(cache_dir) / key / REPORT_NAME, report)


def _run_references(jobs: list[tuple[str, str, str, str]], workers: int | None) -> tuple[list, float]:
    """Sandbox results of the reference jobs, in order, and the seconds they took."""
    from genbench_tasks.scoring.sandbox import run_many

    started = time.monotonic()
    results = run_many(jobs, workers=workers)
    return results, time.monotonic() - started


def _cross_split_items(loaded, row_checks: dict[str, RowChecks]):
    """Training texts (each distinct text tuple once), held-out prompts per (family, split) (the RL file when
    there is one, else the SFT file), and the held-out-family subset."""
    training: list[TextItem] = []
    seen_training: set[tuple[str, ...]] = set()
    eval_prompts: dict[tuple[str, str], list[TextItem]] = {}
    heldout: dict[tuple[str, str], list[TextItem]] = {}
    for entry, family, _ in loaded:
        if entry.name not in row_checks:
            continue
        items = row_checks[entry.name].items
        if entry.split == "train":
            fresh = [i for i in items if i.texts not in seen_training]
            seen_training.update(i.texts for i in fresh)
            training.extend(fresh)
            continue
        key = (entry.family, entry.split)
        if entry.format == "rl" or key not in eval_prompts:
            eval_prompts[key] = items
            if family.role == "heldout":
                heldout[key] = items
    return training, eval_prompts, [i for items in heldout.values() for i in items]


def ids_unique_across_splits(loaded, row_checks: dict[str, RowChecks]) -> CrossCheckResult:
    """An id names one item: within a family (and format) it appears in one split only."""
    first_seen: dict[tuple[str, str, str], str] = {}
    clashes: list[dict] = []
    n_ids = 0
    for entry, _, _ in loaded:
        checks = row_checks.get(entry.name)
        if checks is None:
            continue
        for item in checks.items:
            if item.id.startswith("row") and item.id[3:].isdigit():
                continue  # no usable id (reported by the suites)
            key = (entry.family, entry.format, item.id)
            n_ids += 1
            other = first_seen.setdefault(key, entry.name)
            if other != entry.name:
                clashes.append({"id": item.id, "dataset": entry.name, "also_in": other})
    details = (
        f"{len(clashes)} ids appear in more than one split of their family "
        f"(e.g. {clashes[0]['id']} in {clashes[0]['also_in']} and {clashes[0]['dataset']})"
        if clashes
        else f"all {n_ids} ids are unique across the splits of their family"
    )
    return CrossCheckResult(
        name="ids_unique_across_splits",
        success=not clashes,
        details=details,
        stats={"ids": n_ids, "clashes": len(clashes)},
        sample_offending_rows=clashes[:MAX_SAMPLE_ROWS],
    )


def heldout_family_present(manifest: DatasetManifest, profile: Profile | None) -> CrossCheckResult:
    """Training data needs a held-out family's test split (else the leak and contamination checks pass
    trivially and the nightly measures no generalisation); with a profile, every dataset it builds is present."""
    present = {(e.family, e.split, e.format) for e in manifest.datasets}
    training = sorted({e.family for e in manifest.datasets if e.role == "train" and e.split == "train"})
    heldout = sorted({e.family for e in manifest.datasets if e.role == "heldout" and e.format == "rl"})
    problems = []
    if training and not heldout:
        registered = sorted(f.name for f in all_families() if f.role == "heldout")
        problems.append(
            f"training families {training} but no held-out family test split (expected one of {registered})"
        )
    missing = []
    if profile is not None:
        for name in profile.data.families:
            sizes = profile.data.sizes.get(name)
            for split in ("train", "val", "test"):
                if sizes is not None and getattr(sizes, split) > 0:
                    missing += [f"{name}/{split}" + ("" if f == "rl" else ".sft") for f in ("rl", "sft")
                                if (name, split, f) not in present]  # fmt: skip
        if missing:
            problems.append(f"profile {profile.name} builds {missing}, missing from datasets.json")
    details = "; ".join(problems) or (
        f"held-out families {heldout} present alongside training families {training}"
        if training
        else "no training families"
    )
    return CrossCheckResult(
        name="heldout_family_present",
        success=not problems,
        details=details,
        stats={"training_families": training, "heldout_families": heldout, "missing": missing},
    )
