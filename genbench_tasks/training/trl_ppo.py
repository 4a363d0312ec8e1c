"""Backend `trl-ppo`: the study's "traditional PPO" row, trained by TRL's PPOTrainer (trl==1.12.0,
`trl.experimental.ppo`; PPO exists there in 1.0.0-1.12.0 and is gone from 1.13.0).

Same inputs as `verl-core`: the training families' train prompts (`common.training_prompts`: same length
filter and seeded `verl_core.train_max_samples` pool), the same SFT warm start (`ensure_sft`; policy,
frozen reference and critic all start from it, the critic a `*ForTokenClassification(num_labels=1)` with a
head seeded as verl-core seeds it), the same reward (`compute_score`, through `RuleReward`, the nn.Module
TRL's `get_reward()` calls as its reward model), the same seeds and the same outputs (`training/outputs.py`:
checkpoint/, metrics.jsonl, manifest.json), so `genbench eval --checkpoint RUN/checkpoint` evaluates it
unchanged. Its cell is (profile, data, seed): no verl version.

Hyper-parameters (`profile.ppo` = PPOSettings, `extra["verl_core"]` = CoreSettings -> PPOConfig):

    steps                  total_episodes = steps * rollout_batch_size (one PPO iteration per batch)
    rollout_batch_size     per_device_train_batch_size (1 process, gradient_accumulation_steps=1) and
                           local_rollout_forward_batch_size
    mini_batch_size        num_mini_batches = rollout_batch_size / mini_batch_size (must divide)
    ppo_epochs             num_ppo_epochs
    actor_lr, critic_lr    learning_rate = actor_lr; TRL has one optimizer and lr for policy + value, so we
    *_weight_decay,        hand it ours: AdamW with one param group per model (lr, weight decay) that clips
    grad_clip              each group's grad norm (TRL's PPO loop does not clip); constant lr (TRL: linear)
    gamma, lam             gamma, lam
    clip_ratio             cliprange
    cliprange_value        cliprange_value
    kl_coef                kl_coef (KL in the reward, as verl-core's use_kl_in_reward)
    kl_penalty             kl/k1 -> kl_estimator "k1"; low_var_kl/k3 -> "k3" (TRL does not clamp it)
    temperature            temperature (TRL adds 1e-7)
    max_response_length    response_length, stop_token="eos"

Not in TRL (an error unless at verl-core's default-off value): kl_ctrl="adaptive", entropy_coeff != 0,
critic_warmup > 0, top_p < 1, loss_agg_mode != "token-mean". Ignored: kl_target, kl_horizon (fixed KL),
clip_ratio_c (TRL has no dual clip), save_freq (no mid-run state: a killed run restarts). TRL-only knobs
(`extra["trl_ppo"]`, TrlSettings): vf_coef, whiten_rewards, missing_eos_penalty, use_cpu, and GPU memory
sizing that leaves the algorithm unchanged (bf16, gradient_checkpointing, rollout_forward_batch_size).
docs/trl-baseline.md lists what TRL treats differently (score position, value loss mask, data order).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genbench_tasks.artifacts.io import ArtifactError, jsonl_line, read_model, write_model
from genbench_tasks.artifacts.training import TrainManifest, TrainStep
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key
from genbench_tasks.profiles import Profile
from genbench_tasks.provenance import package_versions
from genbench_tasks.training.common import (
    RLRow,
    derived_seed,
    deterministic_torch,
    seed_everything,
    training_prompts,
)
from genbench_tasks.training.outputs import (
    CHECKPOINT_DIR,
    MANIFEST_FILE,
    METRICS_FILE,
    VERSIONED_PACKAGES,
    TrainResult,
    datasets_record,
    deterministic_metrics,
    git_revision,
    hostname,
    peak_rss_mb,
    read_metrics,
    resolve_init,
    reward_first_last,
    save_checkpoint,
    sft_record,
    train_time_s,
)
from genbench_tasks.training.ppo_core import CoreSettings, core_settings, load_critic, load_policy

log = logging.getLogger(__name__)

BACKEND = "trl-ppo"
TRL_VERSION = "1.12.0"  # the pin in pyproject.toml: the last release with trl.experimental.ppo
PACKAGES = (*VERSIONED_PACKAGES, "trl", "accelerate", "datasets")
KL_ESTIMATORS = {"kl": "k1", "k1": "k1", "low_var_kl": "k3", "k3": "k3"}
# Profile fields that cannot change a baseline run (its cell is profile x data x seed).
_NOT_RUN_INPUTS = ("name", "description", "verl_versions", "seeds", "baseline_version", "baselines", "eval")


class TrlSettings(BaseModel):
    """TRL knobs verl has no counterpart for; override with `profile.extra["trl_ppo"]`."""

    model_config = ConfigDict(extra="forbid")

    # verl trains its critic on the plain value loss with its own optimizer; with one AdamW param group per
    # model, vf_coef = 1 is that (TRL's default is 0.1).
    vf_coef: float = 1.0
    whiten_rewards: bool = False  # TRL default; verl does not whiten rewards
    missing_eos_penalty: float | None = None  # TRL default: no penalty (verl has none)
    # None: CPU unless the profile is a GPU one (backend "verl"); the CPU run is the deterministic one.
    use_cpu: bool | None = None
    # GPU sizing (memory only, the algorithm is unchanged): bf16 weights and activations, gradient
    # checkpointing, and rollouts/forward passes in chunks of this many sequences (None: the whole batch).
    bf16: bool = False
    gradient_checkpointing: bool = False
    rollout_forward_batch_size: int | None = Field(default=None, ge=1)


def trl_settings(profile: Profile) -> TrlSettings:
    try:
        return TrlSettings.model_validate(profile.extra.get("trl_ppo", {}))
    except ValidationError as exc:
        raise GenbenchError(
            f"invalid extra.trl_ppo in profile {profile.name!r}: {_first_error(exc)}"
        ) from exc


def _core(profile: Profile) -> CoreSettings:
    try:
        return core_settings(profile)
    except ValidationError as exc:
        raise GenbenchError(
            f"invalid extra.verl_core in profile {profile.name!r}: {_first_error(exc)}"
        ) from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"


def check_settings(profile: Profile) -> None:
    """Raise a one-line GenbenchError for settings TRL's PPO cannot reproduce."""
    ppo, core, extra = profile.ppo, _core(profile), trl_settings(profile)
    bad = []
    if extra.bf16 and _use_cpu(profile):
        bad.append("extra.trl_ppo.bf16 is for GPU runs (the CPU run is the fp32, deterministic one)")
    forward = extra.rollout_forward_batch_size
    if forward is not None and ppo.rollout_batch_size % forward:
        bad.append(
            f"extra.trl_ppo.rollout_forward_batch_size={forward} must divide "
            f"ppo.rollout_batch_size={ppo.rollout_batch_size}"
        )
    if ppo.steps < 1:
        bad.append(f"ppo.steps={ppo.steps} must be >= 1")
    if ppo.rollout_batch_size < 1 or ppo.mini_batch_size < 1:
        bad.append("ppo.rollout_batch_size and ppo.mini_batch_size must be >= 1")
    elif ppo.rollout_batch_size % ppo.mini_batch_size:
        bad.append(
            f"ppo.rollout_batch_size={ppo.rollout_batch_size} is not a multiple of "
            f"ppo.mini_batch_size={ppo.mini_batch_size}"
        )
    if ppo.kl_ctrl != "fixed":
        bad.append(f"ppo.kl_ctrl={ppo.kl_ctrl!r} (TRL has a fixed KL coefficient only)")
    if ppo.entropy_coeff != 0:
        bad.append(f"ppo.entropy_coeff={ppo.entropy_coeff} (TRL's PPO has no entropy bonus)")
    if ppo.temperature <= 0:
        bad.append(f"ppo.temperature={ppo.temperature} must be > 0 (TRL samples)")
    if core.kl_penalty not in KL_ESTIMATORS:
        bad.append(f"verl_core.kl_penalty={core.kl_penalty!r} (TRL has k1 and k3 only)")
    if core.loss_agg_mode != "token-mean":
        bad.append(f"verl_core.loss_agg_mode={core.loss_agg_mode!r} (TRL's loss is a token mean)")
    if core.critic_warmup:
        bad.append(f"verl_core.critic_warmup={core.critic_warmup} (TRL updates actor and critic together)")
    if core.top_p < 1:
        bad.append(f"verl_core.top_p={core.top_p} (TRL samples with top_p=1)")
    if bad:
        raise GenbenchError(f"profile {profile.name!r} cannot run on trl-ppo: {'; '.join(bad)}")


