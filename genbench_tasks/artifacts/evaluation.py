"""An evaluation cell (``eval/<label>/seed=<n>/``): ``samples.<family>.jsonl``, ``metrics.json``,
``manifest.json`` (written last: its presence marks a complete run)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from genbench_tasks.artifacts.metrics import RunMetrics
from genbench_tasks.profiles import EvalSettings

FORMAT_VERSION = 1


class SampleLine(BaseModel):
    """One line of ``samples.<family>.jsonl``."""

    prompt_id: str
    sample_index: int
    text: str
    reward: float
    passed: bool
    reason: str
    reference: str | None = None
    n_tokens: int | None = None
    finish_reason: str | None = None


class FamilyMetrics(BaseModel):
    """Metrics of one family in one run (``metrics.json`` → ``families.<name>``)."""

    family: str
    role: str | None = None
    data_source: str | None = None
    split: str = "test"
    metrics: RunMetrics
    flat: dict[str, float | None] = Field(default_factory=dict, description="RunMetrics.flat()")
    samples_file: str | None = None


class EvalMetrics(BaseModel):
    """``metrics.json`` of one evaluation run (one model label, one seed)."""

    format_version: int = FORMAT_VERSION
    model_label: str
    seed: int
    families: dict[str, FamilyMetrics]


class FamilyTiming(BaseModel):
    prompts: int
    samples: int
    generate_s: float
    score_s: float
    metrics_s: float


class EvalManifest(BaseModel):
    """``manifest.json`` of an evaluation run: everything needed to reproduce or cache it. Written last."""

    format_version: int = FORMAT_VERSION
    complete: bool
    cache_key: str
    model_label: str
    seed: int
    checkpoint: str
    checkpoint_sha256: str
    data_dir: str
    data_hash: str
    families: list[str]
    settings: EvalSettings
    sampling: dict[str, Any]
    embedder: str | None
    versions: dict[str, str]
    platform: dict[str, str]
    timings: dict[str, Any]
    started_at: str
    finished_at: str
    sandbox: str | None = None  # the isolation that ran code families' samples (None: no code scored)
