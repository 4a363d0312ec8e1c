"""Adapter over the installed verl's PPO math: one stable interface for the `verl-core` trainer, with
every call recorded (qualified name + count) for the run manifest.

What is used (all from the *installed* verl; nothing is re-implemented here):

- `verl.trainer.ppo.core_algos.compute_gae_advantage_return`  GAE advantages (whitened) and returns
- `core_algos.get_policy_loss_fn("vanilla")` -> `compute_policy_loss_vanilla`  clipped (dual-clip) PPO loss;
  falls back to the deprecated `core_algos.compute_policy_loss` where there is no registry
- `core_algos.compute_value_loss`  clipped value loss
- `core_algos.kl_penalty`  per-token KL estimate (policy vs frozen reference) for the in-reward penalty
- `core_algos.get_kl_controller` (or `FixedKLController` / `AdaptiveKLController`)  the KL coefficient
- `core_algos.agg_loss`  entropy aggregation (as verl's actor does)
- `verl.utils.torch_functional.{logprobs_from_logits, entropy_from_logits, masked_mean}`  (CPU paths are
  identical across 0.6-0.9: no flash-attn / NPU kernels on CPU)
- `verl.DataProto` (`verl.protocol.DataProto`)  rollout batch container and mini-batch `split`
- `verl.workers.config.ActorConfig`  the config object the policy-loss fns read (`clip_ratio*`,
  `clip_ratio_c`, `global_batch_info`); an OmegaConf DictConfig with the same keys where it is missing

Differences between versions (read from the 0.6.1, 0.7.1, 0.8.0 and 0.9.1 wheels; 0.8.0 and 0.9.1 also
exercised by tests/test_training.py, which checks that both give bit-identical training metrics):

- `get_policy_loss_fn` exists from 0.6.0. In 0.6.0 the registered fns return a 4-tuple
  `(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)` (platform notes); from 0.6.1 they return
  `(pg_loss, metrics)` with keys `actor/pg_clipfrac`, `actor/ppo_kl`, `actor/pg_clipfrac_lower`.
  The adapter normalises both (and the legacy `compute_policy_loss` 4-tuple).
- Policy-loss config: 0.6.1 annotates `config: DictConfig | AlgoConfig` and calls the 3-argument `agg_loss`;
  from 0.7 it is an `ActorConfig` and the loss is aggregated with `**config.global_batch_info`
  (dp_size / batch_num_tokens / global_batch_size / loss_scale_factor; empty = local normalisation,
  correct for one process; 0.6.1's ActorConfig has no `global_batch_info`). 0.9.x asserts the config is
  not an `AlgoConfig`.
- `agg_loss` gains `dp_size`/`batch_num_tokens`/`global_batch_size`/`loss_scale_factor` in 0.7; 0.9 adds the
  `"token-sum"` mode. We use `"token-mean"` (the default), which is numerically the same in 0.7-0.9
  for a single process.
- `compute_value_loss` gains `dp_size`, `batch_num_tokens`, `global_batch_size`, `loss_scale_factor` in 0.9.0
  (0.8.0 and older: `(vpreds, returns, values, response_mask, cliprange_value, loss_agg_mode)`). The
  adapter passes `dp_size=1` only where the parameter exists; the other three keep their local defaults.
- `compute_gae_advantage_return`, `kl_penalty`, `FixedKLController`/`AdaptiveKLController`,
  `get_kl_controller`: identical signatures and math in 0.6.1-0.9.1 for what we call.
- Not used here but changed (affects other estimators): 0.9 REINFORCE++ returns now carry the running
  return across masked observation tokens; GSPO honours `loss_agg_mode` (was fixed to
  seq-mean-token-mean); new `"dro"` policy loss. `ActorConfig` drops `router_replay` and the MindSpeed
  actor config in 0.9; `logprobs_from_logits` honours `VERL_DISABLE_FLASH_ATTN_CE` (GPU only).
- `ActorConfig` (a frozen `BaseConfig` dataclass in 0.8/0.9) rejects assignment to `global_batch_info` after
  construction (FrozenInstanceError): leave it at its default `{}` rather than resetting it.
- Import cost: `import verl` pulls tensordict, transformers and sklearn: 3 s warm to ~15 s CPU cold on
  this machine, in both 0.8.0 and 0.9.1; import once per process.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from genbench_tasks.errors import GenbenchError


class VerlVersionMismatch(GenbenchError):
    """The imported verl is not the version the run was asked for."""


def imported_verl_version() -> tuple[str, str]:
    """(version, path) of the verl this interpreter imports."""
    try:
        import verl
    except ImportError as exc:
        raise GenbenchError(f"verl is not importable: {exc}") from exc
    return str(getattr(verl, "__version__", "unknown")), str(getattr(verl, "__file__", ""))


def check_verl_version(expected: str | None) -> str:
    """Fail fast (one clear line) when the imported verl differs from `expected`."""
    version, path = imported_verl_version()
    if expected and version != expected:
        raise VerlVersionMismatch(
            f"this run expects verl {expected} but the interpreter imports verl {version} from {path}; "
            f"run it in the environment/image built for verl {expected} (e.g. PYTHONPATH or worker image)"
        )
    return version


def _qualname(fn: Any) -> str:
    target = inspect.unwrap(fn) if callable(fn) else fn
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def _params(fn: Callable) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


class VerlAdapter:
    """Version-stable access to verl's PPO functions; records which ones ran."""

    def __init__(
        self,
        *,
        clip_ratio: float,
        clip_ratio_c: float = 3.0,
        cliprange_value: float = 0.5,
        loss_agg_mode: str = "token-mean",
        entropy_coeff: float = 0.0,
        ppo_mini_batch_size: int = 16,
        ppo_epochs: int = 1,
        kl_penalty: str = "kl",
        expected_version: str | None = None,
    ) -> None:
        self.version = check_verl_version(expected_version)
        import verl
        import verl.utils.torch_functional as verl_F
        from verl.trainer.ppo import core_algos

        self.verl_path = str(verl.__file__)
        self.core_algos = core_algos
        self.F = verl_F
        self.clip_ratio = clip_ratio
        self.clip_ratio_c = clip_ratio_c
        self.cliprange_value = cliprange_value
        self.loss_agg_mode = loss_agg_mode
        self.kl_penalty_type = kl_penalty
        self.calls: Counter[str] = Counter()
        self.notes: list[str] = []
        self._policy_loss_fn, self._policy_loss_style = self._resolve_policy_loss()
        self.actor_config = self._actor_config(
            entropy_coeff=entropy_coeff, ppo_mini_batch_size=ppo_mini_batch_size, ppo_epochs=ppo_epochs
        )
        value_params = _params(core_algos.compute_value_loss)
        self._value_loss_kwargs: dict[str, Any] = {}
        if "dp_size" in value_params:
            self._value_loss_kwargs["dp_size"] = 1
            self.notes.append(
                "compute_value_loss: has dp_size/batch_num_tokens/... (>=0.9.0); dp_size=1 passed"
            )
        else:
            self.notes.append("compute_value_loss: legacy signature without dp_size (<0.9.0)")

    # ---- resolution -------------------------------------------------------------------------------

    def _resolve_policy_loss(self) -> tuple[Callable, str]:
        ca = self.core_algos
        getter = getattr(ca, "get_policy_loss_fn", None)
        if getter is not None:
            try:
                fn = getter("vanilla")
            except (KeyError, ValueError):
                fn = None
            if fn is not None:
                self._record(getter)
                self.notes.append(f"policy loss: get_policy_loss_fn('vanilla') -> {_qualname(fn)}")
                return fn, "registry"
        self.notes.append("policy loss: no registry; using core_algos.compute_policy_loss")
        return ca.compute_policy_loss, "legacy"

    def _actor_config(self, **extra: Any) -> Any:
        values: dict[str, Any] = {
            "strategy": "fsdp",
            "rollout_n": 1,
            "ppo_micro_batch_size_per_gpu": extra["ppo_mini_batch_size"],
            "ppo_mini_batch_size": extra["ppo_mini_batch_size"],
            "ppo_epochs": extra["ppo_epochs"],
            "clip_ratio": self.clip_ratio,
            "clip_ratio_low": self.clip_ratio,
            "clip_ratio_high": self.clip_ratio,
            "clip_ratio_c": self.clip_ratio_c,
            "loss_agg_mode": self.loss_agg_mode,
            "entropy_coeff": extra["entropy_coeff"],
            "use_torch_compile": False,
            "use_kl_loss": False,
        }
        try:
            from verl.workers.config import ActorConfig

            fields = {f.name for f in dataclasses.fields(ActorConfig)}
            config = ActorConfig(**{k: v for k, v in values.items() if k in fields})
            # global_batch_info (0.7+) stays at its default {}: local normalisation, right for one process
            if getattr(config, "global_batch_info", {}):
                raise ValueError(f"unexpected global_batch_info {config.global_batch_info}")
            self._record(ActorConfig)
            self.notes.append(f"actor config: {_qualname(ActorConfig)}")
            return config
        except Exception as exc:  # older verl, or a config dataclass that rejects our fields
            from omegaconf import OmegaConf

            self.notes.append(f"actor config: OmegaConf DictConfig ({type(exc).__name__}: {exc})")
            return OmegaConf.create({**values, "global_batch_info": {}})

    def _record(self, fn: Any) -> None:
        self.calls[_qualname(fn)] += 1

    # ---- PPO math ---------------------------------------------------------------------------------

    def gae(
        self,
        token_level_rewards: torch.Tensor,
        values: torch.Tensor,
        response_mask: torch.Tensor,
        gamma: float,
        lam: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fn = self.core_algos.compute_gae_advantage_return
        self._record(fn)
        return fn(token_level_rewards, values, response_mask, gamma, lam)

    def policy_loss(
        self,
        old_log_prob: torch.Tensor,
        log_prob: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        fn = self._policy_loss_fn
        self._record(fn)
        if self._policy_loss_style == "registry":
            out = fn(
                old_log_prob,
                log_prob,
                advantages,
                response_mask,
                loss_agg_mode=self.loss_agg_mode,
                config=self.actor_config,
            )
        else:
            params = _params(fn)
            kwargs: dict[str, Any] = {"cliprange": self.clip_ratio}
            for name, value in (
                ("cliprange_low", self.clip_ratio),
                ("cliprange_high", self.clip_ratio),
                ("clip_ratio_c", self.clip_ratio_c),
                ("loss_agg_mode", self.loss_agg_mode),
            ):
                if name in params:
                    kwargs[name] = value
            out = fn(old_log_prob, log_prob, advantages, response_mask, **kwargs)
        return _normalise_policy_loss(out)

    def value_loss(
        self, vpreds: torch.Tensor, returns: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor
    ) -> tuple[torch.Tensor, float]:
        fn = self.core_algos.compute_value_loss
        self._record(fn)
        loss, clipfrac = fn(
            vpreds=vpreds,
            returns=returns,
            values=values,
            response_mask=response_mask,
            cliprange_value=self.cliprange_value,
            loss_agg_mode=self.loss_agg_mode,
            **self._value_loss_kwargs,
        )
        return loss, float(clipfrac)

    def kl(self, logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
        fn = self.core_algos.kl_penalty
        self._record(fn)
        return fn(logprob, ref_logprob, kl_penalty=self.kl_penalty_type)

    def kl_controller(self, kind: str, kl_coef: float, target_kl: float, horizon: int) -> Any:
        ca = self.core_algos
        getter = getattr(ca, "get_kl_controller", None)
        if getter is not None:
            from omegaconf import OmegaConf

            self._record(getter)
            cfg = OmegaConf.create(
                {"type": kind, "kl_coef": kl_coef, "target_kl": target_kl, "horizon": horizon}
            )
            ctrl = getter(cfg)
        elif kind == "adaptive":
            ctrl = ca.AdaptiveKLController(init_kl_coef=kl_coef, target_kl=target_kl, horizon=horizon)
        else:
            ctrl = ca.FixedKLController(kl_coef=kl_coef)
        self._record(type(ctrl))
        return ctrl

    def kl_controller_update(self, ctrl: Any, current_kl: float, n_steps: int) -> None:
        self._record(ctrl.update)
        ctrl.update(current_kl=current_kl, n_steps=n_steps)

    def entropy_loss(self, logits: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
        """verl actor's entropy term: agg_loss(entropy_from_logits(logits), mask, loss_agg_mode)."""
        ent = self.F.entropy_from_logits(logits)
        self._record(self.F.entropy_from_logits)
        self._record(self.core_algos.agg_loss)
        return self.core_algos.agg_loss(
            loss_mat=ent, loss_mask=response_mask, loss_agg_mode=self.loss_agg_mode
        )

    def logprobs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._record(self.F.logprobs_from_logits)
        return self.F.logprobs_from_logits(logits, labels)

    def masked_mean(self, values: torch.Tensor, mask: torch.Tensor, axis: int | None = None) -> torch.Tensor:
        self._record(self.F.masked_mean)
        return self.F.masked_mean(values, mask, axis=axis)

    def data_proto(self, tensors: dict[str, torch.Tensor], meta_info: dict | None = None) -> Any:
        from verl import DataProto

        self._record(DataProto.from_dict)
        return DataProto.from_dict(tensors=tensors, meta_info=meta_info or {})

    def split(self, data: Any, size: int) -> list[Any]:
        self._record(type(data).split)
        return data.split(size)

    # ---- provenance ------------------------------------------------------------------------------

    def functions_used(self) -> list[dict[str, Any]]:
        return [{"name": name, "calls": n} for name, n in sorted(self.calls.items())]

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": self.verl_path,
            "policy_loss": _qualname(self._policy_loss_fn),
            "policy_loss_style": self._policy_loss_style,
            "actor_config": _qualname(type(self.actor_config)),
            "value_loss_kwargs": sorted(self._value_loss_kwargs),
            "notes": list(self.notes),
            "functions": self.functions_used(),
        }


def _normalise_policy_loss(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, metrics) from either return shape: (loss, dict) >= 0.6.1 or (loss, clipfrac, kl, lower)."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        loss, raw = out
        metrics = {k.split("/", 1)[-1]: float(v) for k, v in raw.items()}
        return loss, metrics
    if isinstance(out, tuple) and len(out) in (3, 4):
        names = ("pg_clipfrac", "ppo_kl", "pg_clipfrac_lower")
        return out[0], {n: float(v) for n, v in zip(names, out[1:], strict=False)}
    raise GenbenchError(f"unexpected policy-loss return value: {type(out).__name__}")
