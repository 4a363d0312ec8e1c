"""Statistics across seeds and verl versions: study tables and candidate-vs-baseline regression detection.

Inputs are per-run records (:class:`RunRecord`: version, family, seed, scalar metrics as produced by
``RunMetrics.flat()``), and optionally per-item results (:class:`ItemResult`) for paired tests. Runs are
evaluations on a family's *test* split.

Run-level comparison, per (family, metric):

* Welch's t-test on the per-run values; percentile-bootstrap CI (``scipy.stats.bootstrap``) of the mean
  difference ``mean(candidate) - mean(baseline)`` (each side resampled independently, seeded).
* Minimum detectable effect (two-sided alpha, power ``1 - beta``), two-sample t formula::

      MDE = (t_{1-alpha/2, df} + t_{1-beta, df}) * s_pooled * sqrt(1/n_c + 1/n_b),  df = n_c + n_b - 2

  (the usual approximation of the noncentral-t power equation, slightly optimistic for tiny df).
* Stability: Brown–Forsythe (``scipy.stats.levene(center="median")``), read one-sidedly for a variance
  *increase* of the candidate. For two groups the statistic is the square of the pooled t statistic on the
  absolute deviations from the group medians, so the one-sided p is ``p/2`` when the candidate's mean
  absolute deviation is larger and ``1 - p/2`` otherwise. Needs >= 3 runs a side: with 2 runs both absolute
  deviations of a side are equal by construction and the test degenerates.

Item-level (paired) comparison, when items are given (same item ids on both sides; values per seed):

* The unit is the *item*; per side, an item's value is its mean over seeds.
* ``success_rate``: McNemar's exact test (binomial on discordant items) with each item reduced to a
  per-side **majority vote over seeds** (pass iff more than half of the seeds passed; an exact tie counts as
  fail). One pair per item keeps pairs independent; pairing (item, seed) would need a meaningless seed
  matching and would treat the seeds of one item as independent.
* ``reward_mean``: two-sided percentile-bootstrap p of the crossed bootstrap below.
* ``bleu``: sacrebleu's paired bootstrap (``PairedTest(test_type="bs")``) on segments = (item, seed
  position) pairs, over the seed positions both sides have, each with the item's reference.
* CI of the mean difference (success, reward): crossed bootstrap over items *and* seeds — each replicate
  resamples items with replacement and, independently per side, the seed runs with replacement (one draw of
  seeds for all items, so a seed's whole-model effect moves together).
* Paired MDE from the standard deviation ``s_d`` of per-item differences over ``n`` items::

      MDE = (t_{1-alpha/2, n-1} + t_{1-beta, n-1}) * s_d / sqrt(n)

  For BLEU the differences are of sentence-level BLEU (sacrebleu ``sentence_bleu``), an approximation of
  the corpus-BLEU scale.

Caveat, measured by simulation (5 seeds a side, 200 items, 200 draws, no true change, logit-normal seed
effect with sd 0.3): McNemar and sacrebleu's paired bootstrap condition on the trained seeds, so
seed-to-seed model differences register as significant (McNemar rejected ~22% at alpha 0.05); the crossed
bootstrap includes seed variability but with only 5 seeds is still anti-conservative (~12%), and without
any seed effect it is conservative (it counts generation noise twice). Welch on per-run values stayed at
~5% in both settings and was at least as powerful in them (for a balanced design the run-mean t-test is the
exact mixed-model test of the version effect). Hence the verdict uses Welch's p unless
``CompareConfig.prefer_paired`` is set; the item-level numbers are reported on every row.

Multiple testing: Benjamini–Hochberg over all compared (family, metric) rows, applied to each row's primary
p (Welch's, or the paired p when ``prefer_paired`` and available), and separately over the variance-test
p values.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats as sps

from genbench_tasks.artifacts.comparison import CompareConfig, ComparisonRow
from genbench_tasks.artifacts.metrics import higher_is_better
from genbench_tasks.artifacts.summary import (
    BaselineDiff,
    FamilyTables,
    GapRow,
    ItemResult,
    Role,
    RunRecord,
    StudyTables,
    Summary,
    Table1Row,
    Table2Row,
)
from genbench_tasks.errors import GenbenchError
from genbench_tasks.labels import label_key

__all__ = [
    "CompareConfig",
    "ComparisonRow",
    "FamilyTables",
    "GapRow",
    "ItemResult",
    "PairedResult",
    "RunRecord",
    "StudyTables",
    "Summary",
    "Table1Row",
    "Table2Row",
    "benjamini_hochberg",
    "bootstrap_diff_ci",
    "compare",
    "describe",
    "higher_is_better",
    "mcnemar_exact",
    "min_detectable_effect_paired",
    "min_detectable_effect_two_sample",
    "paired_item_comparison",
    "study_tables",
    "variance_increase_test",
    "welch_test",
]

_ITEM_FIELD = {"success_rate": "passed", "reward_mean": "reward", "bleu": "hypothesis"}
_CHUNK = 2_000_000  # max elements of one bootstrap block


# ---------------------------------------------------------------------------------------------- tables
def baseline_differences(
    runs: Iterable[RunRecord | Mapping[str, Any]],
    baselines: Sequence[str],
    metrics: Sequence[str] = ("success_rate", "reward_mean"),
    *,
    confidence: float = 0.95,
) -> list[BaselineDiff]:
    """Every non-baseline label against every baseline label present, per family and metric."""
    records = _as_runs(runs)
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in records:
        for m in metrics:
            if (v := r.metrics.get(m)) is not None and math.isfinite(v):
                values[(r.version, r.family, m)].append(float(v))
    labels = sorted({r.version for r in records}, key=label_key)
    families = sorted({r.family for r in records})
    out = []
    for version in (x for x in labels if x not in baselines):
        for baseline in (b for b in baselines if b in labels):
            for family in families:
                for m in metrics:
                    a, b = values.get((version, family, m), []), values.get((baseline, family, m), [])
                    if not a or not b:
                        continue
                    ci = bootstrap_diff_ci(a, b, confidence=confidence)
                    out.append(
                        BaselineDiff(
                            version=version,
                            baseline=baseline,
                            family=family,
                            metric=m,
                            n_version=len(a),
                            n_baseline=len(b),
                            diff=float(np.mean(a) - np.mean(b)),
                            ci_low=ci[0] if ci else None,
                            ci_high=ci[1] if ci else None,
                            p_value=welch_test(a, b)[0],
                        )
                    )
    return out


class PairedResult(BaseModel):
    """Item-level comparison of one metric (see module docstring for the tests)."""

    metric: str
    test: str
    n_items: int
    n_seeds_candidate: int
    n_seeds_baseline: int
    diff: float | None
    diff_ci: tuple[float, float] | None
    p_value: float | None
    min_detectable_effect: float | None
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------- helpers
def _clean(values: Iterable[float | None]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x.mean(axis=axis)


def _mean_diff(c: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return c.mean(axis=axis) - b.mean(axis=axis)


def _bootstrap_ci(
    samples: tuple[np.ndarray, ...], statistic: Any, n_resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Seeded percentile-bootstrap CI (``scipy.stats.bootstrap``); samples are resampled independently."""
    ci = sps.bootstrap(
        samples,
        statistic,
        n_resamples=n_resamples,
        batch=max(1, _CHUNK // max(len(s) for s in samples)),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(ci.low), float(ci.high)


def _percentile_ci(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [a, 1.0 - a])
    return float(lo), float(hi)


def describe(
    values: Iterable[float | None], *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> Summary:
    """Summary of values (None/NaN dropped): mean, ddof=1 std and seeded percentile-bootstrap CI of the
    mean; std and CI are None when n < 2."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Summary(n=0, mean=None, std=None, ci_low=None, ci_high=None)
    mean = float(x.mean())
    if n < 2:
        return Summary(n=1, mean=mean, std=None, ci_low=None, ci_high=None)
    lo, hi = _bootstrap_ci((x,), _mean, n_resamples, confidence, seed)
    return Summary(n=n, mean=mean, std=float(x.std(ddof=1)), ci_low=lo, ci_high=hi)


def _as_runs(runs: Iterable[RunRecord | Mapping[str, Any]]) -> list[RunRecord]:
    out = [r if isinstance(r, RunRecord) else RunRecord.model_validate(r) for r in runs]
    seen: set[tuple[str, str, int]] = set()
    for r in out:
        key = (r.version, r.family, r.seed)
        if key in seen:
            raise GenbenchError(f"duplicate run: version={r.version} family={r.family} seed={r.seed}")
        seen.add(key)
    return out


# ---------------------------------------------------------------------------------------- study tables
def study_tables(
    runs: Iterable[RunRecord | Mapping[str, Any]],
    roles: Mapping[str, Role] | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> StudyTables:
    """Per family, Table 1 and Table 2 per version; and the generalization gap per version (needs roles)."""
    records = _as_runs(runs)
    roles = dict(roles or {})
    kw: dict[str, Any] = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    by_fv: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_fv[r.family][r.version].append(r)

    def col(rs: list[RunRecord], m: str) -> list[float | None]:
        return [r.metrics.get(m) for r in rs]

    def std(rs: list[RunRecord], m: str) -> float | None:
        x = _clean(col(rs, m))
        return float(x.std(ddof=1)) if len(x) >= 2 else None

    families: dict[str, FamilyTables] = {}
    for family in sorted(by_fv):
        t1, t2 = [], []
        for version in sorted(by_fv[family], key=label_key):
            rs = sorted(by_fv[family][version], key=lambda r: r.seed)
            t1.append(
                Table1Row(
                    version=version,
                    n_runs=len(rs),
                    **{
                        m: describe(col(rs, m), **kw)
                        for m in ("success_rate", "bleu", "consistency", "reward_mean")
                    },
                )
            )
            t2.append(
                Table2Row(
                    version=version,
                    n_runs=len(rs),
                    success_rate_std=std(rs, "success_rate"),
                    reward_std=std(rs, "reward_mean"),
                )
            )
        families[family] = FamilyTables(family=family, role=roles.get(family), table1=t1, table2=t2)

    gaps: list[GapRow] = []
    versions = sorted({r.version for r in records}, key=label_key)
    for version in versions:
        per_seed: dict[int, dict[str, list[float]]] = defaultdict(lambda: {"train": [], "heldout": []})
        for r in records:
            s = r.metrics.get("success_rate")
            role = roles.get(r.family)
            if r.version == version and role in ("train", "heldout") and s is not None and math.isfinite(s):
                per_seed[r.seed][role].append(s)
        complete = {k: v for k, v in per_seed.items() if v["train"] and v["heldout"]}
        if not roles or not complete:
            continue
        ins = [float(np.mean(v["train"])) for _, v in sorted(complete.items())]
        outs = [float(np.mean(v["heldout"])) for _, v in sorted(complete.items())]
        gaps.append(
            GapRow(
                version=version,
                n_seeds=len(complete),
                in_domain_success=float(np.mean(ins)),
                heldout_success=float(np.mean(outs)),
                gap=describe([a - b for a, b in zip(ins, outs, strict=True)], **kw),
            )
        )
    return StudyTables(families=families, generalization_gap=gaps)


# ------------------------------------------------------------------------------------------ primitives
def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg adjusted p values (``scipy.stats.false_discovery_control``); None entries are
    skipped and stay None (they do not count in m)."""
    idx = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    out: list[float | None] = [None] * len(p_values)
    if idx:
        adjusted = sps.false_discovery_control(np.asarray([p_values[i] for i in idx], dtype=np.float64))
        for i, q in zip(idx, adjusted, strict=True):
            out[i] = float(q)
    return out


def welch_test(candidate: Sequence[float], baseline: Sequence[float]) -> tuple[float | None, list[str]]:
    """Two-sided Welch t-test p value; None with fewer than 2 values a side.

    Zero variance on both sides: p = 1 if the means are equal, else 0 (the t statistic is infinite).
    """
    c, b = _clean(candidate), _clean(baseline)
    if len(c) < 2 or len(b) < 2:
        return None, []
    if c.var() == 0 and b.var() == 0:
        if c[0] == b[0]:
            return 1.0, ["zero variance on both sides, equal values"]
        return 0.0, ["zero variance on both sides, different values: p set to 0"]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(sps.ttest_ind(c, b, equal_var=False).pvalue)
    if not math.isfinite(p):
        return None, ["Welch p is NaN"]
    return p, []


def bootstrap_diff_ci(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile-bootstrap CI of ``mean(candidate) - mean(baseline)``, sides resampled independently."""
    c, b = _clean(candidate), _clean(baseline)
    if len(c) < 2 or len(b) < 2:
        return None
    return _bootstrap_ci((c, b), _mean_diff, n_resamples, confidence, seed)


def variance_increase_test(
    candidate: Sequence[float], baseline: Sequence[float]
) -> tuple[float | None, list[str]]:
    """One-sided Brown–Forsythe p for ``var(candidate) > var(baseline)``; None with fewer than 3 a side."""
    c, b = _clean(candidate), _clean(baseline)
    if len(c) < 3 or len(b) < 3:
        return None, ["variance test needs >= 3 runs a side"]
    zc, zb = np.abs(c - np.median(c)), np.abs(b - np.median(b))
    if zc.max() == 0 and zb.max() == 0:
        return 1.0, ["zero spread on both sides"]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(sps.levene(c, b, center="median").pvalue)
    if not math.isfinite(p):
        return None, ["Brown-Forsythe p is NaN"]
    return (p / 2.0 if zc.mean() > zb.mean() else 1.0 - p / 2.0), []


def _power_quantiles(alpha: float, power: float, df: float) -> float:
    return float(sps.t.ppf(1.0 - alpha / 2.0, df) + sps.t.ppf(power, df))


def min_detectable_effect_two_sample(
    candidate: Sequence[float], baseline: Sequence[float], *, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """``(t_{1-a/2,df} + t_{power,df}) * s_pooled * sqrt(1/n_c + 1/n_b)``, df = n_c + n_b - 2."""
    c, b = _clean(candidate), _clean(baseline)
    nc, nb = len(c), len(b)
    if nc < 2 or nb < 2:
        return None
    df = nc + nb - 2
    s_pooled = math.sqrt(((nc - 1) * c.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / df)
    return _power_quantiles(alpha, power, df) * s_pooled * math.sqrt(1.0 / nc + 1.0 / nb)


def min_detectable_effect_paired(
    differences: Sequence[float], *, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """``(t_{1-a/2,n-1} + t_{power,n-1}) * s_d / sqrt(n)`` for n paired differences with std s_d."""
    d = _clean(differences)
    n = len(d)
    if n < 2:
        return None
    return _power_quantiles(alpha, power, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)


def mcnemar_exact(candidate_pass: Sequence[bool], baseline_pass: Sequence[bool]) -> float:
    """Two-sided exact McNemar p: binomial(0.5) test on the discordant pairs; 1.0 if there are none."""
    c = np.asarray(candidate_pass, dtype=bool)
    b = np.asarray(baseline_pass, dtype=bool)
    if c.shape != b.shape:
        raise GenbenchError("McNemar needs the same items on both sides")
    n01 = int(np.sum(c & ~b))
    n10 = int(np.sum(~c & b))
    if n01 + n10 == 0:
        return 1.0
    return float(sps.binomtest(n01, n01 + n10, 0.5).pvalue)


def _crossed_bootstrap(
    cand: np.ndarray, base: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Mean differences under resampling of items (rows) and, per side, of seed columns (one draw per
    replicate shared by all items)."""
    n, sc = cand.shape
    sb = base.shape[1]
    step = max(1, _CHUNK // max(n, 1))
    out = []
    for start in range(0, n_resamples, step):
        k = min(step, n_resamples - start)
        wc = rng.multinomial(sc, np.full(sc, 1.0 / sc), size=k) / sc
        wb = rng.multinomial(sb, np.full(sb, 1.0 / sb), size=k) / sb
        wi = rng.multinomial(n, np.full(n, 1.0 / n), size=k) / n
        out.append(np.sum(wi * (wc @ cand.T - wb @ base.T), axis=1))
    return np.concatenate(out)


def _bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p for H0: difference = 0."""
    b = len(draws)
    lo = (np.sum(draws <= 0) + 1) / (b + 1)
    hi = (np.sum(draws >= 0) + 1) / (b + 1)
    return float(min(1.0, 2.0 * min(lo, hi)))


def _item_matrix(items: Mapping[str, ItemResult], ids: list[str], field: str, notes: list[str], side: str):
    rows = [getattr(items[i], field) for i in ids]
    if any(r is None or len(r) == 0 for r in rows):
        return None
    width = min(len(r) for r in rows)
    if any(len(r) != width for r in rows):
        notes.append(f"{side}: ragged seed lists, truncated to {width} seeds")
    return [list(r)[:width] for r in rows]


def paired_item_comparison(
    candidate_items: Mapping[str, ItemResult | Mapping[str, Any]],
    baseline_items: Mapping[str, ItemResult | Mapping[str, Any]],
    metric: str,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    confidence: float = 0.95,
    n_resamples: int = 4_000,
    n_resamples_bleu: int = 1_000,
    seed: int = 0,
) -> PairedResult | None:
    """Item-level comparison of ``success_rate``, ``reward_mean`` or ``bleu`` (module docstring).

    None when the metric has no item-level field, or when the items lack it on either side.
    """
    field = _ITEM_FIELD.get(metric)
    if field is None:
        return None
    cand = {
        k: v if isinstance(v, ItemResult) else ItemResult.model_validate(v)
        for k, v in candidate_items.items()
    }
    base = {
        k: v if isinstance(v, ItemResult) else ItemResult.model_validate(v) for k, v in baseline_items.items()
    }
    ids = sorted(set(cand) & set(base))
    notes: list[str] = []
    if len(ids) < len(cand) or len(ids) < len(base):
        notes.append(f"{len(ids)} items common to both sides (candidate {len(cand)}, baseline {len(base)})")
    if not ids:
        return None
    mc = _item_matrix(cand, ids, field, notes, "candidate")
    mb = _item_matrix(base, ids, field, notes, "baseline")
    if mc is None or mb is None:
        return None
    sc, sb = len(mc[0]), len(mb[0])
    kw: dict[str, Any] = {
        "metric": metric,
        "n_items": len(ids),
        "n_seeds_candidate": sc,
        "n_seeds_baseline": sb,
        "notes": notes,
    }
    rng = np.random.default_rng(seed)

    if metric == "bleu":
        return _paired_bleu(
            cand, base, ids, mc, mb, alpha=alpha, power=power, n_resamples=n_resamples_bleu, **kw
        )

    c = np.asarray(mc, dtype=np.float64)
    b = np.asarray(mb, dtype=np.float64)
    d = c.mean(axis=1) - b.mean(axis=1)
    draws = _crossed_bootstrap(c, b, n_resamples, rng)
    if metric == "success_rate":
        test = "mcnemar_exact_item_majority"
        p = mcnemar_exact(c.mean(axis=1) > 0.5, b.mean(axis=1) > 0.5)
    else:
        test = "bootstrap_items_seeds"
        p = _bootstrap_p(draws)
    return PairedResult(
        test=test,
        diff=float(d.mean()),
        diff_ci=_percentile_ci(draws, confidence),
        p_value=p,
        min_detectable_effect=min_detectable_effect_paired(d, alpha=alpha, power=power),
        **kw,
    )


def _paired_bleu(
    cand: Mapping[str, ItemResult],
    base: Mapping[str, ItemResult],
    ids: list[str],
    mc: list[list[str]],
    mb: list[list[str]],
    *,
    alpha: float,
    power: float,
    n_resamples: int,
    **kw: Any,
) -> PairedResult | None:
    from sacrebleu import sentence_bleu
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    notes: list[str] = kw["notes"]
    refs: list[str] = []
    for i in ids:
        ref = base[i].reference if base[i].reference is not None else cand[i].reference
        if ref is None:
            notes.append("bleu: items without a reference")
            return None
        if cand[i].reference is not None and cand[i].reference != ref:
            raise GenbenchError(f"item {i!r} has different references on the two sides")
        refs.append(ref)
    s = min(len(mc[0]), len(mb[0]))
    if s < max(len(mc[0]), len(mb[0])):
        notes.append(f"bleu: paired over the first {s} seed positions")
    hyp_c = [mc[j][k] for j in range(len(ids)) for k in range(s)]
    hyp_b = [mb[j][k] for j in range(len(ids)) for k in range(s)]
    seg_refs = [refs[j] for j in range(len(ids)) for _ in range(s)]
    test = PairedTest(
        [("baseline", hyp_b), ("candidate", hyp_c)],
        {"BLEU": BLEU()},
        references=[seg_refs],
        test_type="bs",
        n_samples=n_resamples,
    )
    _, scores = test()
    base_res, cand_res = scores["BLEU"][0], scores["BLEU"][1]
    sent_c = np.array(
        [[sentence_bleu(mc[j][k], [refs[j]]).score for k in range(len(mc[0]))] for j in range(len(ids))]
    )
    sent_b = np.array(
        [[sentence_bleu(mb[j][k], [refs[j]]).score for k in range(len(mb[0]))] for j in range(len(ids))]
    )
    d = sent_c.mean(axis=1) - sent_b.mean(axis=1)
    # sacrebleu's paired bootstrap counts resampled |diff| strictly above the observed one, so identical
    # systems (every resampled diff 0) get its smallest p, 1/(n+1): identical outputs are no evidence.
    p_value = 1.0 if hyp_c == hyp_b else _finite_or_none(cand_res.p_value)
    return PairedResult(
        test="sacrebleu_paired_bs",
        diff=float(cand_res.score - base_res.score),
        diff_ci=None,
        p_value=p_value,
        min_detectable_effect=min_detectable_effect_paired(d, alpha=alpha, power=power),
        **kw,
    )


# --------------------------------------------------------------------------------------------- compare
def _group(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        out[r.family].append(r)
    return out


def compare(
    candidate_runs: Iterable[RunRecord | Mapping[str, Any]],
    baseline_runs: Iterable[RunRecord | Mapping[str, Any]],
    candidate_items: Mapping[str, Mapping[str, ItemResult | Mapping[str, Any]]] | None = None,
    baseline_items: Mapping[str, Mapping[str, ItemResult | Mapping[str, Any]]] | None = None,
    config: CompareConfig | None = None,
) -> list[ComparisonRow]:
    """Compare candidate runs to baseline runs per (family, metric); items are ``family -> item -> result``.

    Verdict: "insufficient data" with < 2 runs a side (or no usable p); otherwise "regression" /
    "improvement" when the BH-adjusted primary p <= alpha **and** the effect (the paired diff when the paired
    p is primary, else the run-level diff) is at least the metric's minimum effect, signed by the metric's
    direction; else "no change". Stability verdict: "variance increase" when the BH-adjusted one-sided
    Brown–Forsythe p <= alpha.
    """
    cfg = config or CompareConfig()
    cand_by, base_by = _group(_as_runs(candidate_runs)), _group(_as_runs(baseline_runs))
    rows: list[ComparisonRow] = []
    primary: list[float | None] = []
    effect: list[float | None] = []
    used_paired: list[bool] = []
    for family in sorted(set(cand_by) | set(base_by)):
        c_runs, b_runs = cand_by.get(family, []), base_by.get(family, [])
        names = {m for r in c_runs + b_runs for m, v in r.metrics.items() if v is not None}
        if cfg.metrics is not None:
            names &= set(cfg.metrics)
        for metric in sorted(names):
            c = _clean(r.metrics.get(metric) for r in c_runs)
            b = _clean(r.metrics.get(metric) for r in b_runs)
            notes: list[str] = []
            enough = len(c) >= 2 and len(b) >= 2
            p_welch, welch_notes = welch_test(c, b)
            notes += welch_notes
            p_var, var_notes = variance_increase_test(c, b)
            if enough:
                notes += var_notes
            paired = None
            if candidate_items and baseline_items and family in candidate_items and family in baseline_items:
                paired = paired_item_comparison(
                    candidate_items[family],
                    baseline_items[family],
                    metric,
                    alpha=cfg.alpha,
                    power=cfg.power,
                    confidence=cfg.confidence,
                    n_resamples=cfg.n_bootstrap_items,
                    n_resamples_bleu=cfg.n_bootstrap_bleu,
                    seed=cfg.seed,
                )
            mean_c = float(c.mean()) if len(c) else None
            mean_b = float(b.mean()) if len(b) else None
            diff = mean_c - mean_b if mean_c is not None and mean_b is not None else None
            use_paired = cfg.prefer_paired and paired is not None and paired.p_value is not None
            if paired is not None:
                notes += paired.notes
            primary.append((paired.p_value if use_paired else p_welch) if enough else None)
            effect.append(paired.diff if use_paired else diff)
            used_paired.append(use_paired)
            rows.append(
                ComparisonRow(
                    family=family,
                    metric=metric,
                    higher_is_better=cfg.higher_is_better_for(metric),
                    n_candidate=len(c),
                    n_baseline=len(b),
                    mean_candidate=mean_c,
                    mean_baseline=mean_b,
                    std_candidate=float(c.std(ddof=1)) if len(c) >= 2 else None,
                    std_baseline=float(b.std(ddof=1)) if len(b) >= 2 else None,
                    diff=diff,
                    diff_ci=bootstrap_diff_ci(
                        c, b, confidence=cfg.confidence, n_resamples=cfg.n_bootstrap, seed=cfg.seed
                    ),
                    p_welch=p_welch,
                    paired_test=paired.test if paired else None,
                    diff_paired=paired.diff if paired else None,
                    diff_ci_paired=paired.diff_ci if paired else None,
                    p_paired=paired.p_value if paired else None,
                    p_variance=p_var,
                    min_effect=cfg.min_effect_for(metric),
                    min_detectable_effect=min_detectable_effect_two_sample(
                        c, b, alpha=cfg.alpha, power=cfg.power
                    ),
                    min_detectable_effect_paired=paired.min_detectable_effect if paired else None,
                    verdict="insufficient data",
                    stability_verdict="insufficient data",
                    notes=notes,
                )
            )

    p_adj = benjamini_hochberg(primary)
    p_var_adj = benjamini_hochberg([r.p_variance for r in rows])
    for row, pa, pva, eff, up in zip(rows, p_adj, p_var_adj, effect, used_paired, strict=True):
        row.p_adjusted = pa
        row.p_variance_adjusted = pva
        if row.n_candidate < 2 or row.n_baseline < 2:
            row.notes.append("fewer than 2 runs on a side")
        elif pa is None or eff is None:
            row.notes.append("no usable p value")
        elif pa <= cfg.alpha and abs(eff) >= row.min_effect:
            better = eff > 0 if row.higher_is_better else eff < 0
            row.verdict = "improvement" if better else "regression"
        else:
            row.verdict = "no change"
            if not up and row.p_paired is not None and row.p_paired <= cfg.alpha:
                row.notes.append(
                    f"item-level test significant (p={row.p_paired:.3g}) but not run-level: may be seed variation"
                )
            mde = row.min_detectable_effect_paired if up else None
            mde = mde if mde is not None else row.min_detectable_effect
            if mde is not None and mde > row.min_effect:
                row.notes.append(f"underpowered: MDE {mde:.4g} > minimum effect {row.min_effect:.4g}")
        if pva is not None:
            row.stability_verdict = "variance increase" if pva <= cfg.alpha else "no change"
    return rows
