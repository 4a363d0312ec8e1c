"""``RUNDIR/manifest.json`` (the run manifest) and ``checkpoint.json`` (a collected cell's checkpoint)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["running", "success", "partial", "failed", "failed-validation"]


class RunManifest(BaseModel):
    """What a nightly run is and how far it got; written (locked, atomically) as the run advances."""

    run_id: str
    run_name: str
    date: str
    profile: str
    profile_hash: str
    verl_versions: list[str]
    baseline_version: str
    seeds: list[int]
    families: list[str]
    code_version: str
    data_hash: str | None = None
    status: RunStatus = "running"
    validation: Literal["passed", "failed"] | None = None
    missing_cells: list[str] = Field(default_factory=list)
    #: verdict name -> count over verdicts.json (None: detection has not run)
    verdicts: dict[str, int] | None = None
    started: str | None = None
    finished: str | None = None
    finished_ts: float | None = None
    updated: str | None = None

    @property
    def run_key(self) -> str:
        from genbench_tasks.artifacts.layout import run_key

        return run_key(self.date, self.run_id)


class CheckpointRef(BaseModel):
    """``checkpoint.json``: a cell's checkpoint stays in the cell cache; the run directory points to it."""

    cell_key: str
    path: str


class PublishRecord(BaseModel):
    """``RUNDIR/.publish_result.json``: where a run's report went (local only: dot files are not uploaded)."""

    model_config = ConfigDict(extra="allow")  # the rest of ``publish.s3.PublishResult``

    run_key: str
    report_uri: str
    report_url: str | None = None
    status: RunStatus
    local_report: str
