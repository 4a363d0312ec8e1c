"""The metric registry (one name, direction and minimum effect per metric) and the per-run metrics model.

Names are those of :meth:`RunMetrics.flat` and of every table, history row and verdict: ``success_rate``,
``bleu``, ``consistency``, ``reward_mean``, ``reward_std``, ``pass@<k>`` (declared once as ``pass@k``) and
the across-seed ``success_rate_std``. A family lists the metrics it computes by these names
(``reward_mean`` brings ``reward_std``; ``pass@k`` brings every ``pass@<k>``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MetricSpec(BaseModel):
    """One metric: its name, whether higher is better, the smallest difference worth flagging, its label."""

    model_config = ConfigDict(frozen=True)

    name: str
    higher_is_better: bool
    min_effect: float = 0.0
    label: str
    #: a family may ask for it (``family.metrics``); False for across-seed or derived statistics
    per_run: bool = True


#: Success/consistency/pass@k are fractions in [0, 1], BLEU is in points 0-100, reward in reward units.
METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec(name="success_rate", higher_is_better=True, min_effect=0.02, label="Success Rate"),
        MetricSpec(name="bleu", higher_is_better=True, min_effect=1.0, label="BLEU-4"),
        MetricSpec(name="consistency", higher_is_better=True, min_effect=0.02, label="Consistency"),
        MetricSpec(name="reward_mean", higher_is_better=True, min_effect=0.02, label="Reward Mean"),
        MetricSpec(
            name="reward_std", higher_is_better=False, min_effect=0.02, label="Reward Std", per_run=False
        ),
        MetricSpec(name="pass@k", higher_is_better=True, min_effect=0.02, label="pass@k"),
        MetricSpec(name="success_rate_std", higher_is_better=False, label="Success Rate Std", per_run=False),
    )
}
#: Metrics a family can declare.
FAMILY_METRICS: frozenset[str] = frozenset(n for n, m in METRICS.items() if m.per_run)
#: The study's Table 1 columns, in order.
TABLE1_METRICS = ("success_rate", "bleu", "consistency", "reward_mean")


def metric_spec(name: str) -> MetricSpec:
    """The registry entry of ``name`` (``pass@5`` -> ``pass@k``); an unregistered metric is higher-is-better
    unless it ends in ``_std``, with no minimum effect."""
    if name in METRICS:
        return METRICS[name]
    if name.startswith("pass@"):
        return METRICS["pass@k"].model_copy(update={"name": name, "label": name})
    return MetricSpec(name=name, higher_is_better=not name.endswith("_std"), label=name)


def higher_is_better(name: str) -> bool:
    return metric_spec(name).higher_is_better


def min_effect(name: str) -> float:
    return metric_spec(name).min_effect


def metric_label(name: str) -> str:
    return metric_spec(name).label


class BleuResult(BaseModel):
    """Corpus BLEU-4 with the sacrebleu signature that makes it reproducible."""

    score: float
    signature: str
    n_segments: int


class RunMetrics(BaseModel):
    """Metrics of one run. A metric that was not requested (or cannot be computed) is None."""

    success_rate: float | None = Field(None, description="fraction of samples with passed=True")
    bleu: BleuResult | None = Field(None, description="sacrebleu corpus BLEU-4 over samples with a reference")
    consistency: float | None = Field(
        None, description="mean pairwise cosine within prompt, mean over prompts"
    )
    reward_mean: float | None = Field(None, description="mean reward over samples")
    reward_std: float | None = Field(None, description="population std (ddof=0) of reward over samples")
    pass_at_k: dict[int, float] = Field(
        default_factory=dict, description="unbiased pass@k by k, mean over prompts (flat: pass@<k>)"
    )
    n_prompts: int
    n_samples: int

    def flat(self) -> dict[str, float | None]:
        """Scalar metrics by their registry names (``pass@<k>`` for pass@k)."""
        out: dict[str, float | None] = {
            "success_rate": self.success_rate,
            "bleu": self.bleu.score if self.bleu is not None else None,
            "consistency": self.consistency,
            "reward_mean": self.reward_mean,
            "reward_std": self.reward_std,
        }
        out.update({f"pass@{k}": v for k, v in sorted(self.pass_at_k.items())})
        return out
