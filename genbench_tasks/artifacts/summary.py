"""``RUNDIR/summary.json``: the study's tables across seeds (written by ``evaluation.aggregate``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
Role = Literal["train", "heldout"]


class Summary(BaseModel):
    """Mean of n values with sample std (ddof=1) and a 95% percentile-bootstrap CI of the mean."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


class RunRecord(BaseModel):
    """One evaluation run: a (version, family, seed) with its scalar metrics."""

    model_config = ConfigDict(extra="ignore")

    version: str
    family: str
    seed: int
    metrics: dict[str, float | None]


class BaselineDiff(BaseModel):
    """A verl version minus one of the study's baseline rows (SFT, traditional PPO), across seeds.

    ``diff`` = mean over the version's seeds minus mean over the baseline's; ``ci_*`` a percentile-bootstrap
    interval (sides resampled independently); ``p_value`` Welch's two-sided test. Descriptive: the nightly's
    verdicts come from the history (``scoring.detection``), not from these rows.
    """

    version: str
    baseline: str
    family: str
    metric: str
    n_version: int
    n_baseline: int
    diff: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None


class Table1Row(BaseModel):
    """Table 1: metric summaries across seeds for one version."""

    version: str
    n_runs: int
    success_rate: Summary
    bleu: Summary
    consistency: Summary
    reward_mean: Summary


class Table2Row(BaseModel):
    """Table 2: seed-to-seed spread for one version.

    ``success_rate_std`` is the sample std (ddof=1) across seeds of the per-run success rate;
    ``reward_std`` is the sample std (ddof=1) across seeds of the per-run *reward mean* (not the within-run
    reward std). None with fewer than 2 runs.
    """

    version: str
    n_runs: int
    success_rate_std: float | None
    reward_std: float | None


class FamilyTables(BaseModel):
    family: str
    role: Role | None
    table1: list[Table1Row]
    table2: list[Table2Row]


class GapRow(BaseModel):
    """Generalization gap of one version: in-domain minus held-out success, per seed then summarized.

    For each seed with both kinds of family: ``in_domain`` = mean success over train-role families,
    ``heldout`` = mean over heldout families, gap = their difference. ``gap`` summarizes the per-seed gaps
    (mean, ddof=1 std, bootstrap-over-seeds CI).
    """

    version: str
    n_seeds: int
    in_domain_success: float | None
    heldout_success: float | None
    gap: Summary


class StudyTables(BaseModel):
    families: dict[str, FamilyTables]
    generalization_gap: list[GapRow]


class ItemResult(BaseModel):
    """Results of one item on one side, one entry per seed (run), in any consistent seed order."""

    passed: list[bool] | None = None
    reward: list[float] | None = None
    hypothesis: list[str] | None = None
    reference: str | None = None


class MissingCell(BaseModel):
    """A (label, seed[, family]) that has no usable result."""

    label: str
    seed: int | None = None
    family: str | None = None
    reason: str


class FamilySummary(BaseModel):
    family: str
    role: str | None
    table1: list[Table1Row]
    table2: list[Table2Row]
    n: dict[str, int] = Field(description="label -> number of runs (seeds) in this family's cells")
    seeds: dict[str, list[int]] = Field(description="label -> seeds present")


class StudySummary(BaseModel):
    """``RUNDIR/summary.json``."""

    format_version: int = FORMAT_VERSION
    rundir: str
    generated_at: str
    labels: list[str]
    seeds: list[int] = Field(description="expected seeds: every seed seen for any label (or as given)")
    families: dict[str, FamilySummary]
    generalization_gap: list[GapRow]
    #: Each verl version minus each of the study's baselines (SFT, traditional PPO) present in the run.
    baseline_differences: list[BaselineDiff] = Field(default_factory=list)
    runs: list[RunRecord]
    items: dict[str, dict[str, dict[str, ItemResult]]] = Field(
        default_factory=dict, description="label -> family -> item id -> per-seed results"
    )
    item_seeds: dict[str, dict[str, list[int]]] = Field(
        default_factory=dict, description="label -> family -> seed order of the item lists"
    )
    missing: list[MissingCell] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
