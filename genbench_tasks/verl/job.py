"""One ``verl.trainer.main_ppo`` run (PPO + GAE with a critic, FSDP, KL in the reward) as a Ray job: on GPUs
with vLLM rollouts in one worker image per verl version; on CPU (``cluster.device: cpu``, the embedded
default) with the additions of a :class:`DeviceLayer` (:func:`genbench_tasks.verl_cpu.job_layer`: ``hf``
rollouts, FSDP2 on gloo) in this machine's environment.

* :func:`build_overrides`: the Hydra override list for one (profile, verl version, seed, data, output dir),
  with every key placed where *that* verl release reads it (see :mod:`.config` and docs/verl-versions.md).
* :func:`validate_run`: compose those overrides against the release's own config.
* :func:`merge_argv`: verl's FSDP -> HF model merger command.
* :func:`build_job_spec`: entrypoint + runtime_env (GPU: ``image_uri``; CPU: the layer's env vars, another
  release first on ``PYTHONPATH``) for the Ray launcher.

Output layout (``output_dir`` must be on storage shared by all nodes): ``state/`` = verl's FSDP checkpoints
(``trainer.default_local_dir``, resumed with ``trainer.resume_mode=auto``), ``checkpoint/`` = the merged
HF model, ``verl-metrics/attempt-<n>.jsonl`` = verl's file logger per attempt (merged into ``metrics.jsonl``
by the last step), ``hydra/attempt-<n>`` = the composed config of each attempt, ``data/`` = S3 inputs
staged for verl (it reads local/HDFS paths only).

The job's steps are ``genbench worker verl-preflight`` -> ``verl-main-ppo`` (:func:`run_main_ppo`) -> verl's
model merger -> ``verl-finish`` (:func:`check_merged_model`, :func:`collect_metrics`), run by the one worker
entry point (``genbench_tasks.cli.worker``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genbench_tasks.artifacts.datasets import DatasetManifest
from genbench_tasks.artifacts.io import read_model, write_jsonl, write_model
from genbench_tasks.artifacts.layout import TRAIN_METRICS
from genbench_tasks.artifacts.training import TrainStep, VerlLaunchRecord
from genbench_tasks.errors import GenbenchError
from genbench_tasks.families import training_families
from genbench_tasks.verl.config import (
    REWARD_FUNCTION,
    REWARD_MODULE,
    VerlConfigError,
    VerlConfigReport,
    check_overrides,
    check_runtime_env,
    first_on_python_path,
    normalize_reward_overrides,
    override,
    parse_version,
    rules_for,
)

log = logging.getLogger(__name__)

# verl FSDP checkpoints (global_step_N/{actor,critic}, latest_checkpointed_iteration.txt)
STATE_SUBDIR = "state"
MODEL_SUBDIR = "checkpoint"  # merged HF model (what evaluation loads)
DATA_SUBDIR = "data"  # staged S3 inputs
LAUNCH_RECORD = "verl_launch.json"
VERL_METRICS_SUBDIR = "verl-metrics"  # verl's file logger, one JSONL per attempt (it truncates on open)
PLACEHOLDER_ROOT = "/genbench-placeholder"
#: The worker entry point the job's first and last steps run through (genbench_tasks.cli.worker).
WORKER = "python -m genbench_tasks.cli worker"
_RUNTIME_REWARD_PATH = (
    '"$(python -c \'import importlib.util as u; print(u.find_spec("' + REWARD_MODULE + '").origin)\')"'
)


class VerlRun(BaseModel):
    """One training run: what varies between the (version x seed) jobs of a profile."""

    model_config = ConfigDict(extra="forbid")

    verl_version: str
    seed: int
    train_files: list[str] = Field(min_length=1)  # local/shared paths or s3:// URIs (staged into data/)
    val_files: list[str] = Field(min_length=1)
    output_dir: str  # shared storage: state/, checkpoint/, data/
    model_path: str | None = None  # init model (HF id or dir); default: the profile's model.path
    project_name: str = "genbench"
    experiment_name: str | None = None  # default: <profile>-verl<version>-seed<seed>
    reward_path: str | None = None  # default: pkg://genbench_tasks.rewards (0.7+), the module file before
    max_ckpt_to_keep: int | None = 2  # per role; resume needs only the latest
    extra_overrides: list[str] = Field(default_factory=list)  # appended last (reward keys normalised)

    @field_validator("verl_version")
    @classmethod
    def _supported(cls, v: str) -> str:
        parse_version(v)
        return v

    @field_validator("output_dir")
    @classmethod
    def _filesystem(cls, v: str) -> str:
        if "://" in v:  # a GenbenchError, not a ValueError: the CLI reports it in one line
            raise VerlConfigError(f"output_dir {v!r} must be a shared filesystem path (verl saves locally)")
        return v.rstrip("/") or "/"

    @property
    def state_dir(self) -> str:
        return f"{self.output_dir}/{STATE_SUBDIR}"

    @property
    def model_dir(self) -> str:
        return f"{self.output_dir}/{MODEL_SUBDIR}"

    def staged(self, uri: str) -> str:
        """Where verl reads ``uri`` from: S3 objects are staged under ``output_dir/data/<bucket>/<key>``."""
        if uri.startswith("s3://"):
            return f"{self.output_dir}/{DATA_SUBDIR}/{uri[len('s3://') :]}"
        if "://" in uri and not uri.startswith(("hdfs://", "file://")):
            raise VerlConfigError(f"unsupported data URI {uri!r} (use a shared path, s3:// or hdfs://)")
        return uri

    def stage_pairs(self) -> list[tuple[str, str]]:
        return [(u, self.staged(u)) for u in [*self.train_files, *self.val_files] if u.startswith("s3://")]


class DeviceLayer(BaseModel):
    """What a run on a non-GPU device adds (the CPU layer builds it: :func:`genbench_tasks.verl_cpu.job_layer`):
    Hydra overrides applied after the profile's, env vars for every verl process, and the directory of
    another verl release to put first on ``PYTHONPATH``."""

    model_config = ConfigDict(extra="forbid")

    overrides: list[str] = Field(default_factory=list)
    env_vars: dict[str, str] = Field(default_factory=dict)
    python_path: str | None = None


def on_cpu(profile: Any) -> bool:
    """``cluster.device: cpu``: verl's trainer through the CPU layer (genbench_tasks.verl_cpu)."""
    return profile.cluster.device == "cpu"


