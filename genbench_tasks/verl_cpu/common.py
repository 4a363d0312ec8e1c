"""Patches shared by every supported verl release family (each family module lists the ones it uses)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from genbench_tasks.verl_cpu.patches import Patch, Target
from genbench_tasks.verl_cpu.rollout import ROLLOUT_NAME

log = logging.getLogger(__name__)

ADAPTER_PATH = "genbench_tasks.verl_cpu.verl_rollout.HFServerAdapter"
FSDP_IMPL = "verl.workers.engine.fsdp.transformer_impl"


def _torch_stubs(cpu_module: Any) -> None:
    from genbench_tasks.verl_cpu.cpu_device import install_stubs

    install_stubs(cpu_module)


TORCH_CPU_STUBS = Patch(
    name="torch-cpu-device",
    why="verl calls torch.cuda-style memory/RNG functions on its device module; torch.cpu lacks them",
    targets=[Target("torch.cpu", kind="module")],
    apply=_torch_stubs,
)


def _gloo_default(fn: Any) -> None:
    fn.__defaults__ = (*fn.__defaults__[:-1], "gloo")


GLOO = Patch(
    name="gloo-process-group",
    why="initialize_global_process_group_ray defaults to 'cpu:gloo,<device>:<nccl|hccl>': one gloo group on CPU",
    targets=[
        Target("verl.utils.distributed", "initialize_global_process_group_ray", "function", ("backend",)),
    ],
    apply=_gloo_default,
    extra_check=lambda fn: (
        None
        if fn.__code__.co_varnames[fn.__code__.co_argcount - 1] == "backend"
        and (fn.__defaults__ or ())[-1:] == (None,)
        else "initialize_global_process_group_ray's last parameter is no longer backend=None"
    ),
)


def _engines_on_cpu(engines: dict, _impl: Any) -> None:
    for backends in engines.values():
        for devices in backends.values():
            if "cuda" in devices and "cpu" not in devices:
                devices["cpu"] = devices["cuda"]


def _engines_present(engines: dict, _impl: Any) -> str | None:
    for model_type in ("language_model", "value_model"):
        backends = engines.get(model_type, {})
        if "cuda" not in backends.get("fsdp2", {}):
            return f"EngineRegistry._engines has no {model_type}/fsdp2/cuda engine to reuse on cpu"
    return None


ENGINES_ON_CPU = Patch(
    name="fsdp-engines-on-cpu",
    why="the FSDP engines are registered for cuda/npu only; the same classes run on cpu with gloo",
    targets=[
        Target("verl.workers.engine.base", "EngineRegistry._engines", kind="dict"),
        Target(FSDP_IMPL, kind="module"),
    ],
    apply=_engines_on_cpu,
    extra_check=_engines_present,
)


def _register_rollout(registry: dict, register: Any, _replica: Any, _base: Any, _output: Any) -> None:
    registry[(ROLLOUT_NAME, "async")] = ADAPTER_PATH
    register(ROLLOUT_NAME, lambda: importlib.import_module("genbench_tasks.verl_cpu.verl_rollout").HFReplica)


def _rollout_shapes(_registry: dict, _register: Any, replica: Any, _base: Any, output: Any) -> str | None:
    fields = getattr(output, "model_fields", {})
    missing = [f for f in ("token_ids", "log_probs", "stop_reason", "extra_fields") if f not in fields]
    if missing:
        return f"TokenOutput lacks field(s) {', '.join(missing)}"
    for attr in ("servers", "_server_handle", "_server_address"):
        if attr not in replica.__init__.__code__.co_names:
            return f"RolloutReplica.__init__ no longer sets {attr}"
    return None


HF_ROLLOUT = Patch(
    name="hf-rollout",
    why="rollout backends are vLLM/SGLang/TRT-LLM servers (GPU); register the CPU 'hf' replica + adapter",
    targets=[
        Target("verl.workers.rollout.base", "_ROLLOUT_REGISTRY", kind="dict"),
        Target(
            "verl.workers.rollout.replica", "RolloutReplicaRegistry.register", "function", ("name", "loader")
        ),
        Target("verl.workers.rollout.replica", "RolloutReplica", "class"),
        Target("verl.workers.rollout.base", "BaseRollout.update_weights", "function", ("weights",)),
        Target("verl.workers.rollout.replica", "TokenOutput", "class"),
    ],
    apply=_register_rollout,
    extra_check=_rollout_shapes,
)


def load_valuehead_model(local_path, torch_dtype, model_config, trust_remote_code):
    """verl's critic loader without flash-attention: a token-classification head, sdpa attention."""
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(
        local_path,
        dtype=torch_dtype,
        config=model_config,
        attn_implementation="sdpa",
        trust_remote_code=trust_remote_code,
    )