def resolved_config(profile: Profile, seed: int) -> dict[str, Any]:
    """Everything a baseline run depends on besides the data and the code (its cell identity)."""
    dumped = profile.model_dump(mode="json")
    for key in _NOT_RUN_INPUTS:
        dumped.pop(key, None)
    return {
        "backend": BACKEND,
        "profile": dumped,
        "verl_core": _core(profile).model_dump(mode="json"),
        "trl_ppo": trl_settings(profile).model_dump(mode="json"),
        "trl_version": _installed("trl"),
        "seed": seed,
    }


def _installed(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _use_cpu(profile: Profile) -> bool:
    flag = trl_settings(profile).use_cpu
    return profile.backend != "verl" if flag is None else flag


def ppo_config(profile: Profile, seed: int, output_dir: str | Path):
    """The PPOConfig of a run (the mapping in the module docstring)."""
    PPOConfig, _ = _trl()
    return PPOConfig(**ppo_config_arguments(profile, seed, output_dir))


def ppo_config_arguments(profile: Profile, seed: int, output_dir: str | Path) -> dict[str, Any]:
    """PPOConfig's arguments (checkable without the hardware they ask for: bf16 needs a GPU to build)."""
    check_settings(profile)
    ppo, core, extra = profile.ppo, _core(profile), trl_settings(profile)
    return dict(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        use_cpu=_use_cpu(profile),
        bf16=extra.bf16,
        fp16=False,
        gradient_checkpointing=extra.gradient_checkpointing,
        learning_rate=ppo.actor_lr,
        lr_scheduler_type="constant",
        per_device_train_batch_size=ppo.rollout_batch_size,
        gradient_accumulation_steps=1,
        local_rollout_forward_batch_size=extra.rollout_forward_batch_size or ppo.rollout_batch_size,
        num_mini_batches=ppo.rollout_batch_size // ppo.mini_batch_size,
        total_episodes=ppo.steps * ppo.rollout_batch_size,
        num_ppo_epochs=ppo.ppo_epochs,
        response_length=ppo.max_response_length,
        stop_token="eos",
        temperature=ppo.temperature,
        kl_coef=ppo.kl_coef,
        kl_estimator=KL_ESTIMATORS[core.kl_penalty],
        cliprange=ppo.clip_ratio,
        cliprange_value=core.cliprange_value,
        vf_coef=extra.vf_coef,
        gamma=ppo.gamma,
        lam=ppo.lam,
        whiten_rewards=extra.whiten_rewards,
        missing_eos_penalty=extra.missing_eos_penalty,
        num_sample_generations=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        push_to_hub=False,
    )


def _trl():
    """(PPOConfig, PPOTrainer) of the installed trl, without its experimental-API notice."""
    try:
        from trl.import_utils import TRLExperimentalWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TRLExperimentalWarning)
            from trl.experimental.ppo import PPOConfig, PPOTrainer
    except ImportError as exc:
        raise GenbenchError(
            f"backend trl-ppo needs trl=={TRL_VERSION} (pip install 'genbench[train]'): {exc}"
        ) from exc
    return PPOConfig, PPOTrainer


