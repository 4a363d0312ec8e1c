"""``torch.cpu`` as verl's device module: the ``torch.cuda`` calls verl makes that ``torch.cpu`` lacks
(memory statistics, cache flushes, RNG state), as no-ops or their CPU meaning. Added only where missing."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def _mem_get_info(device: Any = None) -> tuple[int, int]:
    import psutil

    vm = psutil.virtual_memory()
    return int(vm.available), int(vm.total)


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


STUBS: dict[str, Any] = {
    "empty_cache": _noop,
    "ipc_collect": _noop,
    "reset_peak_memory_stats": _noop,
    "set_per_process_memory_fraction": _noop,
    "mem_get_info": _mem_get_info,
    "memory_allocated": _zero,
    "memory_reserved": _zero,
    "max_memory_allocated": _zero,
    "max_memory_reserved": _zero,
    "memory_stats": lambda *a, **k: {},
    "get_rng_state": lambda *a, **k: torch.get_rng_state(),
    "set_rng_state": lambda state, *a, **k: torch.set_rng_state(state),
    "manual_seed": lambda seed: torch.manual_seed(seed),
    "manual_seed_all": lambda seed: torch.manual_seed(seed),
    "get_device_name": lambda *a, **k: "cpu",
    "get_device_capability": lambda *a, **k: (None, None),
    "is_initialized": lambda: True,
}


def install_stubs(module: Any = torch.cpu) -> list[str]:
    """Add the missing names to ``torch.cpu``; returns those added."""
    added = []
    for name, fn in STUBS.items():
        if not hasattr(module, name):
            setattr(module, name, fn)
            added.append(name)
    if not hasattr(module, "nvtx"):
        module.nvtx = type("nvtx", (), {"range": staticmethod(lambda *a, **k: contextlib.nullcontext())})
    return added
