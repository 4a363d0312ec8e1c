"""verl-side classes of the ``hf`` rollout (see :mod:`.rollout`): built on the running verl's
``RolloutReplica`` and ``BaseRollout``; ``_ROLLOUT_REGISTRY`` names :class:`HFServerAdapter` by path."""

from __future__ import annotations

import os
from typing import Any

import ray
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica

from genbench_tasks.verl_cpu.rollout import SERVER_PREFIX, HFRolloutServer, rollout_seed


class HFReplica(RolloutReplica):
    """One :class:`HFRolloutServer` per replica (world size 1), on the node of its hybrid worker."""

    async def launch_servers(self) -> None:
        if self.world_size != 1:
            raise ValueError(
                "rollout.name=hf runs one process per replica (tensor/data/pipeline parallel = 1); "
                f"got world size {self.world_size}"
            )
        kind = "reward_" if self.is_reward_model else "teacher_" if self.is_teacher_model else ""
        name = f"{SERVER_PREFIX}server_{kind}{self.replica_rank}_0{self.name_suffix}"
        node_id = ray.get_runtime_context().get_node_id()
        if self.workers:
            node_id = await self.workers[0].__ray_call__.remote(
                lambda _self: ray.get_runtime_context().get_node_id()
            )
        server = (
            ray.remote(HFRolloutServer)
            .options(
                name=name,
                num_cpus=0,
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    node_id=node_id, soft=False
                ),
                max_concurrency=self.max_concurrency,
            )
            .remote(
                config=self.config,
                model_config=self.model_config,
                replica_rank=self.replica_rank,
                seed=rollout_seed(self.config),
            )
        )
        self.servers = [server]
        self._server_handle = server
        self._server_address = name


class HFServerAdapter(BaseRollout):
    """The rollout inside each actor worker: forwards the actor's full weights to its replica's server."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, *args: Any, **kwargs: Any):
        replica_rank = kwargs.pop("replica_rank", -1)
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank if replica_rank == -1 else replica_rank
        self.server_handle = None

    def _server(self) -> Any:
        if self.server_handle is None:
            self.server_handle = ray.get_actor(f"{SERVER_PREFIX}server_{self.replica_rank}_0")
        return self.server_handle

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(self, weights: Any, global_steps: int | None = None, **kwargs: Any) -> None:
        wire = kwargs.get("wire_format", "named_tensors")
        if wire != "named_tensors":
            raise NotImplementedError(f"rollout.name=hf takes full tensors (got wire_format={wire!r})")
        if kwargs.get("peft_config") is not None:
            raise NotImplementedError("rollout.name=hf does not take LoRA adapters (set lora.merge=True)")
        state = {}
        for name, tensor in weights:
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[name] = full.detach().to("cpu").clone()
        await self._server().load_weights.remote(state, global_steps)
