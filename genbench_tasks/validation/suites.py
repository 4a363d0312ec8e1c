"""Per-dataset Great Expectations 1.x suites, run directly on flattened pandas frames.

verl's RL parquet nests the prompt (a list of chat messages), the reward model and extra_info; GX checks
flat columns, so `flatten_rl` derives one column per checked field (prompt_text, ground_truth, id, ...).
The Arrow schema itself is checked separately against RL_SCHEMA / SFT_SCHEMA (`arrow_schema_failures`).
Great Expectations is imported lazily: the Airflow DAG imports this package at parse time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from genbench_tasks.artifacts.validation import MAX_SAMPLE_ROWS, FailedExpectation
from genbench_tasks.families import TaskFamily

DATA_DOCS_SITE = "genbench"

# Derived RL columns and the pandas dtype GX must observe ("str" is pandas 3's string dtype).
RL_COLUMNS: dict[str, str] = {
    "row": "int64",  # position in the parquet file, to point at offending rows
    "data_source": "str",
    "ability": "str",
    "system_text": "str",
    "prompt_text": "str",  # content of the user message
    "n_messages": "int64",
    "reward_style": "str",
    "ground_truth": "str",
    "split": "str",
    "index": "int64",
    "id": "str",
    "family": "str",
    "reference": "str",
}
SFT_COLUMNS: dict[str, str] = {
    "row": "int64",
    "id": "str",
    "data_source": "str",
    "prompt": "str",
    "response": "str",
}
_STRUCT_FIELDS = {
    "reward_model": {"style": "reward_style", "ground_truth": "ground_truth"},
    "extra_info": {
        "split": "split",
        "index": "index",
        "id": "id",
        "family": "family",
        "reference": "reference",
    },
}
# Character-length bounds: prompts must say something and fit a long-context prompt budget; answers
# (reference solutions, ground truth incl. HumanEval-style test code) must be non-empty and bounded.
LENGTH_BOUNDS: dict[str, tuple[int, int]] = {
    "prompt_text": (8, 16_000),
    "system_text": (1, 4_000),
    "ground_truth": (1, 50_000),
    "reference": (1, 50_000),
    "prompt": (8, 16_000),
    "response": (1, 50_000),
}


def arrow_schema_failures(actual: pa.Schema, expected: pa.Schema) -> list[FailedExpectation]:
    """Exact column set and types against the schema verl reads (list field names are not compared)."""
    missing = [f.name for f in expected if f.name not in actual.names]
    extra = [name for name in actual.names if name not in expected.names]
    wrong = [
        f"{f.name}: {actual.field(f.name).type} (expected {f.type})"
        for f in expected
        if f.name in actual.names and not actual.field(f.name).type.equals(f.type)
    ]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    if wrong:
        problems.append("wrong types: " + "; ".join(wrong))
    if not problems:
        return []
    return [FailedExpectation(expectation="arrow_schema_matches", details=", ".join(problems))]


def _user_text(messages: object, role: str) -> str | None:
    """The last `role` message's text; None for anything malformed (the row checks say what)."""
    if not isinstance(messages, list):
        return None
    texts = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == role]
    return texts[-1] if texts and isinstance(texts[-1], str) else None


def flatten_rl(table: pa.Table) -> pd.DataFrame:
    """verl RL rows -> one flat column per checked field; unknown or mistyped columns pass through as-is."""
    cols: dict[str, pa.Array] = {"row": pa.array(range(table.num_rows), pa.int64())}
    for name in table.column_names:
        column = table[name]
        if name == "prompt" and pa.types.is_list(column.type):
            messages = column.to_pylist()
            cols["system_text"] = pa.array([_user_text(m, "system") for m in messages], pa.string())
            cols["prompt_text"] = pa.array([_user_text(m, "user") for m in messages], pa.string())
            cols["n_messages"] = pa.array(
                [len(m) if isinstance(m, list) else None for m in messages], pa.int64()
            )
        elif name in _STRUCT_FIELDS and pa.types.is_struct(column.type):
            struct = column.combine_chunks()
            children = dict(zip([f.name for f in struct.type], struct.flatten(), strict=True))
            for field, derived in _STRUCT_FIELDS[name].items():
                if field in children:
                    cols[derived] = children[field]
        else:
            cols[name] = column.combine_chunks()
    return pa.table(cols).to_pandas()