# ---- the rule-based "reward model" -------------------------------------------------------------------


class _ScoreBackbone(torch.nn.Module):
    """What `get_reward()` runs as the backbone: scores each prompt+response with `compute_score` and
    returns the score, broadcast over positions, as the last hidden state (the head is the identity)."""

    def __init__(self, tokenizer, pool: Sequence[tuple[RLRow, list[int]]]) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.prompts: dict[tuple[int, ...], RLRow] = {}
        for row, ids in pool:
            other = self.prompts.setdefault(tuple(ids), row)
            if (other.data_source, other.ground_truth) != (row.data_source, row.ground_truth):
                raise GenbenchError(
                    f"prompt {row.extra_info.get('id', '?')} appears twice with different ground truths"
                )
        self.lengths = sorted({len(k) for k in self.prompts}, reverse=True)
        self.records: list[dict[str, Any]] = []

    def _split(self, ids: list[int], mask: list[int]) -> tuple[RLRow, list[int]]:
        start = mask.index(1) if 1 in mask else len(mask)
        for n in self.lengths:
            row = self.prompts.get(tuple(ids[start : start + n]))
            if row is not None and all(mask[start : start + n]):
                rest = mask[start + n :]
                end = start + n + (rest.index(0) if 0 in rest else len(rest))
                return row, ids[start + n : end]
        raise GenbenchError("reward adapter: a scored sequence does not start with a training prompt")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any):
        from genbench_tasks.rewards import compute_score

        scores = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.long().tolist(), strict=True):
            row, response = self._split(ids, mask)
            text = self.tokenizer.decode(response, skip_special_tokens=True)
            result = compute_score(row.data_source, text, row.ground_truth, row.extra_info)
            scores.append(result["score"])
            self.records.append(
                {
                    "data_source": row.data_source,
                    "ground_truth": row.ground_truth,
                    "extra_info": row.extra_info,
                    "text": text,
                    "length": len(response),
                    **result,
                }
            )
        score = torch.tensor(scores, dtype=torch.float32, device=input_ids.device)
        hidden = score[:, None, None].expand(-1, input_ids.shape[1], 1)
        return SimpleNamespace(last_hidden_state=hidden, hidden_states=(hidden,))


