"""The nightly study as plain functions; the Airflow DAG (dags/genbench_nightly.py) only wires them.

plan_run -> build_data -> validate_data -> check_verl_config (per version) -> plan_cells
-> [Ray jobs: SFT, PPO per version x seed, evaluation per label x seed] -> collect -> aggregate -> detect_regressions -> publish
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from genbench_tasks.artifacts.io import update_model, write_model
from genbench_tasks.artifacts.layout import VERDICTS, CellDir, RunLayout, WorkLayout
from genbench_tasks.artifacts.run import CheckpointRef, RunManifest, RunStatus
from genbench_tasks.errors import GenbenchError
from genbench_tasks.labels import SFT, TRL_PPO
from genbench_tasks.pipeline.cells import CellSpec, cell_key, verl_job, worker_entrypoint, write_spec
from genbench_tasks.profiles import DEFAULT_PROFILE
from genbench_tasks.provenance import code_version
from genbench_tasks.verl import ensure_verl_env, first_on_python_path, installed_verl, on_cpu

log = logging.getLogger(__name__)

# Cell artifacts too large to copy into every run directory (referenced by checkpoint.json instead).
_NOT_COPIED = {"checkpoint", "state", "hf", "tmp"}


class NightlyParams(BaseModel):
    """What a nightly or a manual run asks for (the Airflow Params form maps onto this)."""

    profile: str = DEFAULT_PROFILE
    verl_versions: list[str] | None = None  # None/empty: the profile's
    seeds: int | None = Field(default=None, ge=1)  # seeds 0..n-1; None: the profile's seeds
    families: list[str] | None = None  # None/empty: the profile's
    baseline_version: str | None = None  # None/"": the profile's, else the first version
    baselines: list[Literal["sft", "trl-ppo"]] | None = (
        None  # the study's reference rows; None: the profile's
    )
    profile_overrides: dict | None = None


class RunPlan(BaseModel):
    run_id: str
    run_name: str
    date: str
    rundir: str
    cells_dir: str
    profile_name: str
    profile: dict
    verl_versions: list[str]
    seeds: list[int]
    families: list[str]
    baseline_version: str
    baselines: list[str] = ["sft", "trl-ppo"]
    code_version: str
    data_hash: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.layout.data_dir

    @property
    def layout(self) -> RunLayout:
        return RunLayout(Path(self.rundir))

    def load_profile(self):
        from genbench_tasks.profiles import Profile

        return Profile.model_validate(self.profile)


class CellPlan(BaseModel):
    sft: CellSpec
    train: list[CellSpec]
    eval: list[CellSpec]

    def all(self) -> list[CellSpec]:
        return [self.sft, *self.train, *self.eval]


def write_run_manifest(plan: RunPlan, **fields) -> RunManifest:
    """Update the run manifest (``RUNDIR/manifest.json``) with the plan and ``fields``: a locked, atomic
    read-modify-write, so cells and tasks finishing together never lose each other's fields."""
    planned = {
        "run_id": plan.run_id,
        "run_name": plan.run_name,
        "date": plan.date,
        "profile": plan.profile_name,
        "profile_hash": plan.load_profile().config_hash(),
        "verl_versions": plan.verl_versions,
        "baseline_version": plan.baseline_version,
        "seeds": plan.seeds,
        "families": plan.families,
        "code_version": plan.code_version,
    }
    if plan.data_hash is not None:
        planned["data_hash"] = plan.data_hash

    def update(current: RunManifest | None) -> RunManifest:
        base = current.model_dump() if current is not None else {}
        updated = datetime.now(timezone.utc).isoformat()
        return RunManifest.model_validate({**base, **planned, **fields, "updated": updated})

    return update_model(plan.layout.manifest, RunManifest, update)