def flatten_sft(table: pa.Table) -> pd.DataFrame:
    cols: dict[str, Any] = {"row": pa.array(range(table.num_rows), pa.int64())}
    cols.update({name: table[name].combine_chunks() for name in table.column_names})
    return pa.table(cols).to_pandas()


def build_expectations(
    fmt: str,
    family: TaskFamily,
    split: str,
    df: pd.DataFrame,
    min_rows: int = 1,
    max_rows: int | None = None,
) -> list:
    """The suite for one dataset. Column-level expectations only for columns present (the column-set
    expectation reports the absent ones); a value-set expectation stands in for the type check."""
    import great_expectations.expectations as gxe

    columns = RL_COLUMNS if fmt == "rl" else SFT_COLUMNS
    present = [c for c in columns if c in df.columns and c != "row"]
    allowed: dict[str, list] = {"data_source": [family.data_source]}
    if fmt == "rl":
        allowed |= {
            "ability": [family.ability],
            "family": [family.name],
            "split": [split],
            "reward_style": ["rule"],
        }
    exp: list = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(columns), exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=max_rows),
    ]
    for col in present:
        exp.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
        if col in allowed:
            exp.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=allowed[col]))
        else:
            exp.append(gxe.ExpectColumnValuesToBeOfType(column=col, type_=columns[col]))
        if col in LENGTH_BOUNDS:
            lo, hi = LENGTH_BOUNDS[col]
            exp.append(gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=lo, max_value=hi))
    unique = ["id", "prompt_text", "index"] if fmt == "rl" else ["id", "prompt"]
    exp += [gxe.ExpectColumnValuesToBeUnique(column=c) for c in unique if c in present]
    if "index" in present:
        exp.append(
            gxe.ExpectColumnValuesToBeBetween(column="index", min_value=0, max_value=max(len(df) - 1, 0))
        )
    return exp


class GXRunner:
    """One ephemeral GX context per validation run; optional local filesystem data-docs site."""

    def __init__(self, html_dir: Path | None = None):
        # GX logs hundreds of INFO lines at import; keep the CLI / Airflow log readable.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        sites = {}
        if html_dir is not None:
            sites[DATA_DOCS_SITE] = {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(html_dir).resolve()),
                },
            }
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            data_docs_sites=sites,
        )
        self.html_dir = html_dir
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.source = self.context.data_sources.add_pandas("genbench")

    def run(self, name: str, df: pd.DataFrame, expectations: list) -> tuple[int, list[FailedExpectation]]:
        """Validate `df`; with a data-docs site, through a Checkpoint whose UpdateDataDocsAction renders HTML."""
        import great_expectations as gx
        from great_expectations.checkpoint import UpdateDataDocsAction

        key = name.replace("/", ".")  # GX store keys must not contain "/"
        batch = self.source.add_dataframe_asset(key).add_batch_definition_whole_dataframe("all")
        suite = self.context.suites.add(gx.ExpectationSuite(name=key, expectations=expectations))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=key, data=batch, suite=suite)
        )
        index_cols = [c for c in ("row", "id") if c in df.columns]
        result_format = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": MAX_SAMPLE_ROWS,
            "unexpected_index_column_names": index_cols,
        }
        if self.html_dir is None:
            result = definition.run(batch_parameters={"dataframe": df}, result_format=result_format)
        else:
            checkpoint = self.context.checkpoints.add(
                gx.Checkpoint(
                    name=key,
                    validation_definitions=[definition],
                    actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[DATA_DOCS_SITE])],
                    result_format=result_format,
                )
            )
            result = next(iter(checkpoint.run(batch_parameters={"dataframe": df}).run_results.values()))
        failed = [_failure(r) for r in result.results if not r.success]
        return len(result.results), failed


SuiteResult = tuple[int, list[FailedExpectation]]

#: At most this many processes run suites: GX's per-expectation planning is the cost, and it is CPU-bound.
MAX_SUITE_PROCESSES = 4
_worker_runner: GXRunner | None = None


