"""benchmarks/bench_ppo_gain.py on verl file-logger output: step-0 against the last validation, per run and
across runs, whatever ``val_kwargs.n`` the runs validated with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ppo_gain.py"


def write_run(root: Path, name: str, n: int, before: float, after: float) -> Path:
    run = root / name
    (run / "verl-metrics").mkdir(parents=True)
    rows = []
    for step, value in ((0, before), (1, None), (2, after)):
        data = {"critic/score/mean": 0.5} if value is None else {}
        if value is not None:
            for family in ("rewriting", "reasoning"):
                data[f"val-core/genbench/{family}/acc/mean@{n}"] = value
                data[f"val-aux/genbench/{family}/reward/mean@{n}"] = value + 0.1
                data[f"val-core/genbench/{family}/acc/best@{n}/mean"] = 1.0  # not a mean over samples
        rows.append(json.dumps({"step": step, "data": data}))
    (run / "verl-metrics" / "attempt-0.jsonl").write_text("\n".join(rows) + "\n")
    return run


def run_bench(*runs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, runs)], capture_output=True, text=True)


def test_gain_per_run_and_its_interval_across_runs(tmp_path):
    runs = [write_run(tmp_path, f"s{i}", 4, 0.40, 0.40 + d) for i, d in enumerate((0.05, 0.10, 0.15))]
    out = run_bench(*runs)
    assert out.returncode == 0, out.stderr
    assert "s0 (steps 0->2): rewriting reward 0.500->0.550, rewriting success 0.400->0.450" in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("reasoning  success"))
    mean, interval = line.split()[2], line.split("[")[1]
    assert mean == "+0.100" and interval.startswith("+0.050")  # all three gains positive: CI above 0


def test_greedy_runs_and_one_run_without_interval(tmp_path):
    out = run_bench(write_run(tmp_path, "greedy", 1, 0.5, 0.25))
    assert out.returncode == 0, out.stderr
    assert "reasoning success 0.500->0.250" in out.stdout and "(one run: no interval)" in out.stdout


def test_a_run_without_step_0_validation_is_refused(tmp_path):
    run = tmp_path / "none"
    (run / "verl-metrics").mkdir(parents=True)
    (run / "verl-metrics" / "attempt-0.jsonl").write_text(json.dumps({"step": 1, "data": {}}) + "\n")
    out = run_bench(run)
    assert out.returncode == 2 and "no step-0 and final validation" in out.stderr


def test_the_experiments_are_local_cpu_with_verl_validation_sampled_like_the_evaluation():
    from genbench_tasks.profiles import load_profile

    deltas = sorted((SCRIPT.parent / "ppo_gain").glob("*.json"))
    assert deltas
    for path in deltas:
        profile = load_profile("local-cpu", json.loads(path.read_text()))  # genbench train --overrides
        assert profile.name == path.stem
        for version in profile.verl_versions:
            overrides = profile.verl_overrides[version]
            assert f"actor_rollout_ref.rollout.val_kwargs.temperature={profile.eval.temperature}" in overrides
            assert f"actor_rollout_ref.rollout.val_kwargs.n={profile.eval.samples_per_prompt}" in overrides