class RuleReward(torch.nn.Module):
    """Our rule reward as a TRL reward model: `get_reward(model, ...)` runs `model.<base_model_prefix>`
    on the prompt+response ids, then `model.score` on its last hidden state, and reads the value at the last
    response token. Scored samples are kept in `records` (text, score, acc, ...) until `drain()`."""

    base_model_prefix = "backbone"

    def __init__(self, tokenizer, pool: Sequence[tuple[RLRow, list[int]]]) -> None:
        super().__init__()
        self.backbone = _ScoreBackbone(tokenizer, pool)
        self.score = torch.nn.Identity()

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.backbone.records

    def drain(self) -> list[dict[str, Any]]:
        out, self.backbone.records = self.backbone.records, []
        return out


# ---- optimizer ----------------------------------------------------------------------------------------


class PerModelAdamW(torch.optim.AdamW):
    """AdamW with one param group per model (policy, value), each clipped to `max_norm` before a step:
    verl's separate actor/critic optimizers inside TRL's single one. Keeps the pre-clip norms per group."""

    def __init__(self, groups: list[dict[str, Any]], max_norm: float) -> None:
        super().__init__(groups)
        self.max_norm = max_norm
        self.grad_norms: list[list[float]] = [[] for _ in groups]

    def step(self, closure=None):
        for norms, group in zip(self.grad_norms, self.param_groups, strict=True):
            norms.append(float(torch.nn.utils.clip_grad_norm_(group["params"], self.max_norm)))
        return super().step(closure)

    def drain_norms(self) -> list[float]:
        out = [float(np.mean(n)) if n else 0.0 for n in self.grad_norms]
        self.grad_norms = [[] for _ in self.grad_norms]
        return out


