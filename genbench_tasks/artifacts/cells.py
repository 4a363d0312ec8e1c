"""``cells/<kind>/<key>/cell.json`` and ``_SUCCESS``: what a content-addressed cell computes and that it is
complete (written by ``pipeline.cells``; copied with the cell into ``RUNDIR/train|eval/...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from genbench_tasks.artifacts.layout import CellDir

CellKind = Literal["sft", "train", "eval"]


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


class CellDone(BaseModel):
    """The ``_SUCCESS`` marker: written last, its presence makes a cell complete."""

    key: str
    wall_s: float
    finished: float
