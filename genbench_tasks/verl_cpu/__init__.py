"""verl on CPU, from outside verl: a compatibility layer loaded through verl's own hook
``VERL_USE_EXTERNAL_MODULES=genbench_tasks.verl_cpu.hook`` (imported by ``import verl`` in every verl
process: driver, TaskRunner, workers, rollout servers).

One module per verl release family where they differ (:mod:`.v0_8`, :mod:`.v0_9`); shared patches in
:mod:`.common`; the ``hf`` rollout in :mod:`.rollout` / :mod:`.verl_rollout`. Every patch checks the names it
touches first (:mod:`.patches`); :func:`check_release` runs those checks against any release offline (its
wheel, in a subprocess), which is what ``genbench check-config`` reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import ModuleType
from typing import Any

from packaging.version import Version

from genbench_tasks.verl_cpu.patches import PatchResult, VerlCPULayerError, apply_patches, check_patches

HOOK_MODULE = "genbench_tasks.verl_cpu.hook"
FAMILIES = {"0.8": "v0_8", "0.9": "v0_9"}
_MARK = "GENBENCH_CPU_LAYER "
_installed: str | None = None


def family(version: str) -> ModuleType:
    """The family module for a verl release (``VerlCPULayerError`` for releases without one)."""
    import importlib

    v = Version(version)
    name = FAMILIES.get(f"{v.major}.{v.minor}")
    if name is None:
        raise VerlCPULayerError(
            f"verl {version}: the CPU layer supports verl {', '.join(f + '.x' for f in FAMILIES)} only"
        )
    return importlib.import_module(f"genbench_tasks.verl_cpu.{name}")


def overrides(version: str, seed: int) -> list[str]:
    """The Hydra overrides a CPU run of ``verl==version`` needs (on top of the profile's own)."""
    return family(version).overrides(seed)


def job_layer(version: str, seed: int, cache_dir: str | os.PathLike | None = None, *, install: bool = True):
    """The :class:`~genbench_tasks.verl.DeviceLayer` of a CPU run of ``verl==version``: this layer's
    overrides and env vars, and (``install``, when this environment has another verl) that release's cached
    ``--target`` install to put first on ``PYTHONPATH`` (built once per version)."""
    from genbench_tasks.verl import DeviceLayer, ensure_verl_env, installed_verl

    layer_overrides = overrides(version, seed)
    python_path = None
    if install and version != installed_verl():
        python_path = str(ensure_verl_env(version, cache_dir))
    return DeviceLayer(overrides=layer_overrides, env_vars=runtime_env_vars(), python_path=python_path)


def preflight(version: str) -> None:
    """The CPU job's own first check (in the job's environment, before verl starts): a layer family for
    this release and, for verl 0.9+, TransferQueue (its v1 trainer's data plane)."""
    import importlib.util

    family(version)
    if Version(version) >= Version("0.9.0") and importlib.util.find_spec("transfer_queue") is None:
        raise VerlCPULayerError(f"verl {version} needs TransferQueue (pip install TransferQueue==0.1.11)")


def runtime_env_vars() -> dict[str, str]:
    """What every process of a CPU verl run needs in its environment."""
    return {
        "VERL_USE_EXTERNAL_MODULES": HOOK_MODULE,
        "VERL_PLATFORM": "cpu",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _verl_version() -> str:
    verl = sys.modules.get("verl")
    if verl is None:
        import verl
    return str(verl.__version__)


def install() -> str:
    """Check, then apply, the patches for the running verl (idempotent). Returns the verl version."""
    global _installed
    version = _verl_version()
    if _installed == version:
        return version
    apply_patches(family(version).patches(), version)
    _installed = version
    return version


def check(expected: str | None = None) -> list[PatchResult]:
    """Check (never apply) every patch against the importable verl; ``expected`` must match its version."""
    version = _verl_version()
    if expected is not None and version != expected:
        raise VerlCPULayerError(f"imported verl {version}, expected {expected}")
    return check_patches(family(version).patches(), version)


def check_release(
    version: str, cache_dir: str | os.PathLike | None = None, timeout: float = 600
) -> list[dict]:
    """:func:`check` against ``verl==version`` from its wheel (unzipped once into the genbench cache), in a
    subprocess. Raises :class:`VerlCPULayerError` naming the first patch that does not apply."""
    from genbench_tasks.verl import ensure_verl_release

    family(version)  # unsupported family: fail before fetching anything
    release = ensure_verl_release(version, cache_dir)
    return check_path(str(release), version, timeout=timeout)


def check_path(root: str, version: str, timeout: float = 600) -> list[dict]:
    """:func:`check` with ``root`` (a directory holding ``verl/``) first on ``sys.path``."""
    env = {k: v for k, v in os.environ.items() if k != "VERL_USE_EXTERNAL_MODULES"}
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.update(CUDA_VISIBLE_DEVICES="", VERL_LOGGING_LEVEL="WARNING", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "genbench_tasks.verl_cpu", "check", "--expect", version, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise VerlCPULayerError(f"verl {version}: CPU layer check crashed (rc={proc.returncode}): {tail}")
    payload: dict[str, Any] = json.loads(lines[-1][len(_MARK) :])
    if payload.get("error"):
        raise VerlCPULayerError(payload["error"])
    failed = [r for r in payload["results"] if not r["ok"]]
    if failed:
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        raise VerlCPULayerError(failed[0]["detail"] + more)
    return payload["results"]
