"""Content-addressed cells: the expensive units of a nightly (SFT, PPO per version x seed, evaluation).

A cell's key hashes everything its result depends on (kind, verl version, resolved profile, dataset
hashes, seed, code version, and the key of the checkpoint it consumes). Cells live in a cache directory
on storage shared by Airflow and Ray workers; a cell whose `_SUCCESS` marker exists is never recomputed,
so re-running a nightly recomputes nothing and a retry redoes only what failed.

Every Ray job the nightly submits runs through one worker entry point, `genbench worker` (module
`genbench_tasks.cli.worker`): `run CELL_DIR` computes a cell here (:func:`run_cell`); a production verl
train cell runs verl's own trainer between `verl-preflight` and `verl-finish` (:func:`verl_job`).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from genbench_tasks.artifacts.cells import CellDone, CellKind, CellSpec
from genbench_tasks.artifacts.io import read_model, write_model
from genbench_tasks.artifacts.layout import CELL_DONE, CELL_SPEC, CellDir
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key
from genbench_tasks.labels import TRL_PPO
from genbench_tasks.profiles import Profile
from genbench_tasks.provenance import code_version
from genbench_tasks.verl import VerlJob, VerlRun, build_job_spec, data_files, on_cpu, validate_run
from genbench_tasks.verl.config import ConfigCheck, VerlConfigReport

log = logging.getLogger(__name__)

SPEC_NAME = CELL_SPEC
SUCCESS_NAME = CELL_DONE


def cell_key(kind: CellKind, **inputs) -> str:
    return content_key({"kind": kind, "code": code_version(), **inputs})


def write_spec(spec: CellSpec) -> Path:
    return write_model(CellDir(Path(spec.cell_dir)).spec, spec)


def read_spec(cell_dir: str | Path) -> CellSpec:
    path = CellDir(Path(cell_dir)).spec
    if not path.is_file():
        raise GenbenchError(f"{cell_dir} is not a cell directory (no {path.name})")
    return read_model(path, CellSpec)


def mark_done(spec: CellSpec, wall_s: float) -> None:
    done = CellDone(key=spec.key, wall_s=round(wall_s, 3), finished=time.time())
    write_model(CellDir(Path(spec.cell_dir)).done_marker, done)


def run_cell(cell_dir: str | Path, printer: Callable[[str], None] = print) -> BaseModel | None:
    """Compute one cell in this process; returns its result (SFT, train or eval), ``None`` when the cell was
    already complete (idempotent). ``printer`` gets the trainers' per-step progress lines."""
    spec = read_spec(cell_dir)
    if spec.is_done():
        log.info("cell %s (%s) already complete: nothing to do", spec.key, spec.kind)
        return None
    profile = Profile.model_validate(spec.profile)
    started = time.time()
    log.info("cell %s: %s label=%s seed=%d", spec.key, spec.kind, spec.label, spec.seed)
    if spec.kind == "sft":
        from genbench_tasks.training.sft import ensure_sft

        result = ensure_sft(profile, spec.data_dir, spec.cell_dir)
    elif spec.kind == "train" and spec.label == TRL_PPO:
        from genbench_tasks.training import trl_ppo

        result = trl_ppo.train_run(
            profile,
            spec.seed,
            spec.data_dir,
            spec.cell_dir,
            init_checkpoint=spec.checkpoint_dir,
            resume=True,
            printer=printer,
        )
    elif spec.kind == "train":
        if profile.backend == "verl":
            raise GenbenchError(
                f"cell {spec.key}: backend verl trains through verl's main_ppo job (verl_job), "
                "not `genbench worker run`"
            )
        from genbench_tasks.training.ppo_core import train_run

        result = train_run(
            profile,
            verl_version=spec.verl_version,
            seed=spec.seed,
            data_dir=spec.data_dir,
            out_dir=spec.cell_dir,
            init_checkpoint=spec.checkpoint_dir,
            resume=True,
            printer=printer,
        )
    else:
        from genbench_tasks.evaluation.run import evaluate_checkpoint

        result = evaluate_checkpoint(
            checkpoint_dir=spec.checkpoint_dir,
            data_dir=spec.data_dir,
            seed=spec.seed,
            out_dir=spec.cell_dir,
            families=spec.families,
            settings=profile.eval,
            model_label=spec.label,
        )
    mark_done(spec, time.time() - started)
    log.info("cell %s done in %.1fs", spec.key, time.time() - started)
    return result


