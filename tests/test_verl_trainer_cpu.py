"""verl's own trainer (``python -m verl.trainer.main_ppo``) on CPU through the CPU layer: the overrides the
layer adds, the job spec (another release from its cached ``--target`` install), the nightly's PPO cells as
``main_ppo`` jobs, and (slow) real 2-step runs of verl 0.9.1 through the job entrypoint: a deliberate trainer
change shows in the comparison; determinism with one seed and resume after the Ray job is killed mid-run (one
second run does both): three ``main_ppo`` runs in all. 0.8.0's main_ppo on CPU, and the comparison telling
0.8.0 and 0.9.1 apart, are the nightly's (tests/test_local_deployment.py: both releases, run by Airflow).

The slow runs use a ~50k-parameter model and 2 PPO steps of 8 prompts; each is one ``main_ppo`` (~1.5-3 min
on 2 shared cores, ~4.5 GiB).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genbench_tasks import verl_cpu
from genbench_tasks.artifacts.io import read_model
from genbench_tasks.artifacts.training import VerlLaunchRecord
from genbench_tasks.errors import GenbenchError
from genbench_tasks.profiles import load_profile
from genbench_tasks.training.outputs import deterministic_metrics, read_metrics
from genbench_tasks.verl import (
    VerlConfigError,
    build_job_spec,
    build_overrides,
    installed_verl,
    make_run,
    validate_run,
    verl_steps,
)
from genbench_tasks.verl.job import LAUNCH_RECORD, MODEL_SUBDIR, VERL_METRICS_SUBDIR, VerlJob
from tests.fixtures.small_profile import MINI

VERSIONS = ["0.8.0", "0.9.1"]

# The miniature local-cpu on verl's trainer: 2 steps of 8 prompts, checkpoints every step.
CPU_MINI = {
    **MINI,
    "name": "mini-verl-cpu",
    "backend": "verl",
    "ppo": {**MINI["ppo"], "steps": 2, "save_freq": 1},
    "cluster": {"device": "cpu", "ppo_micro_batch_size_per_gpu": 4, "log_prob_micro_batch_size_per_gpu": 8},
}


def cpu_profile(extra: dict | None = None):
    return load_profile("local-cpu", {**CPU_MINI, **(extra or {})})


# ---- overrides and job spec (fast) -------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_cpu_overrides_compose_against_each_release(version):
    profile = cpu_profile()
    layer = verl_cpu.job_layer(version, 3, install=False)
    report = validate_run(profile, make_run(profile, version, seed=3), layer=layer)
    cfg = report.config()
    assert cfg.trainer.device == "cpu"
    assert cfg.actor_rollout_ref.rollout.name == "hf"
    assert {
        cfg.actor_rollout_ref.actor.strategy,
        cfg.actor_rollout_ref.ref.strategy,
        cfg.critic.strategy,
    } == {"fsdp2"}
    assert cfg.actor_rollout_ref.model.override_config.attn_implementation == "sdpa"
    assert cfg.critic.fsdp.mixed_precision.param_dtype == "fp32"
    assert cfg.actor_rollout_ref.actor.fsdp_config.full_determinism is True
    assert cfg.reward.custom_reward_function.path == "pkg://genbench_tasks.rewards"
    assert "file" in cfg.trainer.logger
    if version == "0.8.0":
        assert cfg.actor_rollout_ref.rollout.custom.seed == 3
        assert dict(cfg.ray_kwargs.ray_init.resources) == {"cpu": 1, "NPU": 1}
    else:
        assert cfg.actor_rollout_ref.rollout.seed == 3
        assert cfg.trainer.v1.sampler.custom_sampler.name == "DispatchOrderReplayBuffer"
        assert cfg.ray_kwargs.ray_init.num_gpus == 1


def test_a_cpu_profile_needs_the_layer_and_a_gpu_profile_refuses_it():
    profile = cpu_profile()
    with pytest.raises(VerlConfigError, match="need the CPU layer"):
        build_overrides(profile, make_run(profile, "0.9.1"))
    gpu = load_profile("gpu-small")
    with pytest.raises(VerlConfigError, match="no device layer"):
        build_overrides(gpu, make_run(gpu, "0.9.1"), verl_cpu.job_layer("0.9.1", 0, install=False))


def test_cpu_job_spec_runs_here_with_a_cached_release(tmp_path):
    profile = cpu_profile()
    run = make_run(profile, "0.8.0", output_dir=str(tmp_path / "out"))
    layer = verl_cpu.job_layer("0.8.0", run.seed, tmp_path / "cache")
    job = build_job_spec(profile, run, layer=layer, check=False)
    assert job.image_uri is None and "image_uri" not in job.runtime_env
    assert job.runtime_env["env_vars"]["VERL_USE_EXTERNAL_MODULES"] == "genbench_tasks.verl_cpu.hook"
    env_dir = tmp_path / "cache" / "verl-envs" / "verl-0.8.0"
    assert job.python_path == str(env_dir)
    assert (env_dir / "verl" / "version" / "version").read_text().strip() == "0.8.0"
    assert sorted(p.name for p in env_dir.iterdir() if not p.name.startswith(".")) == [
        "verl",
        "verl-0.8.0.dist-info",
    ]
    assert job.entrypoint.startswith(f"export PYTHONPATH={env_dir}${{PYTHONPATH:+:$PYTHONPATH}} && ")
    assert " verl-preflight --verl-version 0.8.0 " in job.entrypoint and "--device cpu" in job.entrypoint
    assert f"verl-main-ppo --output-dir {tmp_path / 'out'} --private-ray -- " in job.entrypoint
    assert " -m verl.model_merger merge --backend fsdp " in job.entrypoint
    here = installed_verl()
    same = build_job_spec(profile, make_run(profile, here), layer=verl_cpu.job_layer(here, 0), check=False)
    assert same.python_path is None and not same.entrypoint.startswith("export PYTHONPATH")


def test_nightly_ppo_cells_are_main_ppo_jobs(tmp_path):
    """A backend-verl CPU profile's PPO cells: verl's main_ppo job (0.8.0 from its cached install), the cell
    dir as the output dir (verl-finish marks the cell done); SFT and evaluation cells keep the one worker
    entry point, and `genbench worker run` refuses such a PPO cell."""
    from genbench_tasks.pipeline import nightly
    from genbench_tasks.pipeline.cells import run_cell

    overrides = {k: v for k, v in CPU_MINI.items() if k != "name"}
    params = nightly.NightlyParams(verl_versions=["0.8.0", "0.9.1"], seeds=1, profile_overrides=overrides)
    plan = nightly.build_data(nightly.plan_run(params, tmp_path, "manual-1", date="2026-12-01"))
    cells = nightly.plan_cells(plan)
    by_version = {}
    for cell in cells.train:
        if cell.verl_version is None:
            continue
        kwargs = by_version[cell.verl_version] = nightly.job_kwargs(plan, cell)
        assert f" verl-main-ppo --output-dir {cell.cell_dir} --private-ray -- " in kwargs["entrypoint"]
        assert kwargs["runtime_env"]["env_vars"]["VERL_PLATFORM"] == "cpu"
        assert "image_uri" not in kwargs["runtime_env"] and kwargs["entrypoint_num_gpus"] is None
        with pytest.raises(GenbenchError, match="main_ppo job"):
            run_cell(cell.cell_dir)
    assert by_version["0.8.0"]["entrypoint"].startswith("export PYTHONPATH=")
    assert not by_version["0.9.1"]["entrypoint"].startswith("export PYTHONPATH=")
    for cell in (cells.sft, *cells.eval):
        kwargs = nightly.job_kwargs(plan, cell)
        assert kwargs["entrypoint"] == f"python -m genbench_tasks.cli worker run {cell.cell_dir}"
        assert kwargs["runtime_env"] == {}


def test_the_nightly_checks_a_releases_config_once_per_code_and_profile(tmp_path, monkeypatch):
    """check_config composes and checks the CPU layer once; a later nightly with the same code, profile and
    release reads the kept report (no subprocess, no verl import); another profile checks again, and a failed
    check is never kept."""
    from genbench_tasks.pipeline import cells, nightly
    from genbench_tasks.verl.config import VerlConfigReport

    calls = []

    def fake_check(profile, run, **kwargs):
        calls.append((profile.config_hash(), run.verl_version))
        return VerlConfigReport(version=run.verl_version, ok=profile.ppo.steps != 3, overrides=["a=1"])

    monkeypatch.setattr(cells, "check_run_config", fake_check)
    overrides = {k: v for k, v in CPU_MINI.items() if k != "name"}

    def night(run_id: str, **extra):
        params = nightly.NightlyParams(
            verl_versions=["0.9.1"], seeds=1, profile_overrides={**overrides, **extra}
        )
        return nightly.check_verl_config(
            nightly.plan_run(params, tmp_path, run_id, date="2026-12-01"), "0.9.1"
        )

    first = night("manual-1")
    assert first["ok"] and night("manual-2") == first and len(calls) == 1
    assert len(list((tmp_path / "config-checks").glob("*.json"))) == 1
    night("manual-3", ppo={**CPU_MINI["ppo"], "steps": 1})
    assert len(calls) == 2 and calls[0][0] != calls[1][0]
    failing = {"ppo": {**CPU_MINI["ppo"], "steps": 3}}
    assert not night("manual-4", **failing)["ok"] and not night("manual-5", **failing)["ok"]
    assert len(calls) == 4 and len(list((tmp_path / "config-checks").glob("*.json"))) == 2


def test_verl_file_logger_rows_become_train_steps(tmp_path):
    """verl's FileLogger lines ({"step", "data"}) merged over attempts into TrainStep rows (a later attempt
    wins; a torn line is skipped; validation-only steps carry no training reward and are left out)."""
    import json

    logs = tmp_path / VERL_METRICS_SUBDIR
    logs.mkdir()
    rec = lambda step, score, **kw: json.dumps({"step": step, "data": {"critic/score/mean": score, **kw}})  # noqa: E731
    (logs / "attempt-0.jsonl").write_text(
        "\n".join(
            [json.dumps({"step": 0, "data": {"val-core/x": 0.1}}), rec(1, 0.2, **{"timing_s/step": 9.0})]
        )
        + '\n{"step": 2, "da'
    )
    (logs / "attempt-1.jsonl").write_text(rec(1, 0.25) + "\n" + rec(2, 0.3) + "\n")
    steps = verl_steps(tmp_path)
    assert [(s.step, s.reward_mean) for s in steps] == [(1, 0.25), (2, 0.3)]
    assert steps[0].step_time == 9.0  # verl's timing_s/step, kept from the first attempt


def test_main_ppo_restarts_a_private_cluster_that_did_not_come_up(tmp_path, monkeypatch):
    """Ray waits a fixed 30 s for a new node's raylet: on a loaded machine verl's ``ray.init`` can time out
    before any training; that attempt is started again (twice at most), any other failure is returned."""
    from genbench_tasks.verl import job as verl_job_module

    outcomes = iter(
        [
            (1, ["...", f"Exception: {verl_job_module.RAY_STARTUP_TIMEOUT} during startup. This could ..."]),
            (0, ["step:2 - ..."]),
        ]
    )
    calls = []

    def attempt(metrics, output_dir, overrides, private_ray, env, timeout):
        calls.append(private_ray)
        return next(outcomes)

    monkeypatch.setattr(verl_job_module, "_main_ppo_attempt", attempt)
    assert verl_job_module.run_main_ppo(tmp_path, [], private_ray=True) == 0 and len(calls) == 2

    calls.clear()
    monkeypatch.setattr(
        verl_job_module, "_main_ppo_attempt", lambda *a: calls.append(1) or (1, ["ValueError: bad config"])
    )
    assert verl_job_module.run_main_ppo(tmp_path, [], private_ray=True) == 1 and len(calls) == 1
    stuck = (1, [verl_job_module.RAY_STARTUP_TIMEOUT])
    calls.clear()
    monkeypatch.setattr(verl_job_module, "_main_ppo_attempt", lambda *a: calls.append(1) or stuck)
    assert verl_job_module.run_main_ppo(tmp_path, [], private_ray=True, startup_retries=2) == 1
    assert len(calls) == 3


# ---- main_ppo on CPU (slow) ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Data + shared SFT checkpoint (the PPO init) for the slow runs."""
    from genbench_tasks.data.build import build_datasets
    from genbench_tasks.training.sft import ensure_sft

    root = tmp_path_factory.mktemp("verl_cpu")
    profile = cpu_profile()
    build_datasets(profile, root / "data")
    ensure_sft(profile, root / "data", root / "sft")
    return {"root": root, "profile": profile, "data": root / "data", "sft": root / "sft" / "checkpoint"}


