"""Backend `verl-core`: single-process PPO + GAE on CPU whose math is the installed verl's.

One step mirrors `verl.trainer.ppo.ray_trainer.RayPPOTrainer.fit` with `algorithm.adv_estimator=gae`,
`use_kl_in_reward=True`: sample one response per prompt (seeded torch Generator) -> genbench
`compute_score` on the decoded response, placed on the last response token -> old/ref log-probs and critic
values -> `apply_kl_penalty` (core_algos.kl_penalty + KL controller) -> GAE -> critic update
(compute_value_loss) -> actor update (vanilla clipped policy loss - entropy_coeff * entropy).

The critic is a separate `*ForTokenClassification(num_labels=1)` initialised from the SFT checkpoint
(as verl's critic worker does); the reference policy is the frozen SFT checkpoint.

Determinism: deterministic kernels, fixed threads, and every random draw comes from a Generator seeded by
(seed, purpose, step), so a resumed run replays exactly what an uninterrupted run does.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from genbench_tasks.artifacts.io import jsonl_line, read_model, write_jsonl, write_model
from genbench_tasks.artifacts.training import PpoStateRecord, TrainManifest, TrainStep
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key
from genbench_tasks.profiles import Profile
from genbench_tasks.provenance import package_versions
from genbench_tasks.training.common import (
    commit_dir,
    deterministic_torch,
    generator,
    seed_everything,
    training_prompts,
)
from genbench_tasks.training.outputs import (
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

log = logging.getLogger(__name__)

STATE_DIR = "state"
STATE_MARKER = "state.json"


class CoreSettings(BaseModel):
    """verl-core knobs not in PPOSettings; defaults are verl's ppo_trainer.yaml defaults.
    Override with `profile.extra["verl_core"]`."""

    model_config = ConfigDict(extra="forbid")

    cliprange_value: float = 0.5  # critic.cliprange_value
    clip_ratio_c: float = 3.0  # actor_rollout_ref.actor.clip_ratio_c
    loss_agg_mode: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] = "token-mean"
    kl_penalty: Literal["kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"] = "kl"  # algorithm.kl_penalty
    kl_horizon: int = 10000  # algorithm.kl_ctrl.horizon
    grad_clip: float = 1.0  # actor/critic grad_clip
    actor_weight_decay: float = 0.01  # actor.optim.weight_decay
    critic_weight_decay: float = 0.01  # critic.optim.weight_decay
    critic_warmup: int = 0  # trainer.critic_warmup
    top_p: float = 1.0  # rollout.top_p
    train_max_samples: int | None = None  # data.train_max_samples: cap the PPO prompt pool (seeded pick)
    threads: int = 1  # torch intra-op threads (part of the determinism contract)


def core_settings(profile: Profile) -> CoreSettings:
    return CoreSettings.model_validate(profile.extra.get("verl_core", {}))


def resolved_config(profile: Profile, verl_version: str, seed: int) -> dict[str, Any]:
    return {
        "backend": "verl-core",
        "profile": profile.model_dump(mode="json"),
        "verl_core": core_settings(profile).model_dump(mode="json"),
        "verl_version": verl_version,
        "seed": seed,
    }


def resume_key(profile: Profile, verl_version: str, seed: int) -> str:
    """What must match to continue a run from its state: the resolved config minus the step budget."""
    config = resolved_config(profile, verl_version, seed)
    config["profile"]["ppo"] = {
        k: v for k, v in config["profile"]["ppo"].items() if k not in ("steps", "save_freq")
    }
    for key in (
        "name",
        "description",
        "verl_versions",
        "seeds",
        "baseline_version",
        "baselines",
        "eval",
        "cluster",
    ):
        config["profile"].pop(key, None)
    return content_key(config)


# ---- models ------------------------------------------------------------------------------------------


def load_policy(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def load_critic(path: Path, init_seed: int | None):
    """Token-classification critic (num_labels=1) from an HF dir; a fresh value head is seeded."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the fresh `score` head is expected
    try:
        with torch.random.fork_rng(devices=[]):
            if init_seed is not None:
                torch.manual_seed(init_seed)
            critic = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(level)
    return critic


