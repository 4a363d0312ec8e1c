"""The comparison's trainer section: two sides' PPO runs compared seed by seed (deterministic, no
statistics), and the profile's per-release ``verl_overrides`` that make a deliberate trainer change."""

from __future__ import annotations

import math

import pytest

from genbench_tasks.artifacts.cells import CellSpec
from genbench_tasks.artifacts.comparison import ComparisonFile
from genbench_tasks.artifacts.io import read_model, write_jsonl, write_model
from genbench_tasks.artifacts.layout import CellDir, RunLayout
from genbench_tasks.artifacts.training import TrainStep
from genbench_tasks.evaluation.compare import compare_versions, format_comparison
from genbench_tasks.evaluation.trajectories import compare_seed, compare_trainers, describe, train_cells
from genbench_tasks.profiles import load_profile
from tests.fixtures.rundir import make_rundir

PROFILE = load_profile("local-cpu").model_dump(mode="json")


def steps(changes: dict[int, dict] | None = None, n: int = 3) -> list[TrainStep]:
    """verl-like rows; ``changes`` = {step: {key: value}} applied on top."""
    rows = []
    for step in range(1, n + 1):
        row = {
            "training/global_step": step,
            "critic/rewards/mean": 0.1 * step,
            "critic/vf_loss": 1.0 / step,
            "actor/reward_kl_penalty": 0.0 if step == 1 else 0.01 * step,
            "actor/grad_norm": math.nan,
            "timing_s/step": 5.0 + step,
            "perf/throughput": 100.0,
            "actor/perf/cpu_memory_used_gb": 8.0,
        }
        row.update((changes or {}).get(step, {}))
        rows.append(TrainStep.model_validate(row))
    return rows


def cell(
    root, name: str, rows: list[TrainStep], *, sft: str = "cells/sft/k/checkpoint", **profile
) -> CellDir:
    c = CellDir(root / name)
    write_jsonl(c.train_metrics, rows)
    spec = CellSpec(
        kind="train",
        key=name,
        label=name,
        seed=0,
        profile={**PROFILE, **profile},
        data_dir="data",
        cell_dir=str(c.path),
        checkpoint_dir=sft,
    )
    write_model(c.spec, spec)
    return c


def test_same_runs_up_to_timing_are_identical(tmp_path):
    """Wall-clock, throughput and NaN figures never make two runs differ."""
    other = steps(
        {
            s: {"timing_s/step": 99.0, "perf/throughput": 3.0, "actor/perf/cpu_memory_used_gb": 12.5}
            for s in (1, 2, 3)
        }
    )
    result = compare_seed(0, cell(tmp_path, "a", steps()), cell(tmp_path, "b", other))
    assert result.verdict == "identical"
    assert result.first_differing_step is None and result.differing == []
    assert (result.steps_candidate, result.steps_baseline) == (3, 3)


def test_first_differing_step_and_the_figures_that_moved(tmp_path):
    changed = steps(
        {2: {"actor/reward_kl_penalty": 0.5, "critic/vf_loss": 0.1}, 3: {"critic/rewards/mean": 0}}
    )
    result = compare_seed(3, cell(tmp_path, "a", changed), cell(tmp_path, "b", steps()))
    assert result.verdict == "differs" and result.seed == 3
    assert result.first_differing_step == 2
    assert result.differing == ["actor/reward_kl_penalty", "critic/vf_loss"]
    assert result.reward_mean_candidate == result.reward_mean_baseline == pytest.approx(0.2)


def test_keys_one_release_logs_alone_are_listed_not_a_difference(tmp_path):
    extra = steps({s: {"actor/pg_clipfrac_lower": 0.0} for s in (1, 2, 3)})
    result = compare_seed(0, cell(tmp_path, "a", extra), cell(tmp_path, "b", steps()))
    assert result.verdict == "identical"
    assert result.only_candidate == ["actor/pg_clipfrac_lower"] and result.only_baseline == []


