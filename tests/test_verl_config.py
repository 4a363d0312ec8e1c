"""verl overrides composed against real verl releases' own Hydra configs (0.6.1, 0.7.1, 0.8.0, 0.9.1).

The wheels are fetched once into $GENBENCH_CACHE/verl-wheels (default ~/.cache/genbench) with
``pip download --no-deps``, so a fresh machine needs PyPI access on the first run only.

verl's *own* validation (a subprocess importing each release, ~13 s per version) is marked ``slow`` and runs in
``make test`` like everything else; the rest takes well under a minute once cached.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.version import Version

from genbench_tasks.errors import GenbenchError
from genbench_tasks.profiles import available_profiles, load_profile
from genbench_tasks.verl import config as vc
from genbench_tasks.verl import job as vl

VERSIONS = ["0.6.1", "0.7.1", "0.8.0", "0.9.1"]
SEED = 7


@pytest.fixture(scope="session")
def verl_releases() -> dict[str, Path]:
    """Each release's unzipped wheel, fetched once per machine (respects GENBENCH_CACHE)."""
    return {v: vc.ensure_verl_release(v) for v in VERSIONS}


def _run(profile, version, **kw) -> vl.VerlRun:
    return vl.make_run(profile, version, seed=SEED, **kw)


# ------------------------------------------------------------------------------- every profile x version


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("profile_name", available_profiles())
def test_every_profile_composes(verl_releases, profile_name, version):
    """Every shipped profile against every release: GPU profiles with vLLM and FSDP; CPU profiles (the
    embedded default) with the CPU layer, which supports verl 0.8.x and 0.9.x and refuses the others."""
    from genbench_tasks import verl_cpu

    profile = load_profile(profile_name)
    run = _run(profile, version)
    layer = None
    if vl.on_cpu(profile):
        if Version(version) < Version("0.8.0"):
            with pytest.raises(verl_cpu.VerlCPULayerError, match="supports verl 0.8.x, 0.9.x only"):
                verl_cpu.job_layer(version, SEED, install=False)
            return
        layer = verl_cpu.job_layer(version, SEED, install=False)
    report = vl.validate_run(profile, run, layer=layer)
    cfg = report.config()
    rules = vc.rules_for(version)

    assert report.ok and [c.name for c in report.checks][:4] == [
        "compose",
        "version-traps",
        "batch-rules",
        "reward-function",
    ]
    assert cfg.actor_rollout_ref.rollout.name == ("hf" if layer else "vllm")
    assert cfg.algorithm.adv_estimator == "gae" and cfg.algorithm.use_kl_in_reward is True
    assert cfg.actor_rollout_ref.actor.strategy == cfg.critic.strategy == ("fsdp2" if layer else "fsdp")
    assert cfg.critic.model.path == cfg.actor_rollout_ref.model.path == vl.model_path_for(profile, run)
    assert cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == profile.cluster.tensor_parallel_size
    assert cfg.trainer.n_gpus_per_node == profile.cluster.n_gpus_per_node
    assert cfg.trainer.nnodes == profile.cluster.nnodes
    assert cfg.data.train_batch_size == profile.ppo.rollout_batch_size
    assert cfg.trainer.total_training_steps == profile.ppo.steps
    assert cfg.trainer.default_local_dir == run.state_dir and cfg.trainer.resume_mode == "auto"
    assert list(cfg.trainer.logger) == ["console", "file"]  # file: the job's metrics.jsonl
    assert list(cfg.data.train_files) == run.train_files and list(cfg.data.val_files) == run.val_files
    # data.seed and every other seed key of this release carry the run seed
    assert cfg.data.seed == SEED
    for key in rules.seed_keys:
        assert vc._sel(cfg, key) == SEED, key
    # the reward function sits where this release reads it, and only there
    reward = vc._sel(cfg, rules.reward_prefix)
    assert reward.name == "compute_score" and reward.path
    if Version(version) >= Version("0.7.1"):
        assert reward.path == "pkg://genbench_tasks.rewards"
        assert all(v is None for v in cfg.custom_reward_function.values())
    else:
        assert Path(reward.path).name == "rewards.py" and "reward" not in cfg