def rollout_name(profile: Any) -> str:
    return "hf" if on_cpu(profile) else "vllm"


def train_strategy(profile: Any) -> str:
    """FSDP2 on CPU (FSDP1 wants a device id), FSDP on GPUs."""
    return "fsdp2" if on_cpu(profile) else "fsdp"


def _require_layer(profile: Any, layer: DeviceLayer | None) -> None:
    if on_cpu(profile) and layer is None:
        raise VerlConfigError(
            f"profile {profile.name!r} trains on cluster.device=cpu: its jobs need the CPU layer "
            "(genbench_tasks.verl_cpu.job_layer)"
        )
    if layer is not None and not on_cpu(profile):
        raise VerlConfigError(f"profile {profile.name!r} runs on {profile.cluster.device}: no device layer")


def model_path_for(profile: Any, run: VerlRun) -> str:
    """The model verl initialises actor, reference and critic from."""
    path = run.model_path or (profile.model.path if profile.model.source == "hf" else None)
    if not path:
        raise VerlConfigError(
            f"profile {profile.name!r} uses a tiny model built by the SFT stage: pass model_path (its output dir)"
        )
    if path.startswith("s3://"):
        raise VerlConfigError(f"model_path {path!r}: verl loads local paths or HF ids, not s3://")
    return path


