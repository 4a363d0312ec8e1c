"""The artifact contract: layout, the one writer/reader/lock, and the metric registry."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from genbench_tasks.artifacts.io import (
    ArtifactError,
    file_lock,
    read_jsonl,
    read_model,
    read_optional,
    update_model,
    write_jsonl,
    write_model,
)
from genbench_tasks.artifacts.layout import PublishedLayout, WorkLayout, parse_seed_dir, run_key
from genbench_tasks.artifacts.metrics import METRICS, higher_is_better, metric_label, metric_spec, min_effect
from genbench_tasks.artifacts.run import RunManifest
from genbench_tasks.families import all_families
from tests.fixtures.rundir import run_manifest


def test_write_model_is_atomic_and_reads_back(tmp_path, monkeypatch):
    path = tmp_path / "deep" / "manifest.json"
    manifest = run_manifest(status="partial", missing_cells=["eval:0.9.1:seed=0"])
    write_model(path, manifest)
    assert read_model(path, RunManifest) == manifest
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no temp file left

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_model(path, manifest.model_copy(update={"status": "failed"}))
    monkeypatch.undo()
    assert read_model(path, RunManifest).status == "partial"  # the old file, whole
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]


def test_reader_errors_are_one_line(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        read_model(tmp_path / "nope.json", RunManifest)
    bad = tmp_path / "bad.json"
    bad.write_text('{"run_id": 1}')
    with pytest.raises(ArtifactError, match=r"bad.json: not a valid RunManifest \(run_id: .*more\)"):
        read_model(bad, RunManifest)
    assert read_optional(tmp_path / "nope.json", RunManifest) is None
    warnings: list[str] = []
    assert read_optional(bad, RunManifest, warnings) is None and "not a valid RunManifest" in warnings[0]
    lines = tmp_path / "x.jsonl"
    write_jsonl(lines, [run_manifest(run_id="a"), run_manifest(run_id="b")])
    assert [m.run_id for m in read_jsonl(lines, RunManifest)] == ["a", "b"]
    lines.write_text(lines.read_text() + "{}\n")
    with pytest.raises(ArtifactError, match=r"x.jsonl:3: not a valid RunManifest"):
        read_jsonl(lines, RunManifest)


def _add_cell(args: tuple[str, int]) -> None:
    path, i = args

    def update(current: RunManifest | None) -> RunManifest:
        assert current is not None
        return current.model_copy(update={"missing_cells": [*current.missing_cells, f"cell-{i}"]})

    update_model(Path(path), RunManifest, update)


def test_update_model_loses_no_concurrent_update(tmp_path):
    path = tmp_path / "manifest.json"
    write_model(path, run_manifest())
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_add_cell, [(str(path), i) for i in range(24)])
    assert sorted(read_model(path, RunManifest).missing_cells) == sorted(f"cell-{i}" for i in range(24))
    with file_lock(tmp_path / ".x.lock"), file_lock(tmp_path / ".y.lock"):  # independent locks nest
        pass


def test_layout_names_every_path(tmp_path):
    work = WorkLayout(tmp_path)
    layout = work.run("2026-11-20", "manual__a b")
    assert (
        layout.root
        == tmp_path / "runs" / "2026-11-20_manual__a-b"
        == tmp_path / "runs" / run_key("2026-11-20", "manual__a b")
    )
    cell = layout.eval_cell("0.9.1", 2)
    assert cell.path == layout.root / "eval" / "0.9.1" / "seed=2" and cell.label_and_seed() == ("0.9.1", 2)
    assert cell.samples("humaneval").name == "samples.humaneval.jsonl"
    assert layout.train_cell("sft").path == layout.root / "train" / "sft"
    assert work.cell("eval", "k").path == tmp_path / "cells" / "eval" / "k"
    for label, seed in (("0.9.1", 2), ("0.9.1", 10), ("sft", 0)):
        layout.eval_cell(label, seed).path.mkdir(parents=True)
    (layout.eval_dir / "0.9.1" / "not-a-seed").mkdir()
    (layout.eval_dir / "0.8.0").mkdir()
    (layout.eval_cell("sft", 0).samples("reasoning")).write_text("")
    assert {k: list(v) for k, v in layout.eval_cells().items()} == {"0.8.0": [], "0.9.1": [2, 10], "sft": [0]}
    assert [(lbl, s, f) for lbl, s, f, _ in layout.iter_samples()] == [("sft", 0, "reasoning")]
    assert parse_seed_dir("seed=7") == 7 and parse_seed_dir("seed=x") is None
    assert PublishedLayout.run_file("k", "report.html") == "runs/k/report.html"
    assert PublishedLayout.history_rows("k") == "history/k.jsonl"


def test_metric_registry():
    assert higher_is_better("success_rate") and not higher_is_better("reward_std")
    assert not higher_is_better("success_rate_std") and higher_is_better("pass@5")
    assert min_effect("bleu") == 1.0 and min_effect("pass@2") == 0.02 and min_effect("rouge") == 0.0
    assert metric_label("bleu") == "BLEU-4" and metric_spec("pass@5").label == "pass@5"
    assert not higher_is_better("latency_std") and higher_is_better("rouge")
    for family in all_families():  # families name their metrics as the registry does
        assert set(family.metrics) <= {n for n, m in METRICS.items() if m.per_run}
        assert set(family.primary_metrics) <= set(METRICS)
