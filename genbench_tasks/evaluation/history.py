"""The per-version history of nightly results, kept next to the reports.

Format (JSON Lines, one object per measurement, readable without this package; :class:`HistoryRow`)::

    {"night": "2026-11-20", "run_id": "scheduled__2026-11-20", "run_key": "2026-11-20_scheduled__2026-11-20",
     "version": "0.9.1", "seed": 0, "family": "code_generation", "role": "heldout",
     "metric": "success_rate", "value": 0.41,
     "items": "runs/2026-11-20_scheduled__2026-11-20/eval/0.9.1/seed=0/samples.code_generation.jsonl"}

``items`` is the item-level data of that run and family, relative to the publish prefix. Each nightly run
writes its rows to ``RUNDIR/history.jsonl`` and to ``<history>/<run_key>.jsonl``: the history is the folder
of these files (local: ``<work_dir>/history/``; published: ``s3://bucket/prefix/history/``). Writing a
run's file again replaces it, so appending and :func:`rebuild_history` (regenerates every file from the
run directories' ``manifest.json`` + ``summary.json``, local or published) are idempotent.

Reading (:func:`read_history`) accepts that folder (local or ``s3://``), a run directory, or one file
(``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``) whose rows have at least ``night`` (ISO date),
``version``, ``seed``, ``family``, ``metric``, ``value``. Several runs on one night: the last run (by
``run_key``) is that night's.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, field_validator

from genbench_tasks.artifacts.io import read_model, read_optional, write_bytes
from genbench_tasks.artifacts.layout import (
    RUN_HISTORY,
    RUN_MANIFEST,
    SUMMARY,
    PublishedLayout,
    RunLayout,
    WorkLayout,
)
from genbench_tasks.artifacts.run import RunManifest
from genbench_tasks.artifacts.summary import StudySummary
from genbench_tasks.errors import GenbenchError
from genbench_tasks.scoring.detection import Series

log = logging.getLogger(__name__)

HISTORY_DIR = PublishedLayout.HISTORY_DIR
RUN_HISTORY_NAME = RUN_HISTORY
REQUIRED = ("night", "version", "seed", "family", "metric", "value")
SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")


class HistoryRow(BaseModel):
    """One measurement: a metric of one (night, run, version, seed, family)."""

    night: str
    run_id: str | None = None
    run_key: str | None = None
    profile: str | None = None
    version: str
    seed: int
    family: str
    role: str | None = None
    metric: str
    value: float
    items: str | None = None

    @field_validator("night")
    @classmethod
    def _iso(cls, v: str) -> str:
        return date.fromisoformat(v).isoformat()


# ------------------------------------------------------------------------------------------- writing
def rows_from_run(rundir: str | Path) -> list[HistoryRow]:
    """History rows of one run directory (``manifest.json`` + ``summary.json``); [] without a summary."""
    layout = RunLayout(Path(rundir))
    manifest = read_model(layout.manifest, RunManifest)
    summary = read_optional(layout.summary, StudySummary)
    if summary is None or not manifest.date:
        return []
    roles = {name: fam.role for name, fam in summary.families.items()}
    out = []
    for rec in summary.runs:
        samples = layout.eval_cell(rec.version, rec.seed).samples(rec.family)
        items = (
            PublishedLayout.run_file(manifest.run_key, samples.relative_to(layout.root).as_posix())
            if samples.is_file()
            else None
        )
        for metric, value in sorted(rec.metrics.items()):
            if value is None or not math.isfinite(float(value)):
                continue
            out.append(
                HistoryRow(
                    night=manifest.date,
                    run_id=manifest.run_id,
                    run_key=manifest.run_key,
                    profile=manifest.profile,
                    version=rec.version,
                    seed=rec.seed,
                    family=rec.family,
                    role=roles.get(rec.family),
                    metric=metric,
                    value=float(value),
                    items=items,
                )
            )
    return out


def _write_rows(path: Path, rows: Iterable[HistoryRow]) -> Path:
    data = "".join(r.model_dump_json(exclude_none=True) + "\n" for r in rows).encode()
    try:
        return write_bytes(path, data)
    except OSError as exc:
        raise GenbenchError(f"cannot write {path}: {exc.strerror}") from exc


def record_run(rundir: str | Path, history_dir: str | Path | None = None) -> list[HistoryRow]:
    """Write the run's rows to ``RUNDIR/history.jsonl`` and, when given, ``history_dir/<run_key>.jsonl``."""
    layout = RunLayout(Path(rundir))
    rows = rows_from_run(rundir)
    _write_rows(layout.history_rows, rows)
    if history_dir is not None:
        _write_rows(Path(history_dir) / f"{read_model(layout.manifest, RunManifest).run_key}.jsonl", rows)
    return rows