def plan_run(params: NightlyParams, work_dir: str | Path, run_id: str, date: str | None = None) -> RunPlan:
    """Resolve the profile and the matrix; create the run directory. Fails fast on bad input."""
    from genbench_tasks.families import get_family
    from genbench_tasks.profiles import load_profile

    profile = load_profile(params.profile, params.profile_overrides or None)
    families = params.families or profile.data.families
    for name in families:
        get_family(name)
        if name not in profile.data.families:
            raise GenbenchError(f"family {name!r} is not built by profile {profile.name!r}")
    versions = params.verl_versions or profile.verl_versions
    if not versions:
        raise GenbenchError("no verl versions to run")
    seeds = list(range(params.seeds)) if params.seeds else list(profile.seeds)
    if not seeds:
        raise GenbenchError(f"profile {profile.name!r} lists no seeds; give seeds >= 1")
    baseline = params.baseline_version or profile.baseline_version or versions[0]
    if baseline not in versions:
        log.warning("baseline %s is not in this run's versions %s; using %s", baseline, versions, versions[0])
        baseline = versions[0]
    date = date or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    work = WorkLayout(Path(work_dir))
    layout = work.run(date, run_id)
    run_name, rundir = layout.root.name, layout.root
    rundir.mkdir(parents=True, exist_ok=True)
    plan = RunPlan(
        run_id=run_id,
        run_name=run_name,
        date=date,
        rundir=str(rundir),
        cells_dir=str(work.cells),
        profile_name=profile.name,
        profile=profile.model_dump(mode="json"),
        verl_versions=versions,
        seeds=seeds,
        families=families,
        baseline_version=baseline,
        baselines=list(params.baselines if params.baselines is not None else profile.baselines),
        code_version=code_version(),
    )
    write_run_manifest(plan, status="running", started=datetime.now(timezone.utc).isoformat())
    log.info(
        "run %s: profile %s, versions %s, seeds %s -> %s",
        run_name,
        profile.name,
        versions,
        plan.seeds,
        rundir,
    )
    return plan


def build_data(plan: RunPlan) -> RunPlan:
    from genbench_tasks.data.build import build_datasets

    manifest = build_datasets(plan.load_profile(), plan.data_dir)
    plan = plan.model_copy(update={"data_hash": manifest.content_hash()})
    write_run_manifest(plan)
    return plan


def validate_data(plan: RunPlan) -> dict:
    """GX suites + contamination checks; raises DataValidationError (the run stops, the report still publishes)."""
    from genbench_tasks.validation import validate_dataset_dir

    # Data docs (HTML) are rendered by publish, off the critical path; unchanged data (same datasets.json,
    # profile and code) reuses the passing report kept in the work dir.
    report = validate_dataset_dir(
        plan.data_dir,
        profile=plan.load_profile(),
        report_dir=plan.layout.validation_dir,
        raise_on_failure=False,
        cache_dir=WorkLayout(work_dir(plan)).validation_cache,
    )
    write_run_manifest(plan, validation="passed" if report.success else "failed")
    if not report.success:
        from genbench_tasks.errors import DataValidationError

        raise DataValidationError(
            report.summary().splitlines()[0] if report.summary() else "validation failed"
        )
    return {"success": True, "report": str(report.report_path)}


def check_verl_config(plan: RunPlan, version: str) -> dict:
    """Compose the profile's verl overrides against that version's own Hydra config (and, on CPU, check the
    CPU layer against that release) before any job runs. A check that passed for the same genbench code,
    profile and release is not run again (~35 s on 2 cores): its report is kept in the work dir's
    ``config-checks/`` (a release's wheel never changes; everything else the check reads is in the key)."""
    from genbench_tasks.artifacts.io import read_model
    from genbench_tasks.hashing import content_key
    from genbench_tasks.pipeline.cells import check_run_config
    from genbench_tasks.verl import make_run
    from genbench_tasks.verl.config import VerlConfigReport

    profile = plan.load_profile()
    key = content_key(
        {"check": "verl-config", "code": code_version(), "profile": profile.config_hash(), "verl": version}
    )
    kept = WorkLayout(work_dir(plan)).config_checks / f"{key}.json"
    if kept.is_file():
        log.info(
            "verl %s: config and CPU layer checked before with this code and profile (%s)", version, kept
        )
        return read_model(kept, VerlConfigReport).short()
    report = check_run_config(profile, make_run(profile, version))
    if report.ok:
        write_model(kept, report)
    return report.short()