def test_seed_keys_moved_between_versions(verl_releases):
    assert vc.rules_for("0.6.1").seed_keys == ("data.seed",)
    assert "critic.model.fsdp_config.seed" in vc.rules_for("0.7.1").seed_keys
    assert "critic.fsdp.seed" in vc.rules_for("0.8.0").seed_keys
    assert "actor_rollout_ref.rollout.seed" not in vc.rules_for("0.8.0").seed_keys
    assert "actor_rollout_ref.rollout.seed" in vc.rules_for("0.9.1").seed_keys
    for version in VERSIONS:  # the table matches the real configs: every seed key exists...
        keys = vc.known_keys(version)
        assert set(vc.rules_for(version).seed_keys) <= set(keys)
        # ... and no other key named *seed exists (besides the disabled reward model's rollout)
        seeds = {k for k in keys if k.rsplit(".", 1)[-1] in {"seed", "data_loader_seed"}}
        assert seeds - set(vc.rules_for(version).seed_keys) <= {"reward.reward_model.rollout.seed"}


def test_data_seed_is_added_where_the_schema_lacks_it():
    profile = load_profile("gpu-small")
    overrides = vl.build_overrides(profile, _run(profile, "0.6.0"))
    assert f"+data.seed={SEED}" in overrides  # 0.6.0 has no data.seed key (0.6.1+: null by default)
    assert f"data.seed={SEED}" in vl.build_overrides(profile, _run(profile, "0.6.1"))


# ----------------------------------------------------------------------------- renamed / removed keys


@pytest.mark.parametrize(
    ("version", "extra", "message"),
    [
        ("0.8.0", "trainer.use_legacy_worker_impl=auto", "removed in verl 0.8.0"),
        ("0.9.1", "trainer.use_legacy_worker_impl=auto", "removed in verl 0.8.0"),
        ("0.9.1", "critic.model.fsdp_config.param_offload=true", "renamed to 'critic.fsdp.param_offload'"),
        (
            "0.7.1",
            "critic.fsdp.param_offload=true",
            "before that it is 'critic.model.fsdp_config.param_offload'",
        ),
        ("0.9.1", "actor_rollout_ref.rollout.skip.enable=true", "renamed to 'skip.rollout.enable'"),
        ("0.6.1", "actor_rollout_ref.rollout.checkpoint_engine.backend=naive", "not in this release"),
    ],
)
def test_renamed_or_removed_key_fails_naming_key_and_version(verl_releases, version, extra, message):
    profile = load_profile("gpu-small")
    key = extra.split("=")[0]
    with pytest.raises(GenbenchError) as err:
        vl.validate_run(profile, _run(profile, version, extra_overrides=[extra]))
    text = str(err.value)
    assert f"verl {version}" in text and f"'{key}'" in text and message in text
    assert "\n" not in text


def test_removed_key_still_composes_where_it_exists(verl_releases):
    profile = load_profile("gpu-small")
    run = _run(profile, "0.7.1", extra_overrides=["trainer.use_legacy_worker_impl=disable"])
    assert vl.validate_run(profile, run).config().trainer.use_legacy_worker_impl == "disable"


def test_wrong_value_type_and_batch_rules_fail(verl_releases):
    profile = load_profile("gpu-small")
    with pytest.raises(GenbenchError, match=r"verl 0.9.1: 'data.train_batch_size' must be a number"):
        vl.validate_run(profile, _run(profile, "0.9.1", extra_overrides=["data.train_batch_size=abc"]))
    with pytest.raises(GenbenchError, match=r"verl 0.8.0: .*divisible by the 3 GPUs"):
        vl.validate_run(profile, _run(profile, "0.8.0", extra_overrides=["trainer.n_gpus_per_node=3"]))
    with pytest.raises(GenbenchError, match="Hydra rejected"):
        vc.check_overrides("0.9.1", ["data.train_files=[a,"], native=False)


def test_check_config_composes_a_releases_verl_overrides(verl_releases):
    """A misspelt deliberate change fails before any GPU time, naming the key and the release."""
    good = load_profile(
        "gpu-small", {"verl_overrides": {"0.9.1": ["actor_rollout_ref.actor.optim.lr=0.005"]}}
    )
    config = vl.validate_run(good, vl.make_run(good, "0.9.1")).config()
    assert config.actor_rollout_ref.actor.optim.lr == 0.005
    bad = load_profile(
        "gpu-small", {"verl_overrides": {"0.9.1": ["actor_rollout_ref.actor.optim.lrr=0.005"]}}
    )
    with pytest.raises(GenbenchError, match=r"verl 0.9.1: .*'actor_rollout_ref.actor.optim.lrr'"):
        vl.validate_run(bad, vl.make_run(bad, "0.9.1"))


# ---------------------------------------------------------------------------------------- the traps


