"""verl 0.9.x: the CPU platform through ``verl.plugin.platform`` (new in 0.9), the shared patches, and the
dispatch-order sampler of the v1 trainer (``trainer.v1.sampler.custom_sampler``)."""

from __future__ import annotations

import os
from typing import Any

from genbench_tasks.verl_cpu import common
from genbench_tasks.verl_cpu.patches import Patch, Target
from genbench_tasks.verl_cpu.platform import PLATFORM_NAME, make_platform_class

SAMPLER_MODULE = "genbench_tasks.verl_cpu.v1_sampler"
SAMPLER_CLASS = "DispatchOrderReplayBuffer"


def _register_platform(registry: Any, base: type, manager: Any) -> None:
    cls = make_platform_class(base)
    registry.register(platform=PLATFORM_NAME)(cls)
    os.environ["VERL_PLATFORM"] = PLATFORM_NAME
    current = manager._current_platform
    if current is not None and current.device_name != "cpu":
        manager.set_platform(cls())


CPU_PLATFORM = Patch(
    name="cpu-platform",
    why="verl picks its device, collectives and Ray resource through a platform; none exists for CPU",
    targets=[
        Target("verl.plugin.platform.platform_manager", "PlatformRegistry", "class"),
        Target("verl.plugin.platform.platform_base", "PlatformBase", "class"),
        Target("verl.plugin.platform.platform_manager", kind="module"),
    ],
    apply=_register_platform,
    extra_check=lambda registry, base, manager: (
        None
        if hasattr(registry, "register")
        and hasattr(manager, "set_platform")
        and hasattr(manager, "_current_platform")
        else "platform_manager lacks PlatformRegistry.register / set_platform / _current_platform"
    ),
)

SAMPLER = Patch(
    name="dispatch-order-sampler",
    why="the v1 replay buffer materialises a batch in rollout completion order (timing-dependent)",
    targets=[
        Target(
            "verl.trainer.ppo.v1.replay_buffer",
            "ReplayBuffer._materialize_batch",
            "function",
            ("partition_id", "selected_prompt_uids", "partition_snapshot"),
        ),
        Target(
            "verl.trainer.ppo.v1.replay_buffer", "ReplayBuffer._sync_metadata_from_transfer_queue", "function"
        ),
    ],
    apply=lambda *objs: None,  # used through trainer.v1.sampler.custom_sampler, not patched in
)


def patches() -> list[Patch]:
    return [
        common.TORCH_CPU_STUBS,
        CPU_PLATFORM,
        common.GLOO,
        common.ENGINES_ON_CPU,
        common.HF_ROLLOUT,
        common.VALUEHEAD_SDPA,
        common.REF_OFFLOAD_UNPINNED,
        SAMPLER,
    ]


def overrides(seed: int) -> list[str]:
    """0.9.x: the shared CPU overrides, one logical Ray GPU (the platform's resource), rollout determinism
    (``rollout.seed`` is already a seed key), and the dispatch-order sampler."""
    return [
        *common.cpu_overrides(),
        "+ray_kwargs.ray_init.num_gpus=1",
        "actor_rollout_ref.rollout.full_determinism=true",
        f"trainer.v1.sampler.custom_sampler.path=pkg://{SAMPLER_MODULE}",
        f"trainer.v1.sampler.custom_sampler.name={SAMPLER_CLASS}",
    ]