def _replace_valuehead(module: Any, _fn: Any) -> None:
    module.load_valuehead_model = load_valuehead_model


VALUEHEAD_SDPA = Patch(
    name="critic-sdpa",
    why="load_valuehead_model hard-codes attn_implementation='flash_attention_2' (CUDA only)",
    targets=[
        Target("verl.utils.model", kind="module"),
        Target(
            "verl.utils.model",
            "load_valuehead_model",
            "function",
            ("local_path", "torch_dtype", "model_config", "trust_remote_code"),
        ),
    ],
    apply=_replace_valuehead,
)


def _unpinned(impl: Any, policy: type) -> None:
    if getattr(policy, "_genbench_unpinned", False):
        return

    class CPUOffloadPolicy(policy):  # type: ignore[misc, valid-type]
        """torch's CPUOffloadPolicy with pinned memory off (pinning needs an accelerator)."""

        _genbench_unpinned = True

        def __init__(self, pin_memory: bool = True):
            super().__init__(pin_memory=False)

    impl.CPUOffloadPolicy = CPUOffloadPolicy


REF_OFFLOAD_UNPINNED = Patch(
    name="ref-offload-unpinned",
    why="the FSDP2 reference model uses CPUOffloadPolicy(pin_memory=True); pinning needs CUDA",
    targets=[Target(FSDP_IMPL, kind="module"), Target(FSDP_IMPL, "CPUOffloadPolicy", "class")],
    apply=_unpinned,
)


def cpu_overrides() -> list[str]:
    """Hydra overrides every CPU run needs, whatever the release: device, FSDP2 (FSDP1 wants a device id),
    sdpa attention, fp32 compute (bf16 autocast on CPU is slow and lossy for small models), the hf rollout,
    in-process data loading, one agent-loop/reward worker, one TransferQueue storage unit, full
    determinism in the FSDP engines, and no dashboard for the job's private Ray cluster."""
    from genbench_tasks.verl import override

    fp32 = [
        f"+{section}.mixed_precision.{kind}_dtype=fp32"
        for section in (
            "actor_rollout_ref.actor.fsdp_config",
            "actor_rollout_ref.ref.fsdp_config",
            "critic.fsdp",
        )
        for kind in ("param", "reduce", "buffer")
    ]
    items = [
        ("trainer.device", "cpu"),
        ("actor_rollout_ref.actor.strategy", "fsdp2"),
        ("actor_rollout_ref.ref.strategy", "fsdp2"),
        ("critic.strategy", "fsdp2"),
        ("actor_rollout_ref.rollout.name", ROLLOUT_NAME),
        ("data.dataloader_num_workers", 0),
        ("actor_rollout_ref.rollout.agent.num_workers", 1),
        ("reward.num_workers", 1),
        ("transfer_queue.backend.SimpleStorage.num_data_storage_units", 1),
        ("ray_kwargs.ray_init.num_cpus", 16),  # logical: verl's helper actors each reserve one
        ("actor_rollout_ref.actor.fsdp_config.full_determinism", True),
        ("actor_rollout_ref.ref.fsdp_config.full_determinism", True),
        ("critic.fsdp.full_determinism", True),
    ]
    return [
        *(override(k, v) for k, v in items),
        # the job's private Ray cluster serves nobody a dashboard: ~2 s and ~4 CPU-s less per start (measured)
        "+ray_kwargs.ray_init.include_dashboard=false",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "+critic.model.override_config.attn_implementation=sdpa",
        *fp32,
    ]
