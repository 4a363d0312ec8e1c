"""``RUNDIR/comparison.json``: candidate vs baseline tables of one night, and how their PPO training runs
compare seed by seed (``evaluation.compare``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from genbench_tasks.artifacts.metrics import higher_is_better, min_effect

FORMAT_VERSION = 1
Verdict = Literal["regression", "improvement", "no change", "insufficient data"]
StabilityVerdict = Literal["variance increase", "no change", "insufficient data"]


class CompareConfig(BaseModel):
    """Settings of :func:`compare`."""

    alpha: float = 0.05
    power: float = 0.8
    confidence: float = 0.95
    n_bootstrap: int = 10_000
    n_bootstrap_items: int = 4_000
    n_bootstrap_bleu: int = 1_000
    seed: int = 0
    #: absolute minimum effect per metric; over the metric registry's; ``pass@*`` matches pass@k
    min_effect: dict[str, float] = Field(default_factory=dict)
    #: direction overrides of the metric registry's
    higher_is_better: dict[str, bool] = Field(default_factory=dict)
    #: use the item-level p (when available) as the row's primary p. Off by default: the item-level tests
    #: condition on the trained seeds and over-reject when seeds differ (see module docstring)
    prefer_paired: bool = False
    #: restrict to these metrics (default: every metric present in the runs)
    metrics: list[str] | None = None

    def min_effect_for(self, metric: str) -> float:
        if metric in self.min_effect:
            return self.min_effect[metric]
        if metric.startswith("pass@") and "pass@*" in self.min_effect:
            return self.min_effect["pass@*"]
        return min_effect(metric)

    def higher_is_better_for(self, metric: str) -> bool:
        return self.higher_is_better.get(metric, higher_is_better(metric))


class ComparisonRow(BaseModel):
    """Candidate vs baseline on one (family, metric). ``diff`` is always candidate minus baseline."""

    family: str
    metric: str
    higher_is_better: bool
    n_candidate: int
    n_baseline: int
    mean_candidate: float | None
    mean_baseline: float | None
    std_candidate: float | None
    std_baseline: float | None
    diff: float | None
    diff_ci: tuple[float, float] | None
    p_welch: float | None
    paired_test: str | None = None
    diff_paired: float | None = None
    diff_ci_paired: tuple[float, float] | None = None
    p_paired: float | None = None
    p_adjusted: float | None = None
    p_variance: float | None = None
    p_variance_adjusted: float | None = None
    min_effect: float
    min_detectable_effect: float | None
    min_detectable_effect_paired: float | None = None
    verdict: Verdict
    stability_verdict: StabilityVerdict
    notes: list[str] = Field(default_factory=list)

    def shown_diff(self) -> tuple[float | None, tuple[float, float] | None]:
        """The difference and CI the verdict rests on: item-level (paired) when available, else run-level."""
        if self.paired_test and self.diff_paired is not None:
            return self.diff_paired, self.diff_ci_paired
        return self.diff, self.diff_ci


class SideRef(BaseModel):
    rundir: str
    label: str
    seeds: list[int] = Field(default_factory=list)


class LabeledRow(ComparisonRow):
    """A comparison row that also names its candidate and baseline labels."""

    candidate: str
    baseline: str


TrainerVerdict = Literal["identical", "differs", "not comparable", "insufficient data"]


class SeedTrajectory(BaseModel):
    """One seed's PPO training, candidate vs baseline, step by step (timing figures left out).

    With one seed, the same data and the same SFT init, a deterministic trainer repeats itself bit for bit:
    any difference is the trainer's (its code, defaults or overrides), not noise."""

    seed: int
    steps_candidate: int
    steps_baseline: int
    verdict: TrainerVerdict
    #: first step whose figures differ (None: identical over the common steps, or not comparable)
    first_differing_step: int | None = None
    #: the figures that differ at that step (sorted; shared keys only) and the keys only one side logs
    differing: list[str] = Field(default_factory=list)
    only_candidate: list[str] = Field(default_factory=list)
    only_baseline: list[str] = Field(default_factory=list)
    reward_mean_candidate: float | None = None  # at first_differing_step
    reward_mean_baseline: float | None = None
    note: str | None = None


class TrainerComparison(BaseModel):
    """Do the two sides' trainers behave alike? ``differs`` when any comparable seed's trajectory differs,
    ``identical`` when every comparable seed's is bit-identical."""

    verdict: TrainerVerdict
    seeds: list[SeedTrajectory] = Field(default_factory=list)


class Comparison(BaseModel):
    candidate: SideRef
    baseline: SideRef
    generated_at: str
    config: CompareConfig
    rows: list[LabeledRow]
    #: PPO training trajectories per seed (None: neither side has training runs, e.g. the SFT row)
    trainer: TrainerComparison | None = None
    warnings: list[str] = Field(default_factory=list)


class ComparisonFile(BaseModel):
    format_version: int = FORMAT_VERSION
    comparisons: list[Comparison] = Field(default_factory=list)