def reward_path_for(run: VerlRun) -> str:
    """``pkg://`` for releases with ``load_extern_object`` (0.7.0+); the module's file path before."""
    if run.reward_path:
        return run.reward_path
    if rules_for(run.verl_version).reward_pkg_path:
        return f"pkg://{REWARD_MODULE}"
    spec = importlib.util.find_spec(REWARD_MODULE)
    assert spec is not None and spec.origin
    return spec.origin


def build_overrides(profile: Any, run: VerlRun, layer: DeviceLayer | None = None) -> list[str]:
    """Hydra overrides for ``python -m verl.trainer.main_ppo``: the profile's, then the device layer's (CPU),
    then the profile's ``verl_overrides`` for this release, then ``run.extra_overrides`` (the last value of a
    key wins)."""
    _require_layer(profile, layer)
    rules = rules_for(run.verl_version)
    ppo, cluster = profile.ppo, profile.cluster
    model = model_path_for(profile, run)
    experiment = run.experiment_name or f"{profile.name}-verl{run.verl_version}-seed{run.seed}"
    items: list[tuple[str, Any]] = [
        # PPO + GAE with a critic; KL to the reference policy in the reward (fixed/adaptive controller)
        ("algorithm.adv_estimator", "gae"),
        ("algorithm.gamma", ppo.gamma),
        ("algorithm.lam", ppo.lam),
        ("algorithm.use_kl_in_reward", True),
        ("algorithm.kl_penalty", "kl"),
        ("algorithm.kl_ctrl.type", ppo.kl_ctrl),
        ("algorithm.kl_ctrl.kl_coef", ppo.kl_coef),
        ("algorithm.kl_ctrl.target_kl", ppo.kl_target),
        ("data.train_files", [run.staged(u) for u in run.train_files]),
        ("data.val_files", [run.staged(u) for u in run.val_files]),
        ("data.train_batch_size", ppo.rollout_batch_size),
        ("data.max_prompt_length", ppo.max_prompt_length),
        ("data.max_response_length", ppo.max_response_length),
        ("actor_rollout_ref.model.path", model),
        ("actor_rollout_ref.actor.strategy", train_strategy(profile)),
        ("actor_rollout_ref.actor.optim.lr", ppo.actor_lr),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", ppo.mini_batch_size),
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", cluster.ppo_micro_batch_size_per_gpu),
        ("actor_rollout_ref.actor.ppo_epochs", ppo.ppo_epochs),
        ("actor_rollout_ref.actor.clip_ratio", ppo.clip_ratio),
        ("actor_rollout_ref.actor.entropy_coeff", ppo.entropy_coeff),
        ("actor_rollout_ref.actor.use_kl_loss", False),
        (
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
            cluster.log_prob_micro_batch_size_per_gpu,
        ),
        ("actor_rollout_ref.rollout.name", rollout_name(profile)),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", cluster.tensor_parallel_size),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", cluster.gpu_memory_utilization),
        ("actor_rollout_ref.rollout.n", cluster.rollout_n),
        ("actor_rollout_ref.rollout.temperature", ppo.temperature),
        (
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
            cluster.log_prob_micro_batch_size_per_gpu,
        ),
        ("critic.strategy", train_strategy(profile)),
        ("critic.model.path", model),
        ("critic.optim.lr", ppo.critic_lr),
        ("critic.ppo_mini_batch_size", ppo.mini_batch_size),
        ("critic.ppo_micro_batch_size_per_gpu", cluster.ppo_micro_batch_size_per_gpu),
        ("critic.ppo_epochs", ppo.ppo_epochs),
        (f"{rules.reward_prefix}.path", reward_path_for(run)),
        (f"{rules.reward_prefix}.name", REWARD_FUNCTION),
        ("trainer.nnodes", cluster.nnodes),
        ("trainer.n_gpus_per_node", cluster.n_gpus_per_node),
        ("trainer.total_training_steps", ppo.steps),
        ("trainer.total_epochs", ppo.steps),  # an upper bound: the step budget ends the run
        ("trainer.save_freq", ppo.save_freq),
        ("trainer.test_freq", ppo.save_freq),
        ("trainer.default_local_dir", run.state_dir),
        ("trainer.resume_mode", "auto"),
        ("trainer.max_actor_ckpt_to_keep", run.max_ckpt_to_keep),
        ("trainer.max_critic_ckpt_to_keep", run.max_ckpt_to_keep),
        ("trainer.logger", ["console", "file"]),  # file: VERL_FILE_LOGGER_PATH, set by run_main_ppo
        ("trainer.project_name", run.project_name),
        ("trainer.experiment_name", experiment),
    ]
    overrides = [override(key, value) for key, value in items]
    for key in rules.seed_keys:  # data.seed is not in 0.6.0's schema: add it there
        prefix = "+" if key == "data.seed" and not rules.data_seed_in_schema else ""
        overrides.append(prefix + override(key, run.seed))
    if layer is not None:
        overrides += layer.overrides
    deliberate = [*profile.verl_overrides.get(run.verl_version, []), *run.extra_overrides]
    return overrides + normalize_reward_overrides(deliberate, run.verl_version)