@pytest.mark.parametrize("version", ["0.7.1", "0.8.0", "0.9.1"])
def test_legacy_reward_key_rejected_from_0_7_1(verl_releases, version):
    profile = load_profile("gpu-small")
    raw = vl.build_overrides(profile, _run(profile, version))
    if version == "0.9.1":  # Hydra itself accepts it (the legacy group still ships); genbench must not
        vc.compose(version, [*raw, "custom_reward_function.path=/x/rewards.py"])
    with pytest.raises(GenbenchError) as err:
        vc.check_overrides(version, [*raw, "custom_reward_function.path=/x/rewards.py"], native=False)
    assert f"verl {version}" in str(err.value) and "'custom_reward_function.path'" in str(err.value)
    assert "reward.custom_reward_function.path" in str(err.value)
    if Version(version) >= Version("0.9.0"):
        assert "silently ignored" in str(err.value)
    with pytest.raises(GenbenchError, match="custom_reward_function.name"):  # via the run's extra overrides
        vl.build_overrides(profile, _run(profile, version, extra_overrides=["custom_reward_function.name=f"]))


def test_new_reward_key_rejected_raw_and_translated_before_0_7_1(verl_releases):
    profile = load_profile("gpu-small")
    raw = vl.build_overrides(profile, _run(profile, "0.6.1"))
    with pytest.raises(GenbenchError) as err:
        vc.check_overrides("0.6.1", [*raw, "reward.custom_reward_function.name=f"], native=False)
    assert "verl 0.6.1" in str(err.value) and "'reward.custom_reward_function.name'" in str(err.value)
    assert "only exists from verl 0.7.1" in str(err.value)
    run = _run(profile, "0.6.1", extra_overrides=["reward.custom_reward_function.name=compute_score"])
    assert vl.build_overrides(profile, run)[-1] == "custom_reward_function.name=compute_score"
    assert vl.validate_run(profile, run).config().custom_reward_function.name == "compute_score"


@pytest.mark.parametrize("version", ["0.6.1", "0.9.1"])
def test_data_seed_and_rollout_name_are_mandatory(verl_releases, version):
    profile = load_profile("gpu-small")
    raw = vl.build_overrides(profile, _run(profile, version))
    assert vc.known_keys(version)["data.seed"] == "any"  # verl's own default is null: unseeded shuffle
    with pytest.raises(GenbenchError, match=rf"verl {version}: 'data.seed' is null"):
        vc.check_overrides(version, [o for o in raw if not o.startswith("data.seed=")], native=False)
    with pytest.raises(
        GenbenchError, match=rf"verl {version}: 'actor_rollout_ref.rollout.name' is mandatory"
    ):
        vc.check_overrides(version, [o for o in raw if ".rollout.name=" not in o], native=False)


def test_every_seed_key_must_carry_the_run_seed(verl_releases):
    profile = load_profile("gpu-small")
    raw = vl.build_overrides(profile, _run(profile, "0.9.1"))
    with pytest.raises(GenbenchError, match=r"verl 0.9.1: seed key 'actor_rollout_ref.rollout.seed' is 0"):
        vc.check_overrides("0.9.1", [*raw, "actor_rollout_ref.rollout.seed=0"], seed=SEED, native=False)


def test_genbench_policy_enforced_over_extra_overrides(verl_releases):
    profile = load_profile("gpu-small")
    run = _run(profile, "0.9.1", extra_overrides=["actor_rollout_ref.rollout.name=sglang"])
    with pytest.raises(
        GenbenchError, match="'actor_rollout_ref.rollout.name' is 'sglang'; genbench needs 'vllm'"
    ):
        vl.validate_run(profile, run)


def test_hydra_value_round_trips_odd_paths(verl_releases):
    odd = ["/data/seed=3/train.parquet", "/data/it's here/a b.parquet", "/data/1e5", "null", "s3:x"]
    cfg = vc.compose(
        "0.9.1", [vc.override("data.train_files", odd), vc.override("trainer.project_name", "123")]
    )
    assert list(cfg.data.train_files) == odd and cfg.trainer.project_name == "123"
    assert vc.hydra_value("vllm") == "vllm" and vc.hydra_value(1e-6) == "1e-06"


# ---------------------------------------------------------------------------------- job spec + merge


def test_merge_argv():
    assert vl.merge_argv("/ck/state/", 300, "/ck/checkpoint", verl_version="0.9.1") == [
        "python", "-m", "verl.model_merger", "merge", "--backend", "fsdp",
        "--local_dir", "/ck/state/global_step_300/actor", "--target_dir", "/ck/checkpoint",
    ]  # fmt: skip
    with pytest.raises(GenbenchError, match="not supported"):
        vl.merge_argv("/ck", 1, "/out", verl_version="0.4.0")