def rebuild_history(runs: str | Path, out_dir: str | Path, *, endpoint_url: str | None = None) -> int:
    """Regenerate ``out_dir/<run_key>.jsonl`` for every run under ``runs`` (a local folder of run
    directories, or ``s3://bucket/prefix`` holding ``runs/<run_key>/``); returns the number of runs."""
    if str(runs).startswith("s3://"):
        import tempfile

        from genbench_tasks.s3_client import S3Store, S3Uri

        src = S3Uri.parse(str(runs))
        store = S3Store.from_boto3(endpoint_url)
        prefix = src.join("runs").key + "/"
        keys = store.list_keys(src.bucket, prefix)
        names = sorted({k[len(prefix) :].split("/", 1)[0] for k in keys if k.endswith("/summary.json")})
        with tempfile.TemporaryDirectory(prefix="gb-history-") as tmp:
            for name in names:
                rd = Path(tmp) / name
                for rel in (RUN_MANIFEST, SUMMARY):
                    got = store.get(src.bucket, f"{prefix}{name}/{rel}")
                    if got is not None:
                        write_bytes(rd / rel, got[0])
                _write_rows(Path(out_dir) / f"{name}.jsonl", rows_from_run(rd))
        return len(names)
    root = Path(runs)
    if not root.is_dir():
        raise GenbenchError(f"runs folder {root} does not exist")
    count = 0
    for manifest in sorted(root.glob(f"*/{RUN_MANIFEST}")):
        rows = rows_from_run(manifest.parent)
        if rows:
            _write_rows(Path(out_dir) / f"{rows[0].run_key}.jsonl", rows)
            count += 1
    return count


# ------------------------------------------------------------------------------------------- reading
def _frame(name: str, data: bytes) -> pd.DataFrame:
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(io.BytesIO(data))
        if suffix == ".csv":
            return pd.read_csv(io.BytesIO(data), dtype={"night": str, "version": str, "family": str})
        if suffix == ".json" and data.lstrip()[:1] == b"[":
            return pd.DataFrame(json.loads(data))
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        return pd.DataFrame(lines)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise GenbenchError(
            f"{name}: not readable as {suffix or 'JSON Lines'} ({str(exc).splitlines()[0]})"
        ) from exc


def _sources(source: str | Path, endpoint_url: str | None) -> list[tuple[str, bytes]]:
    text = str(source)
    if text.startswith("s3://"):
        from genbench_tasks.s3_client import S3Store, S3Uri

        uri = S3Uri.parse(text)
        store = S3Store.from_boto3(endpoint_url)
        if uri.key and Path(uri.key).suffix.lower() in SUFFIXES:
            got = store.get(uri.bucket, uri.key)
            if got is None:
                raise GenbenchError(f"no such object: {uri}")
            return [(text, got[0])]
        for prefix in (uri.join(HISTORY_DIR).key + "/", (uri.key + "/") if uri.key else ""):
            keys = sorted(
                k
                for k in store.list_keys(uri.bucket, prefix)
                if k.endswith(".jsonl") and "/" not in k[len(prefix) :]
            )
            if keys:
                return [(f"s3://{uri.bucket}/{k}", store.get(uri.bucket, k)[0]) for k in keys]
        raise GenbenchError(f"no history under {uri} (expected {uri.join(HISTORY_DIR)}/*.jsonl)")
    path = Path(text)
    if path.is_file():
        return [(text, path.read_bytes())]
    if path.is_dir():
        for folder, pattern in ((path / HISTORY_DIR, "*.jsonl"), (path, "*.jsonl"), (path, RUN_HISTORY_NAME)):
            files = sorted(folder.glob(pattern)) if folder.is_dir() else []
            if files:
                return [(str(f), f.read_bytes()) for f in files]
        raise GenbenchError(f"no history in {path} (expected *.jsonl files, or {HISTORY_DIR}/*.jsonl)")
    raise GenbenchError(f"history {text} does not exist")