def job_for(ws, version: str, name: str, seed: int = 0, profile=None) -> VerlJob:
    profile = profile or ws["profile"]
    run = make_run(
        profile,
        version,
        seed=seed,
        data_dir=str(ws["data"]),
        output_dir=str(ws["root"] / "runs" / name),
        model_path=str(ws["sft"]),
    )
    from genbench_tasks.pipeline.cells import run_job

    return run_job(profile, run, check=False)


def run_job_here(job: VerlJob, log: Path, timeout: float = 1800) -> int:
    """The Ray job's entrypoint, run by bash in this environment (what the job driver does), output to ``log``."""
    from genbench_tasks.pipeline.cells import run_verl_job_here

    with open(log, "w") as out:
        return run_verl_job_here(job, printer=lambda line: print(line, file=out, flush=True), timeout=timeout)


def deterministic(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl rows without wall-clock, throughput and memory figures."""
    return deterministic_metrics(read_metrics(run_dir / "metrics.jsonl"))


@pytest.fixture(scope="module")
def runs(ws):
    """Lazily computed main_ppo runs keyed by name (tests share them)."""
    cache: dict[str, Path] = {}

    def get(name: str, version: str, seed: int = 0, profile=None) -> Path:
        if name not in cache:
            job = job_for(ws, version, name, seed, profile)
            rc = run_job_here(job, ws["root"] / f"{name}.log")
            assert rc == 0, (ws["root"] / f"{name}.log").read_text()[-4000:]
            cache[name] = Path(job.model_dir).parent
        return cache[name]

    return get


@pytest.mark.slow
def test_main_ppo_two_steps_on_cpu(runs, ws):
    """verl 0.9.1's trainer (PPO + GAE, critic, KL in the reward, our reward function) for 2 steps:
    checkpoints, metrics.jsonl from verl's file logger, the merged HF model our evaluation loads."""
    version = "0.9.1"
    out = runs(f"v{version}", version)
    launch = read_model(out / LAUNCH_RECORD, VerlLaunchRecord)
    assert launch.verl == version and launch.vllm is None and launch.device == "cpu"
    rows = read_metrics(out / "metrics.jsonl")
    assert [r.step for r in rows] == [1, 2]
    for row in rows:
        extra = row.model_extra or {}
        for key in ("critic/vf_loss", "actor/pg_loss", "actor/reward_kl_penalty"):
            assert key in extra, key
        assert 0 <= row.reward_mean <= 1  # genbench_tasks.rewards scored the rollouts
    assert rows[1].model_extra["actor/reward_kl_penalty"] != 0  # the actor moved away from the reference
    # rollout.calculate_log_probs is on by default since 0.9 and verl compares them: step 2 rolls out after
    # step 1's update, so the hf rollout got the new weights (its log-probs are the actor's, up to eager vs
    # sdpa attention)
    assert rows[1].model_extra["training/rollout_actor_probs_pearson_corr"] > 0.9999
    assert rows[1].model_extra["training/rollout_probs_diff_max"] < 0.05
    assert (out / "state" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert (out / "hydra" / "attempt-0" / ".hydra" / "config.yaml").is_file()  # not in the caller's cwd
    assert (out / "state" / "global_step_1" / "critic").is_dir()
    from genbench_tasks.evaluation.generation import PromptRequest, load_generator
    from genbench_tasks.profiles import EvalSettings

    gen = load_generator(out / MODEL_SUBDIR)
    [sample] = gen.generate(
        [PromptRequest(prompt_id="p", messages=[{"role": "user", "content": "What is 2 + 3?"}])],
        seed=0,
        settings=EvalSettings(samples_per_prompt=1, max_new_tokens=8),
    )
    assert sample.n_tokens > 0


@pytest.mark.slow
def test_a_deliberate_trainer_change_shows_in_the_comparison(runs, ws):
    """A profile's ``verl_overrides`` that changes the trainer for one version (10x the actor learning rate
    for 0.9.1) changes that version's update from step 1 on (same step-1 rollouts), its step-2 metrics and its
    weights, and the comparison's trainer section (what comparison.json and the report show) says so. (Its
    "identical" for two runs of one release with one seed is the resume test's; two releases' "differs" the
    nightly's, tests/test_local_deployment.py.)"""
    from genbench_tasks.artifacts.layout import CellDir
    from genbench_tasks.evaluation.trajectories import compare_seed

    v09 = runs("v0.9.1", "0.9.1")
    name = f"{MODEL_SUBDIR}/model.safetensors"
    lr = "actor_rollout_ref.actor.optim.lr=0.005"
    deliberate = ws["profile"].model_copy(update={"verl_overrides": {"0.9.1": [lr]}})
    changed = runs("v0.9.1-lr", "0.9.1", profile=deliberate)
    hydra = (changed / "hydra" / "attempt-0" / ".hydra" / "overrides.yaml").read_text()
    assert lr in hydra
    trainer = compare_seed(0, CellDir(changed), CellDir(v09))
    # step 1 already differs in what the update logs (the actor's lr and what it moved), not in its rollouts
    assert trainer.verdict == "differs" and trainer.first_differing_step == 1, trainer
    assert trainer.reward_mean_candidate == trainer.reward_mean_baseline  # both rolled out the SFT model
    assert "reward_mean" not in trainer.differing
    assert deterministic(changed)[1] != deterministic(v09)[1]
    assert (changed / name).read_bytes() != (v09 / name).read_bytes()


@pytest.mark.slow
@pytest.mark.integration
def test_a_second_run_with_one_seed_killed_and_resumed_equals_the_first_bit_for_bit(ray_head, ws, runs):
    """0.9.1 (v1 trainer, TransferQueue, the dispatch-order sampler), seed 0 a second time, as a main_ppo job
    on the embedded head: stopped once step 1 is checkpointed and logged, then retried (``-try1``); verl
    resumes (trainer.resume_mode=auto) from the step-1 checkpoint. Every logged metric of both attempts and
    the merged weights equal the uninterrupted first run's bit for bit (determinism with one seed, and a
    resume that changes nothing), and the comparison's trainer section says "identical"."""
    import time
    import uuid

    import psutil

    from genbench_tasks.artifacts.layout import CellDir
    from genbench_tasks.evaluation.trajectories import compare_seed
    from genbench_tasks.launch.ray_jobs import RayJobSpec

    reference = runs("v0.9.1", "0.9.1")
    job = job_for(ws, "0.9.1", "killed")
    out = Path(job.model_dir).parent
    spec = RayJobSpec(
        entrypoint=job.entrypoint,
        submission_id=f"verl-cpu-resume-{uuid.uuid4().hex[:8]}",
        runtime_env=job.runtime_env,
        entrypoint_num_cpus=1,
        resume_arg=None,  # verl resumes from its own checkpoints
    )
    launcher = ray_head.launcher()
    first = launcher.submit_or_attach(spec)
    # verl logs a step after checkpointing it: wait for step 1's training row, then stop the job (step 2
    # takes a few seconds more; were it checkpointed first, the retry would have nothing left to train)
    deadline = time.monotonic() + 1200  # ~2 min alone; the other pytest worker may run a nightly beside it
    while 1 not in {row.step for row in verl_steps(out)}:
        assert launcher.status(first) in ("PENDING", "RUNNING"), launcher.logs(first)[-3000:]
        assert time.monotonic() < deadline, "no step-1 metrics within 20 min"
        time.sleep(0.2)
    assert launcher.stop(first)
    while launcher.status(first) not in ("STOPPED", "FAILED", "SUCCEEDED"):
        time.sleep(0.5)
    assert launcher.status(first) == "STOPPED"
    assert (out / "state" / "latest_checkpointed_iteration.txt").read_text().strip() == "1"
    time.sleep(3)
    marker = str(out / "state")
    survivors = [
        p for p in psutil.process_iter(["cmdline"]) if any(marker in a for a in p.info["cmdline"] or [])
    ]
    assert not survivors, [p.info["cmdline"][:3] for p in survivors]
    assert not (out / MODEL_SUBDIR).exists()  # stopped before the merge

    second = launcher.submit_or_attach(spec)
    assert second == f"{spec.submission_id}-try1"
    outcome = launcher.wait(second, timeout_s=1800, on_log=None)
    assert outcome.succeeded, "\n".join(outcome.log_tail)
    assert len(list((out / VERL_METRICS_SUBDIR).glob("attempt-*.jsonl"))) == 2
    assert not list((out / VERL_METRICS_SUBDIR).glob("attempt-*.ray"))  # the killed attempt's cluster: reaped
    # step 1 from the killed attempt, step 2 from its retry
    assert [r["step"] for r in deterministic(out)] == [1, 2]
    assert deterministic(out) == deterministic(reference)
    name = "model.safetensors"
    assert (out / MODEL_SUBDIR / name).read_bytes() == (reference / MODEL_SUBDIR / name).read_bytes()
    assert compare_seed(0, CellDir(out), CellDir(reference)).verdict == "identical"


def test_check_config_runs_the_cpu_layer_checks_for_the_embedded_default():
    """`genbench check-config --profile local-cpu`: the layer's patch checks against the release's wheel, as
    its own line, after the Hydra composition (a failing patch is tests/test_verl_cpu_layer.py's case)."""
    code = "import sys; from genbench_tasks.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["check-config", "--profile", "local-cpu", "--verl-version", "0.8.0", "--no-native"]
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    layer = next(line for line in out.stdout.splitlines() if line.strip().startswith("cpu-layer"))
    assert " ok " in layer and "hf-rollout" in layer and "gloo-process-group" in layer
    assert "rollout                hf" in out.stdout and "strategy               fsdp2" in out.stdout
