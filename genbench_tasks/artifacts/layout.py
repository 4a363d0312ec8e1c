"""Where every artifact lives: the work directory, a run directory, its cells, and the published prefix.

The only module that knows the directory names (``eval/<label>/seed=<n>/``, ``train/...``) and file names;
everything else asks a :class:`RunLayout`, :class:`CellDir`, :class:`WorkLayout` or :class:`PublishedLayout`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# file names (kept stable: published runs are read back by later nights)
RUN_MANIFEST = "manifest.json"  # RunManifest
DATASET_MANIFEST = "datasets.json"  # DatasetManifest (in data/)
CELL_MANIFEST = "manifest.json"  # EvalManifest (eval cells) / TrainManifest (train cells)
EVAL_METRICS = "metrics.json"  # EvalMetrics
TRAIN_METRICS = "metrics.jsonl"  # one row per PPO step
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_REF = "checkpoint.json"  # CheckpointRef: where a collected cell's checkpoint stayed
CELL_SPEC = "cell.json"
CELL_DONE = "_SUCCESS"
SFT_RESULT = "sft.json"
VALIDATION_REPORT = "validation_report.json"  # ValidationReport (in validation/)
CELLS = "cells.json"
SUMMARY = "summary.json"  # StudySummary
COMPARISON = "comparison.json"  # ComparisonFile
VERDICTS = "verdicts.json"  # Detection
RUN_HISTORY = "history.jsonl"  # this run's history rows
REPORT = "report.html"
PUBLISHED = "published.json"  # PublishedManifest (object list of a published run)
INDEX = "index.json"
PUBLISH_RECORD = ".publish_result.json"  # PublishRecord (local, never uploaded)

_SEED_DIR = re.compile(r"^seed=(\d+)$")


def seed_dir_name(seed: int) -> str:
    return f"seed={seed}"


def parse_seed_dir(name: str) -> int | None:
    """``seed=<n>`` -> n, else None."""
    m = _SEED_DIR.match(name)
    return int(m.group(1)) if m else None


def samples_name(family: str) -> str:
    return f"samples.{family}.jsonl"


def safe_name(text: str) -> str:
    """Path- and key-safe form of a run id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-")[:80]


def run_key(date: str, run_id: str) -> str:
    """``<date>_<run_id>``: a run's directory name locally and its immutable prefix when published."""
    return f"{date}_{safe_name(run_id)}" if date else safe_name(run_id)


@dataclass(frozen=True)
class CellDir:
    """One cell's directory: a cache cell (``cells/<kind>/<key>``) or its copy in a run directory."""

    path: Path

    @property
    def manifest(self) -> Path:
        return self.path / CELL_MANIFEST

    @property
    def metrics(self) -> Path:
        return self.path / EVAL_METRICS

    @property
    def train_metrics(self) -> Path:
        return self.path / TRAIN_METRICS

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def checkpoint_ref(self) -> Path:
        return self.path / CHECKPOINT_REF

    @property
    def spec(self) -> Path:
        return self.path / CELL_SPEC

    @property
    def done_marker(self) -> Path:
        return self.path / CELL_DONE

    def samples(self, family: str) -> Path:
        return self.path / samples_name(family)

    def sample_files(self) -> dict[str, Path]:
        """family -> samples file present."""
        return {
            p.name[len("samples.") : -len(".jsonl")]: p for p in sorted(self.path.glob(samples_name("*")))
        }

    def label_and_seed(self) -> tuple[str, int] | None:
        """``(<label>, n)`` of a ``.../<label>/seed=<n>`` directory, else None."""
        seed = parse_seed_dir(self.path.name)
        return (self.path.parent.name, seed) if seed is not None and self.path.parent.name else None


