"""verl 0.8.x: no platform layer yet (``verl.utils.device`` decides by ``torch.cuda``/``torch.npu``), so the
device module is ``torch.cpu``; flash-attn padding helpers have no CPU fallback yet."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from genbench_tasks.verl_cpu import common
from genbench_tasks.verl_cpu.patches import Patch, Target


def index_first_axis(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return tensor[indices]


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    out = hidden_states.new_zeros(batch * seqlen, *hidden_states.shape[1:])
    out[indices] = hidden_states
    return out.view(batch, seqlen, *hidden_states.shape[1:])


def unpad_input(hidden_states: torch.Tensor, attention_mask: torch.Tensor, unused_mask=None):
    masks = attention_mask + unused_mask if unused_mask is not None else attention_mask
    seqlens = masks.sum(dim=-1, dtype=torch.int32)
    used = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(masks.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return flat[indices], indices, cu_seqlens, int(seqlens.max().item()), used


def rearrange(*args: Any, **kwargs: Any) -> Any:
    from einops import rearrange as einops_rearrange

    return einops_rearrange(*args, **kwargs)


def _torch_padding(module: Any, _fn: Any) -> None:
    fns = (index_first_axis, pad_input, rearrange, unpad_input)
    module._get_attention_functions = lambda: fns


TORCH_PADDING = Patch(
    name="torch-padding",
    why="remove-padding helpers import flash_attn.bert_padding (CUDA wheels only); use pure-torch equivalents",
    targets=[
        Target("verl.utils.attention_utils", kind="module"),
        Target("verl.utils.attention_utils", "_get_attention_functions", "function"),
    ],
    apply=_torch_padding,
)


def patches() -> list[Patch]:
    return [
        common.TORCH_CPU_STUBS,
        common.GLOO,
        TORCH_PADDING,
        common.ENGINES_ON_CPU,
        common.HF_ROLLOUT,
        common.VALUEHEAD_SDPA,
        common.REF_OFFLOAD_UNPINNED,
    ]


def overrides(seed: int) -> list[str]:
    """0.8.x: the shared CPU overrides; Ray resources as 0.8's resource pools ask for them on a CPU host
    (a placement bundle of the custom resource ``cpu`` = the device name, and ``NPU`` for the accelerator
    count check when no ``GPU`` exists); the rollout seed (0.8 has no ``rollout.seed``) as
    ``rollout.custom.seed``."""
    return [
        *common.cpu_overrides(),
        "+ray_kwargs.ray_init.resources={cpu:1,NPU:1}",
        f"+actor_rollout_ref.rollout.custom.seed={int(seed)}",
    ]