def _critic_values(critic, prompt_ids, prompt_mask, responses, response_mask) -> torch.Tensor:
    """verl critic: values of the states preceding each response token, zeroed outside the mask."""
    from genbench_tasks.training.sampling import position_ids

    input_ids = torch.cat([prompt_ids, responses], dim=1)
    attn = torch.cat([prompt_mask, response_mask.to(prompt_mask.dtype)], dim=1)
    out = critic(input_ids=input_ids, attention_mask=attn, position_ids=position_ids(attn))
    width = responses.shape[1]
    values = out.logits[:, -width - 1 : -1, 0].float()
    return values * response_mask


# ---- the trainer ---------------------------------------------------------------------------------------


class PPOTrainer:
    """Single-process PPO + GAE with a critic, frozen reference and KL-in-reward control."""

    def __init__(
        self,
        profile: Profile,
        seed: int,
        data_dir: str | Path,
        run_dir: str | Path,
        sft_checkpoint: str | Path,
        adapter,
    ) -> None:
        from transformers import AutoTokenizer

        self.profile, self.seed = profile, seed
        self.ppo, self.core = profile.ppo, core_settings(profile)
        self.run_dir = Path(run_dir)
        self.sft_checkpoint = Path(sft_checkpoint)
        self.adapter = adapter
        self.tokenizer = AutoTokenizer.from_pretrained(self.sft_checkpoint)
        self.rows = training_prompts(profile, data_dir, self.tokenizer, self.core.train_max_samples)
        self._perms: dict[int, list[int]] = {}
        self.ref = load_policy(self.sft_checkpoint).eval()
        for p in self.ref.parameters():
            p.requires_grad_(False)
        self.policy = load_policy(self.sft_checkpoint)
        self.critic = load_critic(self.sft_checkpoint, init_seed=_seed(seed, "critic-init"))
        self.actor_opt = torch.optim.AdamW(
            self.policy.parameters(), lr=self.ppo.actor_lr, weight_decay=self.core.actor_weight_decay
        )
        self.critic_opt = torch.optim.AdamW(
            self.critic.parameters(), lr=self.ppo.critic_lr, weight_decay=self.core.critic_weight_decay
        )
        self.kl_ctrl = adapter.kl_controller(
            self.ppo.kl_ctrl, self.ppo.kl_coef, self.ppo.kl_target, self.core.kl_horizon
        )
        self.step = 0  # completed steps

    # -- data order: a fresh seeded permutation per epoch, indexed by global position (resume-safe)
    def batch_rows(self, step: int) -> list[tuple]:
        n, size = len(self.rows), self.ppo.rollout_batch_size
        out = []
        for pos in range(step * size, (step + 1) * size):
            epoch = pos // n
            if epoch not in self._perms:
                self._perms = {
                    epoch: torch.randperm(n, generator=generator(self.seed, "data", epoch)).tolist()
                }
            out.append(self.rows[self._perms[epoch][pos % n]])
        return out

    def _logits(self, model, batch) -> torch.Tensor:
        from genbench_tasks.training.sampling import response_logits

        logits = response_logits(
            model, batch["prompts"], batch["prompt_mask"], batch["responses"], batch["response_mask"]
        )
        return logits / self.ppo.temperature

    def train_step(self) -> TrainStep:
        """One PPO iteration; returns its metrics."""
        from genbench_tasks.rewards import compute_score
        from genbench_tasks.training.sampling import decode_responses, left_pad, sample_responses

        ad, step, started = self.adapter, self.step, time.perf_counter()
        chunk = self.batch_rows(step)
        prompts, prompt_mask = left_pad([ids for _, ids in chunk], self.tokenizer.pad_token_id)
        # 1. rollout
        self.policy.eval()
        responses, response_mask = sample_responses(
            self.policy,
            prompts,
            prompt_mask,
            max_new_tokens=self.ppo.max_response_length,
            eos_id=self.tokenizer.eos_token_id,
            pad_id=self.tokenizer.pad_token_id,
            generator=generator(self.seed, "rollout", step),
            temperature=self.ppo.temperature,
            top_p=self.core.top_p,
        )
        mask_f = response_mask.float()
        # 2. reward on the last response token
        texts = decode_responses(self.tokenizer, responses, response_mask)
        scores = torch.zeros_like(mask_f)
        seq_scores, accs, per_family = [], [], {}
        last = response_mask.sum(-1) - 1
        for i, ((row, _), text) in enumerate(zip(chunk, texts, strict=True)):
            result = compute_score(row.data_source, text, row.ground_truth, row.extra_info)
            scores[i, last[i]] = result["score"]
            seq_scores.append(result["score"])
            accs.append(result["acc"])
            per_family.setdefault(row.data_source.rsplit("/", 1)[-1], []).append(result["score"])
        # 3. old / ref log-probs and values
        batch = {"prompts": prompts, "prompt_mask": prompt_mask, "responses": responses}
        batch["response_mask"] = mask_f
        with torch.no_grad():
            policy_logits = self._logits(self.policy, batch)
            old_log_probs = ad.logprobs(policy_logits, responses)
            rollout_entropy = float(ad.entropy_loss(policy_logits, mask_f))
            del policy_logits
            ref_log_prob = ad.logprobs(self._logits(self.ref, batch), responses)
            self.critic.eval()
            values = _critic_values(self.critic, prompts, prompt_mask, responses, mask_f)
        data = ad.data_proto(
            {
                **batch,
                "old_log_probs": old_log_probs,
                "ref_log_prob": ref_log_prob,
                "values": values,
                "token_level_scores": scores,
            },
            meta_info={"step": step, "temperature": self.ppo.temperature},
        )
        # 4. KL penalty in the reward (verl.trainer.ppo.ray_trainer.apply_kl_penalty)
        kld = ad.kl(data.batch["old_log_probs"], data.batch["ref_log_prob"]) * mask_f
        beta = float(self.kl_ctrl.value)
        data.batch["token_level_rewards"] = data.batch["token_level_scores"] - beta * kld
        current_kl = float(torch.mean(ad.masked_mean(kld, mask_f, axis=-1), dim=0))
        ad.kl_controller_update(self.kl_ctrl, current_kl, n_steps=len(chunk))
        # 5. GAE
        advantages, returns = ad.gae(
            data.batch["token_level_rewards"], data.batch["values"], mask_f, self.ppo.gamma, self.ppo.lam
        )
        data.batch["advantages"], data.batch["returns"] = advantages, returns
        # 6. critic, then actor (verl order), over mini-batches for ppo_epochs
        critic_m = self._update_critic(data)
        actor_m = self._update_actor(data) if step >= self.core.critic_warmup else {}
        self.step += 1
        metrics: dict[str, Any] = {
            "step": self.step,
            "reward_mean": float(np.mean(seq_scores)),
            "acc_mean": float(np.mean(accs)),
            "kl": current_kl,
            "kl_coef": beta,
            "policy_loss": actor_m.get("policy_loss", 0.0),
            "value_loss": critic_m["value_loss"],
            "entropy": rollout_entropy,
            "response_length": float(mask_f.sum(-1).mean()),
            "actor_entropy": actor_m.get("entropy", 0.0),
            "pg_clipfrac": actor_m.get("pg_clipfrac", 0.0),
            "ppo_kl": actor_m.get("ppo_kl", 0.0),
            "vf_clipfrac": critic_m["vf_clipfrac"],
            "actor_grad_norm": actor_m.get("grad_norm", 0.0),
            "critic_grad_norm": critic_m["grad_norm"],
            "values_mean": float(ad.masked_mean(values, mask_f)),
            "returns_mean": float(ad.masked_mean(returns, mask_f)),
        }
        for name, vals in sorted(per_family.items()):
            metrics[f"reward/{name}"] = float(np.mean(vals))
        metrics["step_time"] = round(time.perf_counter() - started, 4)
        return TrainStep.model_validate(metrics)

    def _update_critic(self, data) -> dict[str, float]:
        self.critic.train()
        losses, clipfracs, norms = [], [], []
        for _ in range(self.ppo.ppo_epochs):
            for mb in self.adapter.split(data, self.ppo.mini_batch_size):
                b = mb.batch
                vpreds = _critic_values(
                    self.critic, b["prompts"], b["prompt_mask"], b["responses"], b["response_mask"]
                )
                loss, clipfrac = self.adapter.value_loss(
                    vpreds, b["returns"], b["values"], b["response_mask"]
                )
                self.critic_opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.core.grad_clip)
                self.critic_opt.step()
                losses.append(float(loss.detach()))
                clipfracs.append(clipfrac)
                norms.append(float(norm))
        return {
            "value_loss": float(np.mean(losses)),
            "vf_clipfrac": float(np.mean(clipfracs)),
            "grad_norm": float(np.mean(norms)),
        }

    def _update_actor(self, data) -> dict[str, float]:
        self.policy.train()
        agg: dict[str, list[float]] = {}
        for _ in range(self.ppo.ppo_epochs):
            for mb in self.adapter.split(data, self.ppo.mini_batch_size):
                b = mb.batch
                logits = self._logits(self.policy, b)
                log_prob = self.adapter.logprobs(logits, b["responses"])
                entropy = self.adapter.entropy_loss(logits, b["response_mask"])
                pg_loss, pg_metrics = self.adapter.policy_loss(
                    b["old_log_probs"], log_prob, b["advantages"], b["response_mask"]
                )
                loss = pg_loss - self.ppo.entropy_coeff * entropy
                self.actor_opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.core.grad_clip)
                self.actor_opt.step()
                for key, value in {
                    "policy_loss": float(pg_loss.detach()),
                    "entropy": float(entropy.detach()),
                    "grad_norm": float(norm),
                    **pg_metrics,
                }.items():
                    agg.setdefault(key, []).append(value)
        return {k: float(np.mean(v)) for k, v in agg.items()}

    # -- checkpoints --------------------------------------------------------------------------------

    def resume_key(self) -> str:
        return resume_key(self.profile, self.adapter.version, self.seed)

    def save_state(self) -> Path:
        """Write state/step_N atomically (temp dir + rename): policy, critic, optimizers, RNG, KL."""
        root = self.run_dir / STATE_DIR
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step_{self.step}-", dir=root))
        self.policy.save_pretrained(tmp / "policy")
        self.tokenizer.save_pretrained(tmp / "policy")
        self.critic.save_pretrained(tmp / "critic")
        torch.save(
            {"actor": self.actor_opt.state_dict(), "critic": self.critic_opt.state_dict()}, tmp / "optim.pt"
        )
        torch.save(
            {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            tmp / "rng.pt",
        )
        write_model(
            tmp / STATE_MARKER,
            PpoStateRecord(
                step=self.step,
                kl_coef=float(self.kl_ctrl.value),
                seed=self.seed,
                resume_key=self.resume_key(),
            ),
        )
        final = root / f"step_{self.step}"
        commit_dir(tmp, final)
        return final

    def load_state(self, state: Path) -> None:
        meta = read_model(state / STATE_MARKER, PpoStateRecord)
        if meta.resume_key != self.resume_key():
            raise GenbenchError(
                f"cannot resume from {state}: it was written with another config, seed or verl version "
                f"(resume key {meta.resume_key} != {self.resume_key()}); use a new --out"
            )
        self.policy = load_policy(state / "policy")
        self.critic = load_critic(state / "critic", init_seed=None)
        self.actor_opt = torch.optim.AdamW(
            self.policy.parameters(), lr=self.ppo.actor_lr, weight_decay=self.core.actor_weight_decay
        )
        self.critic_opt = torch.optim.AdamW(
            self.critic.parameters(), lr=self.ppo.critic_lr, weight_decay=self.core.critic_weight_decay
        )
        optim = torch.load(state / "optim.pt", weights_only=False)
        self.actor_opt.load_state_dict(optim["actor"])
        self.critic_opt.load_state_dict(optim["critic"])
        rng = torch.load(state / "rng.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.kl_ctrl.value = meta.kl_coef
        self.step = meta.step


def _seed(*parts: object) -> int:
    from genbench_tasks.training.common import derived_seed

    return derived_seed(*parts)


def latest_state(run_dir: str | Path) -> Path | None:
    """Newest complete state/step_N (has its marker; temp dirs start with '.')."""
    root = Path(run_dir) / STATE_DIR
    if not root.is_dir():
        return None
    done = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith("step_") and (p / STATE_MARKER).is_file()
    ]
    return max(done, key=lambda p: int(p.name.split("_", 1)[1]), default=None)


def _remove_partial_writes(out: Path) -> None:
    """Temp dirs left by a killed process (complete ones were renamed into place)."""
    for tmp in [*out.glob(".checkpoint-*"), *(out / STATE_DIR).glob(".step_*")]:
        shutil.rmtree(tmp, ignore_errors=True)


def train_run(
    profile: Profile,
    verl_version_expected: str | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    *,
    verl_version: str | None = None,
    init_checkpoint: str | Path | None = None,
    resume: bool = False,
    sft_dir: str | Path | None = None,
    stop_after_step: int | None = None,
    printer: Callable[[str], None] = print,
) -> TrainResult:
    """Train one (verl version, seed) run of the `verl-core` backend into `out_dir`.

    `out_dir` receives checkpoint/ (HF), metrics.jsonl, manifest.json and state/step_N/ every
    `ppo.save_freq` steps. The PPO init is `init_checkpoint` (an HF dir, e.g. `<sft dir>/checkpoint`)
    or else the shared SFT stage: `sft_dir` (default: the sibling `sft-<key>` of `out_dir`), built once
    by `ensure_sft`. `verl_version` is an alias of `verl_version_expected`. `resume=True` continues from
    the newest complete state. `stop_after_step` raises `InterruptedRun` after that step (tests).
    """
    from genbench_tasks.training.verl_adapter import check_verl_version

    started, started_at = time.time(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    verl_version_expected = verl_version_expected or verl_version
    if data_dir is None or out_dir is None:
        raise GenbenchError("train_run needs data_dir and out_dir")
    if profile.backend != "verl-core":
        raise GenbenchError(f"profile {profile.name!r} uses backend {profile.backend!r}, not verl-core")
    check_verl_version(verl_version_expected)  # fail fast, before any work
    with deterministic_torch(core_settings(profile).threads):
        return _train_run(
            profile,
            verl_version_expected,
            seed,
            data_dir,
            out_dir,
            init_checkpoint=init_checkpoint,
            resume=resume,
            sft_dir=sft_dir,
            stop_after_step=stop_after_step,
            printer=printer,
            started=started,
            started_at=started_at,
        )


def _train_run(
    profile: Profile,
    verl_version_expected: str | None,
    seed: int,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    init_checkpoint: str | Path | None,
    resume: bool,
    sft_dir: str | Path | None,
    stop_after_step: int | None,
    printer: Callable[[str], None],
    started: float,
    started_at: str,
) -> TrainResult:
    from genbench_tasks.training.verl_adapter import VerlAdapter, check_verl_version

    version = check_verl_version(verl_version_expected)
    core = core_settings(profile)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sft = resolve_init(profile, data_dir, out, init_checkpoint=init_checkpoint, sft_dir=sft_dir)
    seed_everything(seed)
    adapter = VerlAdapter(
        clip_ratio=profile.ppo.clip_ratio,
        clip_ratio_c=core.clip_ratio_c,
        cliprange_value=core.cliprange_value,
        loss_agg_mode=core.loss_agg_mode,
        entropy_coeff=profile.ppo.entropy_coeff,
        ppo_mini_batch_size=profile.ppo.mini_batch_size,
        ppo_epochs=profile.ppo.ppo_epochs,
        kl_penalty=core.kl_penalty,
        expected_version=verl_version_expected,
    )
    trainer = PPOTrainer(profile, seed, data_dir, out, sft.checkpoint, adapter)
    metrics_path = out / METRICS_FILE
    resumed_from = None
    _remove_partial_writes(out)
    state = latest_state(out) if resume else None
    if state is not None:
        trainer.load_state(state)
        resumed_from = trainer.step
        write_jsonl(metrics_path, read_metrics(metrics_path, upto=trainer.step))
        printer(f"[genbench] resumed from {state} (step {trainer.step})")
    else:
        if resume:
            printer(f"[genbench] no complete state in {out / STATE_DIR}: starting fresh")
        for stale in (STATE_DIR, "checkpoint"):
            shutil.rmtree(out / stale, ignore_errors=True)
        metrics_path.write_text("")
    total = profile.ppo.steps
    printer(
        f"[genbench] verl-core PPO: verl {version}, seed {seed}, {total} steps x "
        f"{profile.ppo.rollout_batch_size} prompts, threads {core.threads}, sft {sft.checkpoint}"
    )
    with open(metrics_path, "a") as fh:
        while trainer.step < total:
            row = trainer.train_step()
            fh.write(jsonl_line(row))
            fh.flush()
            printer(
                f"[genbench] step {row.step}/{total} reward {row.reward_mean:.4f} "
                f"kl {row.kl:.5f} pg {row.policy_loss:.4f} vf {row.value_loss:.4f} "
                f"ent {row.entropy:.3f} len {row.response_length:.1f} ({row.step_time:.2f}s)"
            )
            if trainer.step % profile.ppo.save_freq == 0 or trainer.step == total:
                trainer.save_state()
            if stop_after_step is not None and trainer.step >= stop_after_step and trainer.step < total:
                raise InterruptedRun(f"stopped after step {trainer.step} (stop_after_step)")
    save_checkpoint(trainer.policy, trainer.tokenizer, out)
    rows = read_metrics(metrics_path)
    reward_first, reward_last = reward_first_last(rows)
    config = resolved_config(profile, version, seed)
    wall = round(time.time() - started, 3)
    peak = peak_rss_mb()
    manifest = {
        "backend": "verl-core",
        "profile": profile.name,
        "seed": seed,
        "verl": {"expected": verl_version_expected, **adapter.describe()},
        "config": config,
        "config_sha256": content_key(config, length=None),
        "datasets": datasets_record(data_dir),
        "sft": sft_record(sft),
        "packages": package_versions(VERSIONED_PACKAGES),
        "git_revision": git_revision(),
        "threads": core.threads,
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": wall,
        "train_time_s": train_time_s(rows),
        "peak_rss_mb": peak,
        "steps": len(rows),
        "resumed_from_step": resumed_from,
        "reward_first": reward_first,
        "reward_last": reward_last,
        "metrics_sha256": content_key(deterministic_metrics(rows), length=None),
        "outputs": {"checkpoint": "checkpoint", "metrics": METRICS_FILE, "state": STATE_DIR},
        "hostname": hostname(),
    }
    write_model(out / MANIFEST_FILE, TrainManifest.model_validate(manifest))
    printer(
        f"[genbench] done: reward {reward_first:.4f} -> {reward_last:.4f}, {wall:.1f}s, "
        f"peak RSS {peak:.0f} MB -> {out}"
    )
    return TrainResult(
        run_dir=str(out),
        checkpoint=str(out / "checkpoint"),
        metrics_path=str(metrics_path),
        manifest_path=str(out / MANIFEST_FILE),
        sft_checkpoint=sft.checkpoint,
        verl_version=version,
        seed=seed,
        steps=len(rows),
        resumed_from_step=resumed_from,
        reward_first=reward_first,
        reward_last=reward_last,
        wall_time_s=wall,
        peak_rss_mb=peak,
    )


class InterruptedRun(GenbenchError):
    """Raised by `stop_after_step` to simulate a killed run."""