@dataclass(frozen=True)
class RunLayout:
    """One run directory (``<work>/runs/<date>_<run_id>``)::

    manifest.json  data/datasets.json  validation/validation_report.json  validation/html/
    cells.json  train/sft/  train/<label>/seed=<n>/  eval/<label>/seed=<n>/
    summary.json  comparison.json  verdicts.json  history.jsonl  report.html
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    manifest = property(lambda self: self.root / RUN_MANIFEST)
    data_dir = property(lambda self: self.root / "data")
    dataset_manifest = property(lambda self: self.root / "data" / DATASET_MANIFEST)
    validation_dir = property(lambda self: self.root / "validation")
    validation_report = property(lambda self: self.root / "validation" / VALIDATION_REPORT)
    validation_html = property(lambda self: self.root / "validation" / "html")
    cells = property(lambda self: self.root / CELLS)
    eval_dir = property(lambda self: self.root / "eval")
    train_dir = property(lambda self: self.root / "train")
    summary = property(lambda self: self.root / SUMMARY)
    comparison = property(lambda self: self.root / COMPARISON)
    verdicts = property(lambda self: self.root / VERDICTS)
    history_rows = property(lambda self: self.root / RUN_HISTORY)
    report = property(lambda self: self.root / REPORT)
    publish_record = property(lambda self: self.root / PUBLISH_RECORD)

    def eval_cell(self, label: str, seed: int) -> CellDir:
        return CellDir(self.eval_dir / label / seed_dir_name(seed))

    def train_cell(self, label: str, seed: int | None = None) -> CellDir:
        """``train/<label>/seed=<n>``; the shared SFT stage (no seed) is ``train/sft``."""
        base = self.train_dir / label
        return CellDir(base if seed is None else base / seed_dir_name(seed))

    def eval_cells(self) -> dict[str, dict[int, CellDir]]:
        """label -> seed -> cell, for every ``eval/<label>/seed=<n>`` directory (sorted)."""
        return _cells(self.eval_dir)

    def train_cells(self) -> dict[str, dict[int, CellDir]]:
        """label -> seed -> cell, for every ``train/<label>/seed=<n>`` directory (sorted; not SFT)."""
        return _cells(self.train_dir)

    def iter_samples(self) -> Iterator[tuple[str, int, str, Path]]:
        """(label, seed, family, path) of every samples file."""
        for label, seeds in self.eval_cells().items():
            for seed, cell in seeds.items():
                for family, path in cell.sample_files().items():
                    yield label, seed, family, path


def _cells(base: Path) -> dict[str, dict[int, CellDir]]:
    out: dict[str, dict[int, CellDir]] = {}
    if not base.is_dir():
        return out
    for label_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        seeds = {
            seed: CellDir(d)
            for d in label_dir.iterdir()
            if d.is_dir() and (seed := parse_seed_dir(d.name)) is not None
        }
        out[label_dir.name] = dict(sorted(seeds.items()))
    return out


@dataclass(frozen=True)
class WorkLayout:
    """The nightly's work directory: ``runs/``, the content-addressed ``cells/``, ``history/`` and caches."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    runs = property(lambda self: self.root / "runs")
    cells = property(lambda self: self.root / "cells")
    history = property(lambda self: self.root / "history")
    validation_cache = property(lambda self: self.root / "validation-cache")
    config_checks = property(lambda self: self.root / "config-checks")

    def run(self, date: str, run_id: str) -> RunLayout:
        return RunLayout(self.runs / run_key(date, run_id))

    def cell(self, kind: str, key: str) -> CellDir:
        return CellDir(self.cells / kind / key)


class PublishedLayout:
    """Keys under the publish prefix (relative; joined to the bucket prefix by the publisher)::

    runs/<run_key>/...   index.json   latest/...   history/<run_key>.jsonl   history.html
    """

    INDEX = INDEX
    LATEST = "latest/"
    HISTORY_DIR = "history"
    HISTORY_PAGE = "history.html"

    @staticmethod
    def run_prefix(key: str) -> str:
        return f"runs/{key}/"

    @staticmethod
    def run_file(key: str, name: str) -> str:
        return f"runs/{key}/{name}"

    @staticmethod
    def history_rows(key: str) -> str:
        return f"history/{key}.jsonl"