def plan_cells(plan: RunPlan) -> CellPlan:
    """Key every cell by its inputs and write its cell.json; finished cells keep their results."""
    if plan.data_hash is None:
        raise GenbenchError("plan_cells needs built data (data_hash)")
    profile = plan.load_profile()
    cells = Path(plan.cells_dir)
    common = {"profile": profile.config_hash(), "data": plan.data_hash}

    def make(kind, label, seed, version=None, checkpoint=None, upstream=None, families=None) -> CellSpec:
        key = cell_key(
            kind, label=label, seed=seed, verl=version, upstream=upstream, families=families, **common
        )
        spec = CellSpec(
            kind=kind,
            key=key,
            label=label,
            seed=seed,
            verl_version=version,
            profile=plan.profile,
            data_dir=str(plan.data_dir),
            cell_dir=str(cells / kind / key),
            checkpoint_dir=checkpoint,
            families=families,
        )
        write_spec(spec)
        return spec

    sft = make("sft", "sft", profile.data.seed)
    sft_ckpt = str(Path(sft.cell_dir) / "checkpoint")
    train = [
        make("train", v, s, version=v, checkpoint=sft_ckpt, upstream=sft.key)
        for v in plan.verl_versions
        for s in plan.seeds
    ]
    # Traditional PPO (TRL): one cell per seed per nightly, keyed without a verl version, so every version
    # of the night (and every later night with the same data and code) reuses it.
    if TRL_PPO in plan.baselines:
        train += [make("train", TRL_PPO, s, checkpoint=sft_ckpt, upstream=sft.key) for s in plan.seeds]
    evals = (
        [
            make("eval", SFT, s, checkpoint=sft_ckpt, upstream=sft.key, families=plan.families)
            for s in plan.seeds
        ]
        if SFT in plan.baselines
        else []
    )
    evals += [
        make(
            "eval",
            t.label,
            t.seed,
            checkpoint=str(Path(t.cell_dir) / "checkpoint"),
            upstream=t.key,
            families=plan.families,
        )
        for t in train
    ]
    cell_plan = CellPlan(sft=sft, train=train, eval=evals)
    write_model(plan.layout.cells, cell_plan)
    done = sum(c.is_done() for c in cell_plan.all())
    log.info("%d cells planned, %d already complete (cached)", len(cell_plan.all()), done)
    return cell_plan


def job_kwargs(plan: RunPlan, cell: CellSpec) -> dict:
    """RayJobOperator kwargs for one cell (entrypoint, deterministic id, runtime_env pinning verl).

    Backend ``verl``: PPO cells are verl ``main_ppo`` jobs (:func:`verl_job`); on GPUs every cell runs in the
    worker image of its verl version, on CPU (the embedded default) in this environment, another verl release
    first on ``PYTHONPATH`` from its cached install. Backend ``verl-core``: the same cached install for a PPO
    cell of another release. Every other cell runs ``genbench worker run CELL_DIR``.
    """
    from genbench_tasks.launch.ray_jobs import runtime_env_for_verl

    profile = plan.load_profile()
    gpu = profile.backend == "verl" and not on_cpu(profile)
    version = cell.verl_version or plan.baseline_version
    entrypoint, runtime_env = worker_entrypoint(cell.cell_dir), {}
    if cell.kind == "train" and profile.backend == "verl" and cell.label != TRL_PPO:
        job = verl_job(profile, cell)
        entrypoint, runtime_env = job.entrypoint, job.runtime_env
    elif gpu:
        image = profile.cluster.worker_image.format(verl_version=version)
        runtime_env = runtime_env_for_verl(version, image)
    elif cell.kind == "train" and cell.verl_version is not None and version != installed_verl():
        entrypoint = f"{first_on_python_path(ensure_verl_env(version))} && {entrypoint}"
    return {
        "entrypoint": entrypoint,
        "submission_id": cell.submission_id,
        "runtime_env": runtime_env,
        "entrypoint_num_cpus": 1,
        "entrypoint_num_gpus": _driver_gpus(profile, cell) if gpu else None,
        "metadata": {
            "genbench_cell": cell.key,
            "kind": cell.kind,
            "label": cell.label,
            "seed": str(cell.seed),
        },
    }