class SuitePool:
    """Runs the suites of many datasets, in forked processes when that can help, else here.

    GX spends ~0.05 s of CPU per expectation planning its metrics, whatever the rows, so the suites of a
    nightly's 14 datasets are CPU-bound: forked workers (each its own ephemeral context, GX imported once by
    the parent) use every core. It runs here instead when data docs are built (one site, one context), with
    one core or one dataset, and in a daemonic process (an Airflow worker), which may not have children.
    Create it before starting threads: the workers are forked at the first `submit`.
    """

    def __init__(self, html_dir: Path | None, processes: int | None = None, *, jobs: int | None = None):
        """``processes``: default one per usable core; never more than ``jobs`` (the suites to run) or
        MAX_SUITE_PROCESSES."""
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.processes = min(processes or cpus, jobs or MAX_SUITE_PROCESSES, MAX_SUITE_PROCESSES)
        self.html_dir = html_dir
        self._runner: GXRunner | None = None
        self._executor: ProcessPoolExecutor | None = None

    def _parallel(self) -> bool:
        return self.html_dir is None and self.processes > 1 and not multiprocessing.current_process().daemon

    def submit(self, name: str, df: pd.DataFrame, expectations: list) -> Callable[[], SuiteResult]:
        """Queue one suite; the returned callable gives its (expectations evaluated, failures)."""
        if self._parallel():
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker
                )
            return self._executor.submit(_run_in_worker, name, df, expectations).result
        return lambda: self._local().run(name, df, expectations)

    def _local(self) -> GXRunner:
        if self._runner is None:
            self._runner = GXRunner(self.html_dir)
        return self._runner

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SuitePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _init_worker() -> None:
    global _worker_runner
    _worker_runner = GXRunner()


def _run_in_worker(name: str, df: pd.DataFrame, expectations: list) -> SuiteResult:
    assert _worker_runner is not None
    return _worker_runner.run(name, df, expectations)


def _failure(result) -> FailedExpectation:
    """GX's ExpectationValidationResult -> our compact record."""
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.get("column")
    res: dict = result.result or {}
    exc = result.exception_info or {}
    if exc.get("raised_exception"):
        message = str(exc.get("exception_message") or "").splitlines()
        details = "could not be evaluated: " + (message[0] if message else "unknown error")
    elif "unexpected_count" in res:
        values = res.get("partial_unexpected_list") or []
        details = f"{res['unexpected_count']} of {res.get('element_count')} values unexpected"
        expected = _expected(config.type, kwargs)
        if expected:
            details += f" (expected {expected})"
        if any(v is not None and v == v for v in values):  # not just nulls / NaN
            details += f"; e.g. {_short(_plain(values[:3]))}"
    else:
        details = f"observed {_short(_plain(res.get('observed_value')))}"
        expected = _expected(config.type, kwargs)
        if expected:
            details += f", expected {expected}"
        mismatched = (res.get("details") or {}).get("mismatched")
        if mismatched:
            details += f" (missing {mismatched.get('missing') or []}, unexpected {mismatched.get('unexpected') or []})"
    rows = res.get("partial_unexpected_index_list") or []
    rows = [_plain(r) if isinstance(r, dict) else {"row": _plain(r)} for r in rows[:MAX_SAMPLE_ROWS]]
    rows = [{**{k: r[k] for k in ("row", "id") if k in r}, **r} for r in rows]  # row and id first
    return FailedExpectation(
        expectation=config.type, column=column, details=details, sample_offending_rows=rows
    )


def _expected(etype: str, kwargs: dict) -> str:
    if "value_set" in kwargs:
        return f"values in {list(kwargs['value_set'])}"
    if "type_" in kwargs:
        return f"type {kwargs['type_']}"
    if "column_set" in kwargs:
        return f"columns {sorted(kwargs['column_set'])}"
    if "min_value" in kwargs or "max_value" in kwargs:
        what = "length" if "length" in etype else "row count" if "row_count" in etype else "value"
        hi = kwargs.get("max_value")
        return f"{what} between {kwargs.get('min_value')} and {'unbounded' if hi is None else hi}"
    if etype.endswith("to_be_unique"):
        return "unique values"
    if etype.endswith("not_be_null"):
        return "no nulls"
    return ""


def _plain(value: Any) -> Any:
    """numpy / pandas scalars and containers -> JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN: pandas' missing string
        return None
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):  # numpy array
        return value.tolist()
    return str(value)


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