# ---- metrics ------------------------------------------------------------------------------------------

# TRL's logged name -> ours, where the definitions agree (verl-core's metric of the same name).
_SHARED_METRICS = {
    "loss/policy_avg": "policy_loss",
    "loss/value_avg": "value_loss",
    "policy/clipfrac_avg": "pg_clipfrac",
    "val/clipfrac_avg": "vf_clipfrac",
}
_DROPPED = ("eps", "epoch", "episode")  # throughput (timing) and counters already in `step`


def _step_metrics(
    logs: dict[str, float], records: list[dict], norms: list[float], kl_coef: float
) -> dict[str, Any]:
    """One metrics.jsonl row from TRL's logs of a step and the samples the reward scored in it."""
    row: dict[str, Any] = {
        "reward_mean": float(np.mean([r["score"] for r in records])),
        "acc_mean": float(np.mean([r["acc"] for r in records])),
        "kl_coef": kl_coef,
        "response_length": float(np.mean([r["length"] for r in records])),
        **{ours: float(logs[theirs]) for theirs, ours in _SHARED_METRICS.items()},
        "actor_grad_norm": norms[0],
        "critic_grad_norm": norms[1],
    }
    families: dict[str, list[float]] = {}
    for r in records:
        families.setdefault(r["data_source"].rsplit("/", 1)[-1], []).append(r["score"])
    for name, vals in sorted(families.items()):
        row[f"reward/{name}"] = float(np.mean(vals))
    for key, value in sorted(logs.items()):
        if key not in _DROPPED and key not in _SHARED_METRICS:
            row[f"trl/{key}"] = float(value)  # TRL's own definitions (e.g. objective/kl: summed per sequence)
    return row