def _driver_gpus(profile, cell: CellSpec) -> int | None:
    """GPUs a production job's driver process needs: verl's trainer places its own GPU actors; a vLLM
    evaluation and TRL's single-process PPO run in the driver."""
    if cell.kind == "eval":
        return profile.cluster.tensor_parallel_size
    if cell.kind == "train" and cell.label == TRL_PPO:
        return 1
    return None


def pending(cells: list[CellSpec]) -> list[CellSpec]:
    return [c for c in cells if not c.is_done()]


def collect(plan: RunPlan, cell_plan: CellPlan) -> dict:
    """Copy finished cells' small artifacts into the run directory layout; report missing ones."""
    layout = plan.layout
    missing = []
    for cell in [cell_plan.sft, *cell_plan.train, *cell_plan.eval]:
        if cell.kind == "sft":
            dest = layout.train_cell(SFT)
        elif cell.kind == "train":
            dest = layout.train_cell(cell.label, cell.seed)
        else:
            dest = layout.eval_cell(cell.label, cell.seed)
        if not cell.is_done():
            missing.append(f"{cell.kind}:{cell.label}:seed={cell.seed}")
            continue
        if dest.path.exists():
            shutil.rmtree(dest.path)
        shutil.copytree(
            cell.cell_dir, dest.path, ignore=lambda d, names: [n for n in names if n in _NOT_COPIED]
        )
        source = CellDir(Path(cell.cell_dir))
        if source.checkpoint.is_dir():
            write_model(dest.checkpoint_ref, CheckpointRef(cell_key=cell.key, path=str(source.checkpoint)))
    if missing:
        log.warning("%d cells missing (failed or not run): %s", len(missing), ", ".join(missing))
    write_run_manifest(plan, missing_cells=missing)
    return {"missing": missing}


def work_dir(plan: RunPlan) -> Path:
    """The nightly's work directory (holds runs/, cells/ and history/)."""
    return Path(plan.cells_dir).parent


VERDICTS_NAME = VERDICTS


def detect_regressions(plan: RunPlan) -> dict:
    """After aggregation: add this run to the history (``<work_dir>/history/``, rebuilt from the local runs
    if missing), detect changes over it for this run's versions (change points per version, stability, every
    version vs the baseline since the last change of either side) and write ``verdicts.json``. Tonight's
    version-vs-baseline comparison (single night, with item-level tests) stays in comparison.json as
    descriptive detail."""
    from genbench_tasks.evaluation.compare import compare_versions, write_comparisons
    from genbench_tasks.evaluation.history import (
        default_history_dir,
        read_history,
        rebuild_history,
        record_run,
        series_from_history,
    )
    from genbench_tasks.scoring.detection import detect

    rundir, layout = Path(plan.rundir), plan.layout
    compare_versions(rundir, baseline=plan.baseline_version)
    if not layout.comparison.is_file():
        write_comparisons(layout.comparison, [])
    history = default_history_dir(work_dir(plan))
    if not history.is_dir():
        log.warning(
            "history %s missing: rebuilding it from the run directories in %s", history, rundir.parent
        )
        rebuild_history(rundir.parent, history)
    if not record_run(rundir, history):
        log.warning("run %s has no results: nothing added to the history", plan.run_name)
        write_run_manifest(plan, verdicts={})
        return {"verdicts": {}, "history": str(history)}
    df = read_history(history)
    df = df[(df["profile"] == plan.profile_name) & df["version"].isin(plan.verl_versions)]
    series, notes = series_from_history(df)
    result = detect(series, baseline=plan.baseline_version, trends=True)
    result.warnings[:0] = notes
    write_model(layout.verdicts, result)
    counts: dict[str, int] = {}
    for v in [*result.verdicts, *result.versus_baseline]:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    write_run_manifest(plan, verdicts=counts)
    log.info("verdicts over %d night(s) of history: %s", df["night"].nunique(), counts)
    return {"verdicts": counts, "history": str(history)}


def mark_finished(plan: RunPlan, status: RunStatus) -> None:
    write_run_manifest(
        plan, status=status, finished=datetime.now(timezone.utc).isoformat(), finished_ts=time.time()
    )
