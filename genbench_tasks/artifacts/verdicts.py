"""``RUNDIR/verdicts.json``: what change detection over the history found (``scoring.detection``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from genbench_tasks.artifacts.comparison import CompareConfig

VerdictName = Literal["regression", "improvement", "no change", "inconclusive", "insufficient data"]
StabilityName = Literal["variance increase", "no change", "insufficient data"]
SCHEMA = "genbench.verdicts/1"


class DetectConfig(BaseModel):
    """Settings of :func:`detect` (defaults calibrated by ``benchmarks/bench_detection.py``)."""

    max_pvalue: float = 0.008
    permutations: int = 999
    energy_exponent: float = 1.0
    kappa_search: bool = False
    #: unit the permutation test exchanges; "auto": seeds, or whole nights when the nights vary more than
    #: their seeds explain (F test of night means within segments, p <= night_effect_pvalue)
    permute: Literal["auto", "replicates", "nights"] = "auto"
    night_effect_pvalue: float = 0.01
    window: int = 60
    min_nights: int = 3
    mde_nights: int = 5
    alpha: float = 0.05
    power: float = 0.8
    confidence: float = 0.95
    stability_pvalue: float = 0.0005
    #: None: detect per series; True/False: force
    deterministic: bool | None = None
    #: absolute minimum effect per metric, over the metric registry's
    min_effect: dict[str, float] = Field(default_factory=dict)
    higher_is_better: dict[str, bool] = Field(default_factory=dict)
    seed: int = 0
    max_seeds_needed: int = 1000

    def _compare(self) -> CompareConfig:
        return CompareConfig(min_effect=self.min_effect, higher_is_better=self.higher_is_better)

    def min_effect_for(self, metric: str) -> float | None:
        """The minimum effect that matters; None when none is known for the metric."""
        value = self._compare().min_effect_for(metric)
        return value if value > 0 else None

    def higher_is_better_for(self, metric: str) -> bool:
        return self._compare().higher_is_better_for(metric)


class Interval(BaseModel):
    estimate: float
    low: float | None
    high: float | None
    confidence: float


class Segment(BaseModel):
    """Nights on one side of a change: range, counts, mean over all values, the nearest runs."""

    first_night: str
    last_night: str
    nights: int
    values: int
    mean: float
    runs: list[str] = Field(default_factory=list)


class Stability(BaseModel):
    verdict: StabilityName
    p_value: float | None = None
    change_night: str | None = None
    sd_ratio: Interval | None = None
    df: tuple[int, int] | None = None


class TrendPoint(BaseModel):
    """One night of a series: mean, sample std (None for one value) and count of its seeds' values."""

    night: str
    mean: float
    std: float | None
    n: int


class HistoryVerdict(BaseModel):
    """One (version, family, metric) over its history; ``trend`` only when asked for (the report's chart)."""

    version: str
    family: str
    metric: str
    higher_is_better: bool
    verdict: VerdictName
    change_night: str | None = None
    change_points: list[str] = Field(default_factory=list)
    p_value: float | None = None
    effect: Interval | None = None
    before: Segment | None = None
    after: Segment | None = None
    mde: float | None = None
    mde_nights: int
    min_effect: float | None
    seeds_per_night: float | None = None
    seeds_needed: int | None = None
    nights: int
    first_night: str | None = None
    last_night: str | None = None
    deterministic: bool = False
    stability: Stability
    notes: list[str] = Field(default_factory=list)
    trend: list[TrendPoint] = Field(default_factory=list)


class BaselineVerdict(BaseModel):
    """A version against the baseline, pooled over the nights since the last change of either side."""

    version: str
    baseline: str
    family: str
    metric: str
    higher_is_better: bool
    verdict: VerdictName
    since_night: str | None = None
    nights: int = 0
    effect: Interval | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    df: float | None = None
    mde: float | None = None
    min_effect: float | None
    seeds_needed: int | None = None
    deterministic: bool = False
    notes: list[str] = Field(default_factory=list)


class Detection(BaseModel):
    """``verdicts.json``: what :func:`detect` found."""

    schema_: str = Field(SCHEMA, alias="schema")
    latest_night: str | None
    baseline: str | None = None
    config: DetectConfig
    verdicts: list[HistoryVerdict]
    versus_baseline: list[BaselineVerdict] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    model_config = {"populate_by_name": True}