def policy_expectations(profile: Any, run: VerlRun) -> dict[str, Any]:
    """What genbench requires of the composed config whatever ``extra_overrides`` say."""
    return {
        "algorithm.adv_estimator": "gae",
        "actor_rollout_ref.rollout.name": rollout_name(profile),
        "actor_rollout_ref.actor.strategy": train_strategy(profile),
        "critic.strategy": train_strategy(profile),
        "trainer.default_local_dir": run.state_dir,
        "trainer.resume_mode": "auto",
    }


# ------------------------------------------------------------------------------------------- inputs


def data_files(profile: Any, data_dir: str) -> tuple[list[str], list[str]]:
    """Train/val parquet of the profile's training families (``rl/<family>/<split>.parquet``; the data
    directory's datasets.json wins when it is readable from here)."""
    families = training_families(profile.data.families)
    manifest = Path(data_dir) / "datasets.json"
    if "://" not in data_dir and manifest.is_file():
        entries = read_model(manifest, DatasetManifest).datasets

        def pick(split: str) -> list[str]:
            return [
                f"{data_dir}/{e.path}"
                for e in entries
                if e.format == "rl" and e.split == split and e.family in families and e.rows > 0
            ]

        train, val = pick("train"), pick("val")
    else:

        def sized(family: str, split: str) -> bool:
            sizes = profile.data.sizes.get(family)
            return sizes is None or getattr(sizes, split) > 0

        train = [f"{data_dir}/rl/{f}/train.parquet" for f in families if sized(f, "train")]
        val = [f"{data_dir}/rl/{f}/val.parquet" for f in families if sized(f, "val")]
    if not train or not val:
        raise VerlConfigError(f"no RL train/val data for families {families} under {data_dir}")
    return train, val


def make_run(
    profile: Any,
    version: str,
    *,
    seed: int | None = None,
    data_dir: str | None = None,
    output_dir: str | None = None,
    model_path: str | None = None,
    extra_overrides: list[str] | None = None,
) -> VerlRun:
    """A run for ``profile``; unset paths become placeholders (enough to check the config, not to train)."""
    train, val = data_files(profile, data_dir or f"{PLACEHOLDER_ROOT}/data")
    if model_path is None and profile.model.source != "hf":
        model_path = f"{PLACEHOLDER_ROOT}/sft/checkpoint"
    return VerlRun(
        verl_version=version,
        seed=profile.seeds[0] if seed is None else seed,
        train_files=train,
        val_files=val,
        output_dir=output_dir or f"{PLACEHOLDER_ROOT}/train/{profile.name}-{version}",
        model_path=model_path,
        extra_overrides=list(extra_overrides or []),
    )