def test_job_spec_runtime_env(verl_releases):
    profile = load_profile("gpu-small")
    job = vl.build_job_spec(profile, _run(profile, "0.9.1", output_dir="/shared/cells/a"))
    assert job.runtime_env == {"image_uri": "genbench-worker:verl-0.9.1"}
    assert job.requirements[0] == "verl[vllm]==0.9.1" and job.resume_arg is None
    assert job.model_dir == "/shared/cells/a/checkpoint" and job.merge_argv[-1] == job.model_dir
    assert set(job.submit_kwargs()) == {"entrypoint", "runtime_env", "metadata", "entrypoint_num_cpus"}
    for key in ("VERL_FULL_DETERMINISM", "VLLM_BATCH_INVARIANT", "VERL_RL_INSIGHT_ENABLE", "PYTHONHASHSEED"):
        with pytest.raises(GenbenchError, match=key):
            vl.build_job_spec(profile, _run(profile, "0.9.1"), env_vars={key: "1"}, check=False)
    # before 0.9.0 verl only adds env vars that are not already set: no clash
    job = vl.build_job_spec(profile, _run(profile, "0.8.0"), env_vars={"VERL_FULL_DETERMINISM": "1"})
    assert job.runtime_env["env_vars"] == {"VERL_FULL_DETERMINISM": "1"}


@pytest.mark.parametrize("version", VERSIONS)
def test_reserved_env_vars_match_verl_source(verl_releases, version):
    """Every env var verl's get_ppo_ray_runtime_env sets unconditionally (after its 'already set' filter)."""
    source = (verl_releases[version] / "verl/trainer/constants_ppo.py").read_text()
    forwarded = set()
    for block in re.findall(r"for key in \(([^)]*)\):", source):
        forwarded |= set(re.findall(r'"([A-Z0-9_]+)"', block))
    if 'runtime_env["env_vars"][NVTX_INJECTION_ENV]' in source:
        forwarded.add("NVTX_INJECTION64_PATH")
    assert forwarded <= vc.rules_for(version).reserved_env_vars
    assert bool(forwarded) == (Version(version) >= Version("0.9.0"))