def read_history(source: str | Path, *, endpoint_url: str | None = None) -> pd.DataFrame:
    """All measurements as a DataFrame with at least :data:`REQUIRED` columns (checked), one row per
    (night, version, seed, family, metric)."""
    frames = [df for name, data in _sources(source, endpoint_url) if len(df := _frame(name, data))]
    if not frames:
        raise GenbenchError(f"history {source} has no rows")
    df = pd.concat(frames, ignore_index=True)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise GenbenchError(
            f"history {source}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})"
        )
    df = df.dropna(subset=["night", "version", "seed", "family", "metric"])
    try:
        df["night"] = pd.to_datetime(df["night"].astype(str), format="ISO8601").dt.strftime("%Y-%m-%d")
    except (ValueError, TypeError) as exc:
        raise GenbenchError(f"history {source}: column 'night' must hold ISO dates ({exc})") from exc
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    seeds = pd.to_numeric(df["seed"], errors="coerce")
    if seeds.isna().any() or (seeds != seeds.round()).any():
        raise GenbenchError(f"history {source}: column 'seed' must hold integers")
    df["seed"] = seeds.astype(np.int64)
    for col in ("version", "family", "metric"):
        df[col] = df[col].astype(str)
    df = df[np.isfinite(df["value"].to_numpy(dtype=np.float64))]
    if "run_key" not in df.columns:
        df["run_key"] = df["run_id"] if "run_id" in df.columns else ""
    df["run_key"] = df["run_key"].fillna("").astype(str)
    if "profile" not in df.columns:
        df["profile"] = None
    # one run per (night, version): the last run_key of that night
    last = df.groupby(["night", "version"])["run_key"].transform("max")
    df = df[df["run_key"] == last]
    return df.drop_duplicates(subset=["night", "version", "seed", "family", "metric"], keep="last")


def series_from_history(
    df: pd.DataFrame, *, metrics: list[str] | None = None
) -> tuple[list[Series], list[str]]:
    """One :class:`Series` per (version, family, metric) to test: a known family's primary metrics, every
    metric of an unknown family; ``metrics`` narrows both. Returns (series, notes)."""
    from genbench_tasks.families import get_family

    notes: list[str] = []
    wanted: dict[str, set[str]] = {}
    for family, present in df.groupby("family")["metric"].unique().items():
        try:
            primary = set(get_family(str(family)).primary_metrics)
        except GenbenchError:
            primary = set(present)
            notes.append(f"family {family!r} is not registered: testing every metric in the history")
        chosen = primary & set(present)
        if metrics is not None:
            chosen &= set(metrics)
        wanted[str(family)] = chosen
    keep = df[[m in wanted.get(f, ()) for f, m in zip(df["family"], df["metric"], strict=True)]]
    if keep.empty:
        raise GenbenchError(
            "no metric to test: "
            + (
                f"none of {', '.join(metrics)} in the history"
                if metrics
                else "no primary metric in the history"
            )
        )
    keep = keep.sort_values(["version", "family", "metric", "night", "seed"], kind="stable")
    cols = {c: keep[c].to_numpy() for c in ("version", "family", "metric", "night", "seed", "value")}
    cols["run_key"] = keep["run_key"].to_numpy() if "run_key" in keep.columns else np.full(len(keep), "")
    out: list[Series] = []
    key = np.char.add(
        np.char.add(cols["version"].astype(str), "\x1f"),
        np.char.add(np.char.add(cols["family"].astype(str), "\x1f"), cols["metric"].astype(str)),
    )
    bounds = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        nights = cols["night"][a:b]
        cuts = np.flatnonzero(np.r_[True, nights[1:] != nights[:-1], True])
        out.append(
            Series(
                version=str(cols["version"][a]),
                family=str(cols["family"][a]),
                metric=str(cols["metric"][a]),
                nights=[str(nights[i]) for i in cuts[:-1]],
                values=[
                    cols["value"][a + i : a + j].astype(np.float64)
                    for i, j in zip(cuts[:-1], cuts[1:], strict=True)
                ],
                seeds=[
                    cols["seed"][a + i : a + j].astype(np.int64)
                    for i, j in zip(cuts[:-1], cuts[1:], strict=True)
                ],
                runs=[str(cols["run_key"][a + i]) for i in cuts[:-1]],
            )
        )
    return out, notes


def default_history_dir(work_dir: str | Path) -> Path:
    """The nightly's local history folder: ``<work_dir>/history``."""
    return WorkLayout(Path(work_dir)).history