def validate_run(
    profile: Any,
    run: VerlRun | None = None,
    *,
    version: str | None = None,
    layer: DeviceLayer | None = None,
    native: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> VerlConfigReport:
    """Build the run's overrides (with the device ``layer`` on CPU) and check them against its verl release
    (see :func:`check_overrides`)."""
    if run is None:
        if version is None:
            raise GenbenchError("validate_run needs a run or a version")
        run = make_run(profile, version)
    elif version is not None and version != run.verl_version:
        raise GenbenchError(f"version {version} does not match the run's verl {run.verl_version}")
    report = check_overrides(
        run.verl_version,
        build_overrides(profile, run, layer),
        seed=run.seed,
        expect=policy_expectations(profile, run),
        native=native,
        cache_dir=cache_dir,
    )
    report.summary["profile"] = profile.name
    return report


# --------------------------------------------------------------------------------------- job pieces


def merge_argv(
    checkpoint_dir: str,
    step: int,
    target_dir: str,
    *,
    verl_version: str | None = None,
    python: str = "python",
) -> list[str]:
    """verl's FSDP -> HF merge (``verl.model_merger``, 0.4.1+) of ``<checkpoint_dir>/global_step_<step>/actor``."""
    if verl_version is not None:
        parse_version(verl_version)  # >= 0.6.0, so the merger CLI exists
    return [
        python, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
        "--local_dir", f"{checkpoint_dir.rstrip('/')}/global_step_{step}/actor", "--target_dir", target_dir,
    ]  # fmt: skip


class VerlJob(BaseModel):
    """Everything the Ray launcher submits for one run (``submit_kwargs()`` feeds ``submit_job``)."""

    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    entrypoint_num_cpus: float = 1.0
    #: verl resumes by itself (trainer.resume_mode=auto): retries need no extra argument. The entrypoint's
    #: last step (``finish``) tolerates a trailing ``--resume`` anyway.
    resume_arg: str | None = None
    verl_version: str
    seed: int
    overrides: list[str]
    merge_argv: list[str]
    state_dir: str
    model_dir: str
    image_uri: str | None = None  # GPU: the worker image of this verl version
    python_path: str | None = None  # CPU: the cached install of this verl version, first on PYTHONPATH
    #: what the image/environment must contain (Ray's image_uri cannot be combined with pip: it pins these)
    requirements: list[str]

    def submit_kwargs(self) -> dict[str, Any]:
        return {
            "entrypoint": self.entrypoint,
            "runtime_env": self.runtime_env,
            "metadata": self.metadata,
            "entrypoint_num_cpus": self.entrypoint_num_cpus,
        }


def _entrypoint(
    profile: Any, run: VerlRun, overrides: list[str], merge: list[str], python_path: str | None
) -> str:
    rules = rules_for(run.verl_version)
    stage = "".join(f" --stage {shlex.quote(src)} {shlex.quote(dst)}" for src, dst in run.stage_pairs())
    local = [
        run.staged(u) for u in [*run.train_files, *run.val_files] if not u.startswith(("s3://", "hdfs://"))
    ]
    if run.model_path and run.model_path.startswith("/"):
        local.append(run.model_path)
    require = "".join(f" --require {shlex.quote(path)}" for path in local)
    preflight = (
        f"{WORKER} verl-preflight --verl-version {run.verl_version} --output-dir {shlex.quote(run.output_dir)}"
        f" --device {profile.cluster.device}{stage}{require}"
    )
    runtime_reward = not rules.reward_pkg_path and not run.reward_path
    args = []
    for item in overrides:
        if runtime_reward and item.startswith(f"{rules.reward_prefix}.path="):
            # < 0.7.0 loads the reward by file path: take the worker image's own copy of the module
            args.append(f"{rules.reward_prefix}.path={_RUNTIME_REWARD_PATH}")
        else:
            args.append(shlex.quote(item))
    latest = shlex.quote(f"{run.state_dir}/latest_checkpointed_iteration.txt")
    private = " --private-ray" if on_cpu(profile) else ""
    main_ppo = (
        f"{WORKER} verl-main-ppo --output-dir {shlex.quote(run.output_dir)}{private} -- {' '.join(args)}"
    )
    train = f'{{ [ "$(cat {latest} 2>/dev/null)" = "{profile.ppo.steps}" ] || {main_ppo}; }}'
    finish = f"{WORKER} verl-finish --output-dir {shlex.quote(run.output_dir)}"
    steps = [preflight, train, shlex.join(merge), finish]
    if python_path:  # this verl release installed alone, ahead of the base environment
        steps.insert(0, first_on_python_path(python_path))
    return " && ".join(steps)


def build_job_spec(
    profile: Any,
    run: VerlRun,
    *,
    layer: DeviceLayer | None = None,
    env_vars: dict[str, str] | None = None,
    check: bool = True,
    native: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> VerlJob:
    """The Ray job for ``run``: preflight -> main_ppo (skipped when already complete) -> merge -> finish.

    ``check`` composes the overrides against that verl release first (fetching its wheel once). GPU: one
    worker image per verl version (``image_uri``). CPU (``layer``): this machine's environment with the
    layer's env vars; another verl release first on ``PYTHONPATH`` (``layer.python_path``).
    """
    if check:
        validate_run(profile, run, layer=layer, native=native, cache_dir=cache_dir)
    overrides = build_overrides(profile, run, layer)
    if profile.ppo.save_freq <= 0:
        raise VerlConfigError("ppo.save_freq must be > 0: the merge needs verl's final checkpoint")
    merge = merge_argv(run.state_dir, profile.ppo.steps, run.model_dir, verl_version=run.verl_version)
    runtime_env: dict[str, Any] = {}
    image = python_path = None
    if layer is not None:
        runtime_env["env_vars"] = dict(layer.env_vars)
        python_path = layer.python_path
        requirements = [f"verl=={run.verl_version}", "genbench"]
    else:
        image = profile.cluster.worker_image.format(verl_version=run.verl_version)
        runtime_env["image_uri"] = image
        requirements = [f"verl[vllm]=={run.verl_version}", "genbench"]
    if env_vars:
        runtime_env["env_vars"] = {
            **runtime_env.get("env_vars", {}),
            **{str(k): str(v) for k, v in env_vars.items()},
        }
    check_runtime_env(runtime_env, run.verl_version)
    return VerlJob(
        entrypoint=_entrypoint(profile, run, overrides, merge, python_path),
        runtime_env=runtime_env,
        metadata={
            "genbench_profile": profile.name,
            "verl_version": run.verl_version,
            "seed": str(run.seed),
            "experiment": run.experiment_name or f"{profile.name}-verl{run.verl_version}-seed{run.seed}",
        },
        verl_version=run.verl_version,
        seed=run.seed,
        overrides=overrides,
        merge_argv=merge,
        state_dir=run.state_dir,
        model_dir=run.model_dir,
        image_uri=image,
        python_path=python_path,
        requirements=requirements,
    )


# --------------------------------------------------------------------- the job's own steps (on the cluster)


def preflight(
    version: str,
    output_dir: str,
    stage: list[tuple[str, str]],
    require: list[str] | None = None,
    device: str = "cuda",
) -> dict[str, Any]:
    """First step of the job: the right verl installed (+ vLLM on cuda; on cpu the worker entry point checks
    the CPU layer first), reward importable, S3 inputs staged, local inputs present. Raises
    :class:`GenbenchError` (exit 2) before verl starts."""
    from importlib import metadata

    try:
        installed = metadata.version("verl")
    except metadata.PackageNotFoundError:
        installed = None
    if installed != version:
        where = "this environment" if device == "cpu" else "worker image"
        raise GenbenchError(f"{where} has verl {installed}, the job needs verl=={version}")
    vllm = None
    if device != "cpu":
        try:
            vllm = metadata.version("vllm")
        except metadata.PackageNotFoundError as exc:
            raise GenbenchError(f"worker image lacks vllm (needs verl[vllm]=={version})") from exc
    module = importlib.import_module(REWARD_MODULE)
    if not callable(getattr(module, REWARD_FUNCTION, None)):
        raise GenbenchError(f"{REWARD_MODULE}.{REWARD_FUNCTION} is missing on the worker")
    for src, dst in stage:
        _stage_s3(src, dst)
    missing = [path for path in require or [] if not os.path.exists(path)]
    if missing:
        raise GenbenchError(f"inputs missing on the worker: {', '.join(missing)}")
    record = VerlLaunchRecord(
        started=time.time(), verl=installed, vllm=vllm, device=device, host=os.uname().nodename
    )
    write_model(Path(output_dir) / LAUNCH_RECORD, record)
    return record.model_dump()


def _stage_s3(src: str, dst: str) -> None:
    """Copy one S3 object to shared storage (boto3 default credentials; AWS_ENDPOINT_URL for MinIO)."""
    from genbench_tasks.s3_client import s3_client

    bucket, _, key = src[len("s3://") :].partition("/")
    client = s3_client()
    size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    target = Path(dst)
    if target.is_file() and target.stat().st_size == size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    client.download_file(bucket, key, str(tmp))
    tmp.replace(target)


def check_merged_model(output_dir: str) -> tuple[Path, float]:
    """Last step: the merged HF model exists. Returns it and when the job started (its launch record)."""
    model_dir = Path(output_dir) / MODEL_SUBDIR
    if not (model_dir / "config.json").is_file():
        raise GenbenchError(f"no merged HF model in {model_dir} (verl.model_merger failed?)")
    record = Path(output_dir) / LAUNCH_RECORD
    started = read_model(record, VerlLaunchRecord).started if record.is_file() else time.time()
    return model_dir, started


def run_main_ppo(
    output_dir: str | os.PathLike,
    overrides: list[str],
    *,
    private_ray: bool,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    startup_retries: int = 2,
) -> int:
    """``python -m verl.trainer.main_ppo OVERRIDES`` as a child process; returns its exit code.

    Metrics go to ``output_dir/verl-metrics/attempt-<n>.jsonl`` (verl's file logger), Hydra's record of the
    composed config to ``output_dir/hydra/attempt-<n>``. ``private_ray`` (CPU): verl's own ``ray.init``
    starts a private single-node cluster, also inside a Ray job (whose ``RAY_ADDRESS`` is dropped): its own
    temp dir, a fresh auth token, listeners on 127.0.0.1; what it started is gone when this returns, and a
    killed attempt's leftovers are reaped by the next. SIGTERM/SIGINT are forwarded to the trainer. Its
    output goes to this process's stdout; when its private cluster does not come up in time (Ray waits a
    fixed 30 s for the raylet, too little on a loaded machine) it is started again, up to ``startup_retries``
    times, before any training ran.
    """
    metrics = Path(output_dir) / VERL_METRICS_SUBDIR
    metrics.mkdir(parents=True, exist_ok=True)
    for stale in metrics.glob("attempt-*.ray"):  # a killed attempt's private cluster
        _reap(Path(stale.read_text().strip()))
        stale.unlink()
    retries = startup_retries
    while True:
        rc, tail = _main_ppo_attempt(metrics, output_dir, overrides, private_ray, env, timeout)
        startup_failed = private_ray and any(RAY_STARTUP_TIMEOUT in line for line in tail)
        if rc == 0 or not startup_failed or retries == 0:
            return rc
        retries -= 1
        log.warning("main_ppo: the private Ray cluster did not start in time; starting it again")


#: what ``ray.init`` raises when a new local node's raylet does not register within its fixed 30 s
RAY_STARTUP_TIMEOUT = "The current node timed out during startup"


def _main_ppo_attempt(
    metrics: Path,
    output_dir: str | os.PathLike,
    overrides: list[str],
    private_ray: bool,
    env: dict[str, str] | None,
    timeout: float | None,
) -> tuple[int, list[str]]:
    """One run of the trainer child: (exit code, its last output lines)."""
    import collections
    import secrets
    import signal
    import subprocess
    import tempfile
    import threading

    attempt = len(list(metrics.glob("attempt-*.jsonl")))
    child_env = {
        **os.environ,
        **(env or {}),
        "VERL_FILE_LOGGER_PATH": str(metrics / f"attempt-{attempt}.jsonl"),
    }
    ray_dir: Path | None = None
    if private_ray:
        ray_dir = Path(tempfile.mkdtemp(prefix="gbverl-", dir="/tmp"))  # short: Ray's socket paths
        token = ray_dir / "auth_token"
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        (metrics / f"attempt-{attempt}.ray").write_text(str(ray_dir))
        for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_JOB_CONFIG_JSON_ENV_VAR"):
            child_env.pop(key, None)
        child_env.update(
            RAY_TMPDIR=str(ray_dir),
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(token),
            RAY_USAGE_STATS_ENABLED="0",
        )
    hydra_dir = Path(output_dir).resolve() / "hydra" / f"attempt-{attempt}"
    cmd = [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        *overrides,
        override("hydra.run.dir", str(hydra_dir)),
    ]
    log.info(
        "main_ppo (attempt %d, %s Ray): %s", attempt, "private" if private_ray else "cluster", shlex.join(cmd)
    )
    proc = subprocess.Popen(
        cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    tail: collections.deque[str] = collections.deque(maxlen=40)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        rc = proc.wait(timeout=timeout)
        reader.join(timeout=10)
        return rc, list(tail)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if ray_dir is not None:
            _reap(ray_dir)
            (metrics / f"attempt-{attempt}.ray").unlink(missing_ok=True)


def _reap(ray_dir: Path) -> None:
    """Kill what a private cluster left running (found by its temp dir in their command lines), then
    remove the temp dir."""
    import shutil

    import psutil

    marker = str(ray_dir)
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if p.pid != os.getpid() and any(marker in arg for arg in (p.info["cmdline"] or [])):
                procs.append(p)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=10)
    shutil.rmtree(ray_dir, ignore_errors=True)


def verl_logged(output_dir: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """What verl's file logger wrote, ``{step: metrics}``, merged over every attempt (a later attempt's value
    wins), validation-only rows (step 0: before the first update) included."""
    merged: dict[int, dict[str, Any]] = {}
    files = sorted(
        (Path(output_dir) / VERL_METRICS_SUBDIR).glob("attempt-*.jsonl"),
        key=lambda p: int(p.stem.split("-")[1]),
    )
    for path in files:
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line torn by a kill
                record = json.loads(line)  # verl's FileLogger: {"step": N, "data": {...}}
                merged.setdefault(int(record["step"]), {}).update(record["data"])
    return dict(sorted(merged.items()))


def verl_steps(output_dir: str | os.PathLike) -> list[TrainStep]:
    """verl's logged training metrics, one :class:`TrainStep` per step (:func:`verl_logged`). verl logs a
    step after checkpointing it: an attempt killed in between has no training metrics for that step (its
    retry logs it again)."""
    return [
        TrainStep.model_validate({**data, "step": step})
        for step, data in verl_logged(output_dir).items()
        if "critic/score/mean" in data or "critic/rewards/mean" in data  # training steps, not validation-only
    ]


def collect_metrics(output_dir: str | os.PathLike) -> Path | None:
    """Write ``output_dir/metrics.jsonl`` (one :class:`TrainStep` per step: what the report plots) from
    verl's file-logger output; None when verl logged nothing."""
    steps = verl_steps(output_dir)
    return write_jsonl(Path(output_dir) / TRAIN_METRICS, steps) if steps else None
