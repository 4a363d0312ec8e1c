"""Content-addressed cells: the expensive units of a nightly (SFT, PPO per version x seed, evaluation).

A cell's key hashes everything its result depends on (kind, verl version, resolved profile, dataset
hashes, seed, code version, and the key of the checkpoint it consumes). Cells live in a cache directory
on storage shared by Airflow and Ray workers; a cell whose `_SUCCESS` marker exists is never recomputed,
so re-running a nightly recomputes nothing and a retry redoes only what failed.

`python -m genbench_tasks.pipeline.cells run CELL_DIR` is the Ray job entry point for every cell.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from genbench_tasks.artifacts.io import read_model, write_model
from genbench_tasks.artifacts.layout import CELL_DONE, CELL_SPEC, CellDir
from genbench_tasks.labels import TRL_PPO
from genbench_tasks.provenance import code_version

log = logging.getLogger(__name__)

CellKind = Literal["sft", "train", "eval"]
SPEC_NAME = CELL_SPEC
SUCCESS_NAME = CELL_DONE


class CellSpec(BaseModel):
    """Everything a worker needs to compute one cell; written as cell.json in the cell dir."""

    kind: CellKind
    key: str
    label: str  # a baseline ("sft", "trl-ppo") or the verl version
    seed: int
    verl_version: str | None = None
    profile: dict  # resolved Profile (model_dump)
    data_dir: str
    cell_dir: str
    checkpoint_dir: str | None = None  # eval: the checkpoint to evaluate; train: the SFT init
    families: list[str] | None = None

    @property
    def submission_id(self) -> str:
        """Deterministic Ray submission id: same inputs, same job (re-submitting attaches)."""
        label = (self.verl_version or self.label).replace(".", "_")
        return f"genbench-{self.kind}-{label}-s{self.seed}-{self.key[:12]}"

    def is_done(self) -> bool:
        return CellDir(Path(self.cell_dir)).done_marker.is_file()


def cell_key(kind: CellKind, **inputs) -> str:
    blob = json.dumps({"kind": kind, "code": code_version(), **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class CellDone(BaseModel):
    """The ``_SUCCESS`` marker: written last, its presence makes a cell complete."""

    key: str
    wall_s: float
    finished: float


def write_spec(spec: CellSpec) -> Path:
    return write_model(CellDir(Path(spec.cell_dir)).spec, spec)


def read_spec(cell_dir: str | Path) -> CellSpec:
    return read_model(CellDir(Path(cell_dir)).spec, CellSpec)


def mark_done(spec: CellSpec, wall_s: float) -> None:
    done = CellDone(key=spec.key, wall_s=round(wall_s, 3), finished=time.time())
    write_model(CellDir(Path(spec.cell_dir)).done_marker, done)


def run_cell(cell_dir: str | Path) -> CellSpec:
    """Compute one cell in this process (idempotent: a finished cell returns at once)."""
    from genbench_tasks.profiles import Profile

    spec = read_spec(cell_dir)
    if spec.is_done():
        log.info("cell %s (%s) already complete: nothing to do", spec.key, spec.kind)
        return spec
    profile = Profile.model_validate(spec.profile)
    started = time.time()
    log.info("cell %s: %s label=%s seed=%d", spec.key, spec.kind, spec.label, spec.seed)
    if spec.kind == "sft":
        from genbench_tasks.training.sft import ensure_sft

        ensure_sft(profile, spec.data_dir, spec.cell_dir)
    elif spec.kind == "train" and spec.label == TRL_PPO:
        from genbench_tasks.training import trl_ppo

        trl_ppo.train_run(
            profile,
            spec.seed,
            spec.data_dir,
            spec.cell_dir,
            init_checkpoint=spec.checkpoint_dir,
            resume=True,
        )
    elif spec.kind == "train":
        from genbench_tasks.training.ppo_core import train_run

        train_run(
            profile,
            verl_version=spec.verl_version,
            seed=spec.seed,
            data_dir=spec.data_dir,
            out_dir=spec.cell_dir,
            init_checkpoint=spec.checkpoint_dir,
            resume=True,
        )
    else:
        from genbench_tasks.evaluation.run import evaluate_checkpoint

        evaluate_checkpoint(
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
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genbench_tasks.pipeline.cells",
        description="Compute one pipeline cell (SFT, PPO or evaluation) described by CELL_DIR/cell.json.",
    )
    parser.add_argument("command", choices=["run"], help="run the cell (skips if already complete)")
    parser.add_argument("cell_dir", help="directory holding cell.json")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="accepted for Ray retries; cells always resume from their own state",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    from genbench_tasks.errors import GenbenchError

    try:
        run_cell(args.cell_dir)
    except GenbenchError as exc:
        print(f"genbench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