def test_runs_from_other_inputs_are_not_comparable(tmp_path):
    base = cell(tmp_path, "b", steps())
    other_sft = compare_seed(0, cell(tmp_path, "a", steps(), sft="cells/sft/other/checkpoint"), base)
    assert (other_sft.verdict, other_sft.note) == ("not comparable", "different SFT inits")
    settings = {**PROFILE["ppo"], "actor_lr": 1.0}
    other_ppo = compare_seed(0, cell(tmp_path, "c", steps(), ppo=settings), base)
    assert (other_ppo.verdict, other_ppo.note) == ("not comparable", "different training settings (ppo)")
    # the deliberate change is not an input difference: it is what the comparison is there to show
    overridden = cell(tmp_path, "d", steps({2: {"critic/vf_loss": 7.0}}), verl_overrides={"0.9.1": ["x=1"]})
    assert compare_seed(0, overridden, base).verdict == "differs"


def test_shorter_run_is_compared_over_the_common_steps(tmp_path):
    result = compare_seed(0, cell(tmp_path, "a", steps(n=2)), cell(tmp_path, "b", steps(n=3)))
    assert result.verdict == "identical" and result.note == "compared over the 2 common steps"
    empty = CellDir(tmp_path / "e")
    write_jsonl(empty.train_metrics, [])
    assert compare_seed(0, empty, cell(tmp_path, "f", steps())).verdict == "insufficient data"


def test_overall_verdict_over_seeds(tmp_path):
    same = {0: cell(tmp_path, "a0", steps()), 1: cell(tmp_path, "a1", steps())}
    base = {
        0: cell(tmp_path, "b0", steps()),
        1: cell(tmp_path, "b1", steps()),
        2: cell(tmp_path, "b2", steps()),
    }
    identical = compare_trainers(same, base)
    assert identical.verdict == "identical" and [s.seed for s in identical.seeds] == [0, 1]
    assert describe(identical) == "trainer: identical (2 seeds)"
    moved = {**same, 1: cell(tmp_path, "c1", steps({3: {"critic/vf_loss": 0.0}}))}
    differs = compare_trainers(moved, base)
    assert differs.verdict == "differs"
    assert describe(differs) == "trainer: differs (1/2 seeds differ); seed 1 from step 3: critic/vf_loss"
    assert compare_trainers({}, {}) is None
    assert compare_trainers(same, {}).verdict == "insufficient data"


def test_nightly_comparison_carries_the_trainer_section_into_the_report(tmp_path):
    """compare_versions (the nightly's detect step) writes it to comparison.json; the CLI table and the report
    show it."""
    from genbench_tasks.report.run import render_run_report

    rundir = make_rundir(tmp_path / "run", seeds=(0, 1))
    assert sorted(train_cells(rundir, "0.9.1")) == [0, 1]
    compare_versions(rundir, baseline="0.8.0")
    [comparison] = read_model(RunLayout(rundir).comparison, ComparisonFile).comparisons
    assert comparison.trainer is not None and comparison.trainer.verdict == "differs"  # random trajectories
    assert [s.first_differing_step for s in comparison.trainer.seeds] == [1, 1]
    assert (
        "trainer: differs (2/2 seeds differ); seed 0 from step 1: policy_loss, reward_mean"
        in format_comparison(comparison)
    )
    html = render_run_report(rundir)
    assert "Training, seed by seed" in html and "0.9.1 vs 0.8.0" in html


# ------------------------------------------------------------------------------------ verl_overrides


def test_verl_overrides_apply_to_their_release_only_and_last():
    from genbench_tasks.verl import build_overrides, make_run

    lr = "actor_rollout_ref.actor.optim.lr=0.005"
    profile = load_profile("gpu-small", {"verl_overrides": {"0.9.1": [lr]}})
    changed = build_overrides(
        profile, make_run(profile, "0.9.1", extra_overrides=["trainer.val_before_train=false"])
    )
    assert changed[-2:] == [
        lr,
        "trainer.val_before_train=false",
    ]  # after genbench's own; the run's extras last
    assert lr not in build_overrides(profile, make_run(profile, "0.8.0"))


@pytest.mark.parametrize("bad", ["actor_rollout_ref.actor.optim.lr 5e-3", "=5", "+=1", "a b=1"])
def test_verl_overrides_must_be_hydra_overrides(bad):
    from genbench_tasks.errors import GenbenchError

    with pytest.raises((GenbenchError, ValueError), match="is not a Hydra override"):
        load_profile("gpu-small", {"verl_overrides": {"0.9.1": [bad]}})
    assert load_profile("gpu-small", {"verl_overrides": {"0.9.1": ["~trainer.val_before_train", "+x.y=1"]}})