def worker_entrypoint(cell_dir: str | Path) -> str:
    """The Ray job entrypoint that computes the cell in ``cell_dir`` (the one worker entry point)."""
    return f"python -m genbench_tasks.cli worker run {shlex.quote(str(cell_dir))}"


def check_run_config(
    profile: Profile, run: VerlRun, *, native: bool = True, cache_dir: str | None = None
) -> VerlConfigReport:
    """What ``genbench check-config`` and the nightly's check task run for one verl run: its overrides composed
    against the release's own config (see :func:`genbench_tasks.verl.validate_run`); on ``cluster.device:
    cpu`` with the CPU layer's overrides, and every CPU-layer patch checked against that release's wheel
    (:func:`genbench_tasks.verl_cpu.check_release`, in a subprocess, ~15-45 s), so a verl release that breaks
    the layer is reported before a nightly trains."""
    layer = None
    if on_cpu(profile):
        from genbench_tasks import verl_cpu

        layer = verl_cpu.job_layer(run.verl_version, run.seed, cache_dir, install=False)
    report = validate_run(profile, run, layer=layer, native=native, cache_dir=cache_dir)
    if layer is not None:
        patches = verl_cpu.check_release(run.verl_version, cache_dir)
        names = ", ".join(r["name"] for r in patches)
        report.checks.append(
            ConfigCheck(name="cpu-layer", status="ok", detail=f"{len(patches)} patches: {names}")
        )
    return report


def verl_job(profile: Profile, cell: CellSpec, **kwargs) -> VerlJob:
    """The verl ``main_ppo`` job of a train cell: data from ``cell.data_dir``, init model ``cell.checkpoint_dir``
    (the SFT output), outputs in ``cell.cell_dir``; on ``cluster.device: cpu`` with the CPU layer
    (``kwargs`` go to :func:`genbench_tasks.verl.build_job_spec`)."""
    if not cell.verl_version:
        raise GenbenchError(f"cell {cell.key} has no verl version")
    train, val = data_files(profile, cell.data_dir)
    run = VerlRun(
        verl_version=cell.verl_version,
        seed=cell.seed,
        train_files=train,
        val_files=val,
        output_dir=cell.cell_dir,
        model_path=cell.checkpoint_dir,
    )
    return run_job(profile, run, **kwargs)


def run_job(profile: Profile, run: VerlRun, **kwargs) -> VerlJob:
    """:func:`genbench_tasks.verl.build_job_spec` for ``run``, with the CPU layer on ``cluster.device: cpu``
    (its cached install of another verl release built here, once)."""
    if on_cpu(profile):
        from genbench_tasks import verl_cpu

        kwargs.setdefault("layer", verl_cpu.job_layer(run.verl_version, run.seed, kwargs.get("cache_dir")))
    return build_job_spec(profile, run, **kwargs)


def run_verl_job_here(
    job: VerlJob, printer: Callable[[str], None] = print, timeout: float | None = None
) -> int:
    """Run a verl job's entrypoint with bash in this process's environment, as the Ray job driver would (its
    runtime_env's env vars applied; ``image_uri`` cannot apply here). Output lines go to ``printer``."""
    import os
    import subprocess
    import sys

    if job.image_uri:
        raise GenbenchError(
            f"job for verl {job.verl_version} runs in image {job.image_uri}: submit it to Ray"
        )
    env = {**os.environ, **job.runtime_env.get("env_vars", {})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` = this one
    proc = subprocess.Popen(
        ["bash", "-c", job.entrypoint], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        printer(line.rstrip("\n"))
    return proc.wait(timeout=timeout)