def _fake_python(tmp_path: Path) -> Path:
    """A `python` that logs its argv (JSON lines) and answers the reward find_spec query."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "python"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "if sys.argv[1:2] == ['-c']:\n"
        "    print('/image/site-packages/genbench_tasks/rewards.py'); sys.exit(0)\n"
        "with open(os.environ['FAKE_LOG'], 'a') as f: f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


@pytest.mark.parametrize("version", ["0.6.1", "0.9.1"])
def test_entrypoint_shell_round_trip(verl_releases, tmp_path, version):
    """Run the entrypoint with /bin/sh (as Ray does) and a fake python: the argv main_ppo gets composes."""
    profile = load_profile("gpu-small")
    out = tmp_path / "cell dir"
    run = _run(profile, version, data_dir="s3://bkt/run/seed=7/data", output_dir=str(out))
    job = vl.build_job_spec(profile, run, check=False)  # the argv main_ppo receives is composed below
    env = {
        **os.environ,
        "PATH": f"{_fake_python(tmp_path)}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "log"),
    }
    subprocess.run(["/bin/sh", "-c", job.entrypoint + " --resume"], env=env, check=True)
    calls = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert [c[:2] for c in calls] == [
        ["-m", "genbench_tasks.cli"],
        ["-m", "genbench_tasks.cli"],
        ["-m", "verl.model_merger"],
        ["-m", "genbench_tasks.cli"],
    ]
    pre, main_ppo, merge, fin = calls
    assert pre[2:4] == ["worker", "verl-preflight"] and pre[pre.index("--device") + 1] == "cuda"
    # verl-main-ppo runs `python -m verl.trainer.main_ppo OVERRIDES` (GPU: on the cluster's Ray, no private one)
    assert main_ppo[2:6] == ["worker", "verl-main-ppo", "--output-dir", str(out)] and main_ppo[6] == "--"
    train = ["-", "-", *main_ppo[7:]]
    assert pre[pre.index("--stage") + 1 : pre.index("--stage") + 3] == [
        "s3://bkt/run/seed=7/data/rl/rewriting/train.parquet",
        f"{out}/data/bkt/run/seed=7/data/rl/rewriting/train.parquet",
    ]
    assert merge == job.merge_argv[1:] and fin[2:] == [
        "worker",
        "verl-finish",
        "--output-dir",
        str(out),
        "--resume",
    ]
    rules = vc.rules_for(version)
    if rules.reward_pkg_path:
        assert train[2:] == job.overrides
    else:  # the image's own copy of the reward module, resolved at run time
        assert f"{rules.reward_prefix}.path=/image/site-packages/genbench_tasks/rewards.py" in train
    cfg = vc.compose(version, train[2:])
    assert cfg.trainer.default_local_dir == f"{out}/state" and cfg.data.train_files[0].startswith(
        f"{out}/data/"
    )

    # a finished training (latest checkpoint == total steps) is not re-run on retry
    (tmp_path / "log").unlink()
    (out / "state").mkdir(parents=True)
    (out / "state/latest_checkpointed_iteration.txt").write_text(str(profile.ppo.steps))
    subprocess.run(["/bin/sh", "-c", job.entrypoint], env=env, check=True)
    assert "verl-main-ppo" not in (tmp_path / "log").read_text()


def test_verl_job_for_a_pipeline_cell(verl_releases, tmp_path, capsys):
    from genbench_tasks.cli import main
    from genbench_tasks.pipeline.cells import CellSpec, verl_job, write_spec

    profile = load_profile("gpu-small")
    cell = CellSpec(
        kind="train",
        key="k" * 24,
        label="0.8.0",
        seed=2,
        verl_version="0.8.0",
        profile=profile.model_dump(mode="json"),
        data_dir="/shared/run/data",
        cell_dir=str(tmp_path / "cell"),
        checkpoint_dir="/shared/cells/sft/checkpoint",
    )
    job = verl_job(profile, cell)
    assert "actor_rollout_ref.model.path=/shared/cells/sft/checkpoint" in job.overrides
    assert "data.seed=2" in job.overrides and job.state_dir == f"{cell.cell_dir}/state"
    # the job's last step (the worker entry point) marks the cell done once the merged model is there
    write_spec(cell)
    with pytest.raises(GenbenchError, match="no merged HF model"):
        vl.check_merged_model(cell.cell_dir)
    assert main(["worker", "verl-finish", "--output-dir", cell.cell_dir]) == 2
    assert "no merged HF model" in capsys.readouterr().err and not cell.is_done()
    (Path(cell.cell_dir) / "checkpoint").mkdir()
    (Path(cell.cell_dir) / "checkpoint/config.json").write_text("{}")
    assert main(["worker", "verl-finish", "--output-dir", cell.cell_dir, "--resume"]) == 0
    assert cell.is_done()


def test_preflight_rejects_the_wrong_image(tmp_path):
    try:
        installed = metadata.version("verl")
    except metadata.PackageNotFoundError:
        installed = None
    with pytest.raises(GenbenchError, match=f"worker image has verl {installed}, the job needs verl"):
        vl.preflight("0.6.1", str(tmp_path), [])


# ---------------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from genbench_tasks.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_cli_ok_and_error(verl_releases):
    ok = _cli("check-config", "--profile", "paper", "--verl-version", "0.8.0", "--no-native")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK  paper @ verl 0.8.0") and "critic.fsdp.seed" in ok.stdout

    bad = _cli(
        "check-config", "--profile", "gpu-small", "--verl-version", "0.9.1", "--no-native",
        "--override", "custom_reward_function.path=/x.py",
    )  # fmt: skip
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genbench: error: verl 0.9.1:")
    assert "'custom_reward_function.path'" in lines[0]


def test_cli_print_and_help(verl_releases, capsys):
    from genbench_tasks.cli import main

    argv = ["check-config", "--profile", "gpu-small", "--verl-version", "0.6.1", "--no-native", "--print"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("# genbench check-config: profile gpu-small, verl 0.6.1, seed 0")
    assert "custom_reward_function:" in out and "  name: vllm" in out
    with pytest.raises(SystemExit) as exit_:
        main(["check-config", "--help"])
    assert exit_.value.code == 0 and "version-traps" in capsys.readouterr().out


# --------------------------------------------------------------------------- verl's own validation (slow)


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_verl_native_validation(verl_releases, version):
    profile = load_profile("gpu-small")
    report = vl.validate_run(profile, _run(profile, version), native=True)
    native = report.checks[-1]
    if version == "0.6.1":  # needs transformers<5: not importable in this environment
        assert native.status in {"ok", "skipped"}
    else:
        assert native.status == "ok", native.detail
        assert "validate_config" in native.detail


@pytest.mark.slow
def test_verl_native_validation_catches_what_composing_cannot(verl_releases):
    profile = load_profile("gpu-small")
    run = _run(profile, "0.9.1", extra_overrides=["actor_rollout_ref.actor.loss_agg_mode=bogus"])
    vl.validate_run(profile, run)  # a valid key with a valid type: composes
    with pytest.raises(
        GenbenchError, match=r"verl 0.9.1: verl's own config validation failed: .*loss_agg_mode"
    ):
        vl.validate_run(profile, run, native=True)
