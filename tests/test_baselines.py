"""The study's baseline rows: TRL PPO cells once per seed (not per verl version), label order, verl minus
baseline differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from genbench_tasks.labels import label_key, sort_labels
from genbench_tasks.pipeline.nightly import NightlyParams, job_kwargs, plan_cells, plan_run
from genbench_tasks.scoring import stats


def _cells(tmp_path, **params):
    plan = plan_run(NightlyParams(**params), tmp_path / "work", "run-1", "2026-12-01")
    plan = plan.model_copy(update={"data_hash": "d" * 16})
    return plan, plan_cells(plan)


def test_trl_cells_are_one_per_seed_and_independent_of_the_verl_versions(tmp_path):
    plan, cells = _cells(tmp_path / "a", verl_versions=["0.8.0", "0.9.1"], seeds=2)
    trl = [c for c in cells.train if c.label == "trl-ppo"]
    assert [(c.seed, c.verl_version) for c in trl] == [(0, None), (1, None)]
    assert (
        sorted(c.label for c in cells.eval) == ["0.8.0"] * 2 + ["0.9.1"] * 2 + ["sft"] * 2 + ["trl-ppo"] * 2
    )
    # Another version set, same data and code: the same TRL cells (cached across versions and nights).
    _, other = _cells(tmp_path / "a", verl_versions=["0.9.1"], seeds=2)
    assert {c.key for c in other.train if c.label == "trl-ppo"} == {c.key for c in trl}
    # The TRL job runs in the base environment: no verl pinned for it, whatever the baseline version.
    for cell in trl:
        kwargs = job_kwargs(plan, cell)
        assert kwargs["runtime_env"] == {} and "-train-trl-ppo-" in kwargs["submission_id"]


def test_baselines_parameter_selects_the_rows(tmp_path):
    _, cells = _cells(tmp_path, verl_versions=["0.9.1"], seeds=1, baselines=["sft"])
    assert [c.label for c in cells.train] == ["0.9.1"]
    assert sorted(c.label for c in cells.eval) == ["0.9.1", "sft"]
    _, cells = _cells(tmp_path / "b", verl_versions=["0.9.1"], seeds=1, baselines=["trl-ppo"])
    assert sorted(c.label for c in cells.eval) == ["0.9.1", "trl-ppo"]
    with pytest.raises(ValueError, match="baselines"):
        NightlyParams(baselines=["ppo"])


def test_labels_sort_baselines_first_then_versions_by_release():
    assert sort_labels(["0.10.0", "trl-ppo", "0.9.1", "sft", "0.9.1rc1", "custom"]) == [
        "sft",
        "trl-ppo",
        "0.9.1rc1",
        "0.9.1",
        "0.10.0",
        "custom",
    ]
    assert label_key("sft") < label_key("trl-ppo") < label_key("0.1")


def test_baseline_differences_match_hand_computed_means():
    rows = []
    values = {"sft": [0.1, 0.2, 0.3], "trl-ppo": [0.2, 0.3, 0.4], "0.9.1": [0.5, 0.6, 0.7]}
    for label, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append(
                stats.RunRecord(
                    version=label, family="code_generation", seed=seed, metrics={"success_rate": v}
                )
            )
    diffs = stats.baseline_differences(rows, ["sft", "trl-ppo"], metrics=("success_rate",))
    assert [(d.version, d.baseline) for d in diffs] == [("0.9.1", "sft"), ("0.9.1", "trl-ppo")]
    by_base = {d.baseline: d for d in diffs}
    assert by_base["sft"].diff == pytest.approx(0.4) and by_base["trl-ppo"].diff == pytest.approx(0.3)
    for d in diffs:
        assert d.ci_low <= d.diff <= d.ci_high and d.n_version == d.n_baseline == 3
        welch = sps.ttest_ind(values["0.9.1"], values[d.baseline], equal_var=False)
        assert d.p_value == pytest.approx(float(welch.pvalue))
    assert np.isfinite([d.ci_low for d in diffs]).all()


def test_production_trl_cell_is_a_one_gpu_cell_job_not_a_verl_trainer(tmp_path):
    """On a GPU profile TRL runs in the job's driver: one GPU, the cell entry point, the worker image."""
    plan, cells = _cells(tmp_path, profile="gpu-small", verl_versions=["0.9.1"], seeds=1)
    (trl,) = [c for c in cells.train if c.label == "trl-ppo"]
    (verl,) = [c for c in cells.train if c.label == "0.9.1"]
    trl_job, verl_job = job_kwargs(plan, trl), job_kwargs(plan, verl)
    assert trl_job["entrypoint_num_gpus"] == 1 and "verl-main-ppo" not in trl_job["entrypoint"]
    assert trl.cell_dir in trl_job["entrypoint"]
    assert "image_uri" in trl_job["runtime_env"]  # the GPU worker image, which ships trl
    assert verl_job["entrypoint_num_gpus"] is None and "verl-main-ppo" in verl_job["entrypoint"]