def _metrics_callback(
    reward: RuleReward, optimizer: PerModelAdamW, kl_coef: float, sink: Callable[[dict, list[dict]], None]
):
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        """Turns each of TRL's per-step `log` calls into one metrics row."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "objective/scores" not in logs:
                return
            records = reward.drain()
            if not records:
                raise GenbenchError("trl-ppo: a PPO step logged without scoring any sample")
            now = time.perf_counter()
            row = {"step": state.global_step}
            row.update(_step_metrics(logs, records, optimizer.drain_norms(), kl_coef))
            row["step_time"] = round(now - self.last, 4)
            self.last = now
            sink(row, records)

    return StepLog()


# ---- the run ------------------------------------------------------------------------------------------


def train_run(
    profile: Profile,
    seed: int,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    init_checkpoint: str | Path | None = None,
    sft_dir: str | Path | None = None,
    resume: bool = False,
    printer: Callable[[str], None] = print,
    on_step: Callable[[dict, list[dict]], None] | None = None,
) -> TrainResult:
    """Train the TRL PPO baseline for (profile, data, seed) into `out_dir`.

    `out_dir` receives checkpoint/ (HF policy + tokenizer), metrics.jsonl and manifest.json, as verl-core's
    `train_run` writes them (no state/: TRL's PPOTrainer cannot resume mid-run). The init is
    `init_checkpoint` or the shared SFT stage (`sft_dir`, default the sibling `sft-<key>` of `out_dir`).
    `resume=True` returns a complete run with the same config and data as is; otherwise the run restarts.
    `on_step(metrics_row, samples)` sees every step's metrics and the samples the rule reward scored
    (data_source, ground_truth, extra_info, text, length, score, acc).
    """
    started, started_at = time.time(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    check_settings(profile)
    _trl()  # fail fast when trl is missing
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        done = _complete_run(out, profile, seed, data_dir)
        if done is not None:
            printer(f"[genbench] trl-ppo run in {out} is complete: nothing to do")
            return done
    with deterministic_torch(_core(profile).threads):
        return _train_run(
            profile, seed, data_dir, out, init_checkpoint, sft_dir, printer, on_step, started, started_at
        )


def _complete_run(out: Path, profile: Profile, seed: int, data_dir: str | Path) -> TrainResult | None:
    path = out / MANIFEST_FILE
    if not path.is_file() or not (out / CHECKPOINT_DIR / "config.json").is_file():
        return None
    try:
        manifest = read_model(path, TrainManifest)
    except ArtifactError:
        return None
    config = resolved_config(profile, seed)
    same = (
        manifest.config_sha256 == content_key(config, length=None)
        and manifest.datasets.content_hash == datasets_record(data_dir)["content_hash"]
    )
    return TrainResult.model_validate(manifest.result) if same and manifest.result is not None else None


def _train_run(
    profile: Profile,
    seed: int,
    data_dir: str | Path,
    out: Path,
    init_checkpoint: str | Path | None,
    sft_dir: str | Path | None,
    printer: Callable[[str], None],
    on_step: Callable[[dict, list[dict]], None] | None,
    started: float,
    started_at: str,
) -> TrainResult:
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback

    core, ppo = _core(profile), profile.ppo
    sft = resolve_init(profile, data_dir, out, init_checkpoint=init_checkpoint, sft_dir=sft_dir)
    for stale in (CHECKPOINT_DIR, MANIFEST_FILE):
        path = out / stale
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(sft.checkpoint)
    tokenizer.padding_side = "left"  # TRL appends responses to the query batch
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise GenbenchError(
            f"trl-ppo needs a pad token distinct from EOS (TRL masks ids == pad_token_id): {sft.checkpoint} "
            f"has pad {tokenizer.pad_token_id}, eos {tokenizer.eos_token_id}"
        )
    pool = training_prompts(profile, data_dir, tokenizer, core.train_max_samples)
    if len(pool) < ppo.rollout_batch_size:
        raise GenbenchError(
            f"trl-ppo: {len(pool)} training prompts, fewer than ppo.rollout_batch_size={ppo.rollout_batch_size}"
        )
    seed_everything(seed)
    policy = load_policy(Path(sft.checkpoint))
    ref = load_policy(Path(sft.checkpoint)).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    critic = load_critic(Path(sft.checkpoint), init_seed=derived_seed(seed, "critic-init"))
    reward = RuleReward(tokenizer, pool)
    optimizer = PerModelAdamW(
        [
            {
                "params": list(policy.parameters()),
                "lr": ppo.actor_lr,
                "weight_decay": core.actor_weight_decay,
            },
            {
                "params": list(critic.parameters()),
                "lr": ppo.critic_lr,
                "weight_decay": core.critic_weight_decay,
            },
        ],
        max_norm=core.grad_clip,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    metrics_path = out / METRICS_FILE
    work = Path(tempfile.mkdtemp(prefix=".trl-", dir=out))
    _, PPOTrainer = _trl()
    printer(
        f"[genbench] trl-ppo: trl {trl.__version__}, seed {seed}, {ppo.steps} steps x "
        f"{ppo.rollout_batch_size} prompts, threads {core.threads}, sft {sft.checkpoint}"
    )
    with open(metrics_path, "w") as fh:

        def sink(row: dict[str, Any], samples: list[dict]) -> None:
            fh.write(jsonl_line(TrainStep.model_validate(row)))
            fh.flush()
            if on_step is not None:
                on_step(row, samples)
            printer(
                f"[genbench] step {row['step']}/{ppo.steps} reward {row['reward_mean']:.4f} "
                f"kl {row['trl/objective/kl']:.5f} pg {row['policy_loss']:.4f} vf {row['value_loss']:.4f} "
                f"len {row['response_length']:.1f} ({row['step_time']:.2f}s)"
            )

        with _quiet_transformers(), _accelerate_device(_use_cpu(profile)):
            trainer = PPOTrainer(
                args=ppo_config(profile, seed, work),
                processing_class=tokenizer,
                model=policy,
                ref_model=ref,
                reward_model=reward,
                value_model=critic,
                train_dataset=Dataset.from_dict({"input_ids": [ids for _, ids in pool]}),
                optimizers=(optimizer, scheduler),
                callbacks=[_metrics_callback(reward, optimizer, ppo.kl_coef, sink)],
            )
            trainer.remove_callback(PrinterCallback)
            trainer.train()
    shutil.rmtree(work, ignore_errors=True)
    save_checkpoint(policy, tokenizer, out)
    rows = read_metrics(metrics_path)
    if len(rows) != ppo.steps:
        raise GenbenchError(f"trl-ppo logged {len(rows)} steps, expected {ppo.steps}")
    reward_first, reward_last = reward_first_last(rows)
    config = resolved_config(profile, seed)
    wall, peak = round(time.time() - started, 3), peak_rss_mb()
    result = TrainResult(
        run_dir=str(out),
        checkpoint=str(out / CHECKPOINT_DIR),
        metrics_path=str(metrics_path),
        manifest_path=str(out / MANIFEST_FILE),
        sft_checkpoint=sft.checkpoint,
        backend=BACKEND,
        verl_version=None,
        seed=seed,
        steps=len(rows),
        resumed_from_step=None,
        reward_first=reward_first,
        reward_last=reward_last,
        wall_time_s=wall,
        peak_rss_mb=peak,
    )
    manifest = {
        "backend": BACKEND,
        "profile": profile.name,
        "seed": seed,
        "trl": {
            "version": trl.__version__,
            "trainer": "trl.experimental.ppo.PPOTrainer",
            "ppo_config": _config_summary(trainer.args),
        },
        "config": config,
        "config_sha256": content_key(config, length=None),
        "datasets": datasets_record(data_dir),
        "sft": sft_record(sft),
        "packages": package_versions(PACKAGES),
        "git_revision": git_revision(),
        "threads": core.threads,
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": wall,
        "train_time_s": train_time_s(rows),
        "peak_rss_mb": peak,
        "steps": len(rows),
        "resumed_from_step": None,
        "reward_first": reward_first,
        "reward_last": reward_last,
        "metrics_sha256": content_key(deterministic_metrics(rows), length=None),
        "outputs": {"checkpoint": CHECKPOINT_DIR, "metrics": METRICS_FILE},
        "hostname": hostname(),
        "result": result.model_dump(),
    }
    write_model(out / MANIFEST_FILE, TrainManifest.model_validate(manifest))
    printer(
        f"[genbench] done: reward {reward_first:.4f} -> {reward_last:.4f}, {wall:.1f}s, "
        f"peak RSS {peak:.0f} MB -> {out}"
    )
    return result


_CONFIG_FIELDS = (
    "seed",
    "use_cpu",
    "learning_rate",
    "lr_scheduler_type",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_mini_batches",
    "total_episodes",
    "num_total_batches",
    "num_ppo_epochs",
    "response_length",
    "stop_token",
    "temperature",
    "kl_coef",
    "kl_estimator",
    "cliprange",
    "cliprange_value",
    "vf_coef",
    "gamma",
    "lam",
    "whiten_rewards",
    "missing_eos_penalty",
)


def _config_summary(args) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _CONFIG_FIELDS}


@contextlib.contextmanager
def _accelerate_device(use_cpu: bool):
    """PPOTrainer builds its own `Accelerator()`, which reads the device from the environment, not from
    `use_cpu`: set ACCELERATE_USE_CPU while it is built (restored after). On CUDA, deterministic kernels
    need a cuBLAS workspace setting."""
    key, before = "ACCELERATE_USE_CPU", os.environ.get("ACCELERATE_USE_CPU")
    if use_cpu:
        os.environ[key] = "true"
    else:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        yield
    finally:
        if use_cpu and before is None:
            os.environ.pop(key, None)
        elif use_cpu:
            os.environ[key] = before


@contextlib.contextmanager
def _quiet_transformers():
    """TRL's trainer logs through transformers/accelerate at INFO/WARNING; keep our progress lines only."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
