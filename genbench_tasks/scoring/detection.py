"""Verdicts over the nightly history: change points per version, stability, version vs baseline.

Input: one row per measurement (``night`` ISO date, ``version``, ``seed``, ``family``, ``metric``,
``value``; optional ``run_id``), see :mod:`genbench_tasks.evaluation.history`. A *series* is one
(version, family, metric): nights in date order, each with its seeds' values. Only the last
``window`` nights are used.

Per series (:class:`HistoryVerdict`):

* **Change points**: E-divisive means on the night means with a permutation test over seeds
  (:mod:`genbench_tasks.scoring.changepoint`, ``max_pvalue`` = 0.008 per night it runs; with ``permute="auto"``
  whole nights are permuted instead when an F test finds the night means varying more than their seeds
  explain), then Hunter's merge step: while a change point's adjacent-segment difference is below the
  metric's minimum effect, or its t test has p > ``max_pvalue`` (error: the seeds', or ``v`` below when
  an F test finds night effects at p <= 0.05), the weakest is dropped. The verdict follows the latest change point: regression/improvement by the
  metric's direction. Its effect is ``mean(after) - mean(before)`` with a t interval whose standard error
  respects the grouping (seeds within nights)::

      v = max(s_w^2 / S, s_m^2)        SE = sqrt(v * (1/n_before + 1/n_after))

  where ``s_w^2`` is the pooled within-night (seed) variance, ``S`` the mean seeds per night, ``s_m^2``
  the pooled variance of night means around their segment means and ``n`` count nights; the df are those
  of the larger term. (The interval is conditional on the detected location, so slightly optimistic.)
* **No change**: the minimum detectable effect is the step that the detector finds with power ``power``
  once it has lasted ``mde_nights`` nights, ``(z_{1-a'/2} + z_power) * sqrt(v (1/mde_nights + 1/rest))``
  with ``a' = max_pvalue / (nights - 1)`` (the location search, Bonferroni); ``inconclusive`` when it
  exceeds the minimum effect. ``seeds_needed``: the seeds per night that bring it to the minimum effect
  (``v(S) = s_w^2/S + max(0, v - s_w^2/S_now)``; None when night-to-night variation alone is too large).
* **Deterministic** series (identical seeds and code give identical numbers; detected when two
  consecutive nights have exactly equal values for every seed, or forced): consecutive identical nights
  are one observation; any difference between consecutive distinct nights is a change (no test), its
  effect the mean per-seed difference with a t interval over seeds.
* **Stability**: for every split, the pooled within-night variance of the nights after it against that of
  the nights before it (one-sided F test, df = sum of (seeds - 1) on each side), minimum p times the number
  of splits (Bonferroni) against ``stability_pvalue``. ``sd_ratio`` is ``sqrt(F)`` with its F interval.

Version vs baseline (:class:`BaselineVerdict`), per (version, family, metric): nights both have since the
last change point of either side (deterministic: distinct nights); per night ``d_t = mean_v - mean_b``;
effect ``mean(d_t)``; SE the larger of the between-night one (``sd(d_t)/sqrt(n)``, df n-1: clusters are
nights) and the within-night one (``sqrt(mean_t(s_v^2/n_v + s_b^2/n_b) / n)``, Welch df); two-sided t
test; Benjamini-Hochberg (``scipy.stats.false_discovery_control``) over all versions x families x metrics;
regression/improvement when the adjusted p <= alpha and ``|effect|`` >= the minimum effect, else no change
or inconclusive by the MDE ``(t_{1-alpha/2} + t_power) * SE``.

Calibration by simulation: ``benchmarks/bench_detection.py`` (README, performance section).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from genbench_tasks.artifacts.verdicts import (
    BaselineVerdict,
    DetectConfig,
    Detection,
    HistoryVerdict,
    Interval,
    Segment,
    Stability,
    TrendPoint,
    VerdictName,
)
from genbench_tasks.errors import GenbenchError
from genbench_tasks.scoring.changepoint import e_divisive

__all__ = [
    "BaselineVerdict",
    "DetectConfig",
    "Detection",
    "HistoryVerdict",
    "Interval",
    "Segment",
    "Series",
    "TrendPoint",
    "compare_to_baseline",
    "detect",
    "detect_series",
]

NIGHT_EFFECT_PRETEST = 0.05
RUNS_SHOWN = 5


@dataclass
class Series:
    """Values of one (version, family, metric), nights in date order."""

    version: str
    family: str
    metric: str
    nights: list[str]
    values: list[np.ndarray]  # per night, the seeds' values (in ``seeds`` order)
    seeds: list[np.ndarray]
    runs: list[str] = field(default_factory=list)  # per night ('' when unknown)

    def tail(self, n: int) -> Series:
        k = max(0, len(self.nights) - n)
        return Series(
            self.version,
            self.family,
            self.metric,
            self.nights[k:],
            self.values[k:],
            self.seeds[k:],
            self.runs[k:] if self.runs else [],
        )


# ---------------------------------------------------------------------------------------------- helpers
def _seed_for(cfg: DetectConfig, *key: str) -> int:
    digest = hashlib.sha256("\x1f".join((str(cfg.seed), *key)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _t_interval(est: float, se: float, df: float, confidence: float) -> Interval:
    if not (math.isfinite(se) and df > 0):
        return Interval(estimate=est, low=None, high=None, confidence=confidence)
    h = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(estimate=est, low=est - h, high=est + h, confidence=confidence)


def _within(values: Sequence[np.ndarray]) -> tuple[float, int]:
    """Pooled within-night variance and its df (nights with >= 2 values)."""
    ss = sum(float(((v - v.mean()) ** 2).sum()) for v in values if len(v) >= 2)
    df = sum(len(v) - 1 for v in values if len(v) >= 2)
    return (ss / df if df else math.nan), df


def _night_mean_variance(values: Sequence[np.ndarray], cuts: Sequence[int]) -> tuple[float, float, float]:
    """(v, df, s_w^2): variance of a night mean respecting the grouping (module docstring) and its df."""
    s_w2, df_w = _within(values)
    seeds = float(np.mean([len(v) for v in values]))
    means = np.array([v.mean() for v in values])
    ss, df_m = 0.0, 0
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        if b - a >= 2:
            ss += float(((means[a:b] - means[a:b].mean()) ** 2).sum())
            df_m += b - a - 1
    s_m2 = ss / df_m if df_m else math.nan
    within = s_w2 / seeds if df_w else math.nan
    if math.isnan(within) and math.isnan(s_m2):
        return math.nan, 0.0, s_w2
    if math.isnan(s_m2) or (not math.isnan(within) and within >= s_m2):
        return within, float(df_w), s_w2
    return s_m2, float(df_m), s_w2


def _night_effect_p(values: Sequence[np.ndarray], cuts: Sequence[int]) -> float | None:
    """One-sided F test of night means around their segment means against the seeds' variance / S."""
    s_w2, df_w = _within(values)
    means = np.array([v.mean() for v in values])
    ss = sum(
        float(((means[a:b] - means[a:b].mean()) ** 2).sum()) for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    )
    df_m = sum(max(0, b - a - 1) for a, b in zip(cuts[:-1], cuts[1:], strict=True))
    if not (df_w and df_m) or s_w2 <= 0:
        return None
    seeds = float(np.mean([len(v) for v in values]))
    return float(sps.f.sf((ss / df_m) / (s_w2 / seeds), df_m, df_w))


def _segment(s: Series, a: int, b: int, nearest_last: bool) -> Segment:
    vals = np.concatenate(s.values[a:b])
    runs = [r for r in dict.fromkeys(s.runs[a:b]) if r] if s.runs else []
    return Segment(
        first_night=s.nights[a],
        last_night=s.nights[b - 1],
        nights=b - a,
        values=len(vals),
        mean=float(vals.mean()),
        runs=runs[-RUNS_SHOWN:] if nearest_last else runs[:RUNS_SHOWN],
    )


def _direction(effect: float, higher_is_better: bool) -> VerdictName:
    return "improvement" if (effect > 0) == higher_is_better else "regression"


def _seeds_needed(v: float, s_w2: float, seeds: float, scale: float, target: float, cap: int) -> int | None:
    """Smallest seeds per night with ``scale * sqrt(s_w^2/S + max(0, v - s_w^2/seeds)) <= target``."""
    if not (math.isfinite(v) and math.isfinite(s_w2)) or target <= 0:
        return None
    extra = max(0.0, v - s_w2 / seeds)
    room = (target / scale) ** 2 - extra
    if room <= 0:
        return None
    need = max(1, math.ceil(s_w2 / room))
    return need if need <= cap else None


def _is_deterministic(s: Series) -> bool:
    return any(
        np.array_equal(s.seeds[i], s.seeds[i - 1]) and np.array_equal(s.values[i], s.values[i - 1])
        for i in range(1, len(s.nights))
    )


def _collapse(s: Series) -> Series:
    """Consecutive nights with identical seeds and values become one (the first night, first run)."""
    keep = [0] + [
        i
        for i in range(1, len(s.nights))
        if not (np.array_equal(s.seeds[i], s.seeds[i - 1]) and np.array_equal(s.values[i], s.values[i - 1]))
    ]
    return Series(
        s.version,
        s.family,
        s.metric,
        [s.nights[i] for i in keep],
        [s.values[i] for i in keep],
        [s.seeds[i] for i in keep],
        [s.runs[i] for i in keep] if s.runs else [],
    )


# ------------------------------------------------------------------------------------------- stability
def stability(s: Series, cfg: DetectConfig) -> Stability:
    """One-sided F scan of within-night variance (module docstring)."""
    ss = np.array([float(((v - v.mean()) ** 2).sum()) if len(v) >= 2 else 0.0 for v in s.values])
    dfs = np.array([len(v) - 1 if len(v) >= 2 else 0 for v in s.values])
    ss_b, df_b = np.cumsum(ss)[:-1], np.cumsum(dfs)[:-1]  # nights before split k = 1..n-1
    ss_a, df_a = ss.sum() - ss_b, dfs.sum() - df_b
    ok = (df_b >= 2) & (df_a >= 1) & (ss_b > 0)
    if not ok.any():
        return Stability(verdict="insufficient data")
    splits = np.flatnonzero(ok) + 1
    var_b, var_a = ss_b[ok] / df_b[ok], ss_a[ok] / df_a[ok]
    ps = sps.f.sf(var_a / var_b, df_a[ok], df_b[ok])
    i = int(np.argmin(ps))
    k, d_a, d_b = int(splits[i]), int(df_a[ok][i]), int(df_b[ok][i])
    p_adj = min(1.0, float(ps[i]) * len(splits))
    ratio = float(var_a[i] / var_b[i])
    lo_q, hi_q = sps.f.ppf([0.5 + cfg.confidence / 2, 0.5 - cfg.confidence / 2], d_a, d_b)
    significant = p_adj <= cfg.stability_pvalue and ratio > 1
    return Stability(
        verdict="variance increase" if significant else "no change",
        p_value=p_adj,
        change_night=s.nights[k] if significant else None,
        sd_ratio=Interval(
            estimate=math.sqrt(ratio),
            low=math.sqrt(ratio / lo_q),
            high=math.sqrt(ratio / hi_q),
            confidence=cfg.confidence,
        ),
        df=(d_a, d_b),
    )


# ----------------------------------------------------------------------------------------- change points
def _merge(
    cps: list[int], values: Sequence[np.ndarray], means_of: Callable, min_effect: float | None, max_p: float
) -> list[int]:
    """Hunter's merge step: while some change point has an adjacent-segment difference below the minimum
    effect, or a t test of it above ``max_p``, drop the weakest one (largest p) and recompute. The t test's
    error is the seeds' (``s_w^2/S``) unless the night means vary more than that (F test p <=
    :data:`NIGHT_EFFECT_PRETEST`), then the grouping-respecting ``v`` of the module docstring."""
    cps = sorted(cps)
    n = len(values)
    while cps:
        cuts = [0, *cps, n]
        v, df, s_w2 = _night_mean_variance(values, cuts)
        p_night = _night_effect_p(values, cuts)
        if p_night is None or p_night > NIGHT_EFFECT_PRETEST:  # no evidence of night effects: seeds' error
            v, df = s_w2 / float(np.mean([len(x) for x in values])), float(_within(values)[1])
        worst, worst_p = None, -1.0
        for i in range(len(cps)):
            a, c, b = cuts[i], cuts[i + 1], cuts[i + 2]
            eff = means_of(c, b) - means_of(a, c)
            se = math.sqrt(v * (1 / (c - a) + 1 / (b - c))) if math.isfinite(v) and df > 0 else math.nan
            p = float(2 * sps.t.sf(abs(eff) / se, df)) if se > 0 else (0.0 if eff else 1.0)
            small = min_effect is not None and abs(eff) < min_effect
            if (small or p > max_p) and (2.0 if small else p) > worst_p:
                worst, worst_p = i, 2.0 if small else p
        if worst is None:
            break
        del cps[worst]
    return cps


def detect_series(s: Series, cfg: DetectConfig) -> HistoryVerdict:
    """Change points, verdict, effect, MDE and stability of one series (module docstring)."""
    s = s.tail(cfg.window)
    min_effect = cfg.min_effect_for(s.metric)
    hib = cfg.higher_is_better_for(s.metric)
    deterministic = cfg.deterministic if cfg.deterministic is not None else _is_deterministic(s)
    base = {
        "version": s.version,
        "family": s.family,
        "metric": s.metric,
        "higher_is_better": hib,
        "mde_nights": cfg.mde_nights,
        "min_effect": min_effect,
        "nights": len(s.nights),
        "first_night": s.nights[0] if s.nights else None,
        "last_night": s.nights[-1] if s.nights else None,
        "deterministic": deterministic,
    }
    notes: list[str] = []
    if deterministic:
        return _detect_deterministic(s, cfg, base, notes)
    seeds = float(np.mean([len(v) for v in s.values])) if s.values else 0.0
    n = len(s.nights)
    if n < cfg.min_nights or sum(len(v) for v in s.values) < 2 * cfg.min_nights:
        notes.append(f"{n} night(s): detection needs >= {cfg.min_nights}")
        return HistoryVerdict(
            **base,
            verdict="insufficient data",
            seeds_per_night=seeds or None,
            stability=Stability(verdict="insufficient data"),
            notes=notes,
        )
    flat_means = [float(v.mean()) for v in s.values]
    counts = [len(v) for v in s.values]

    def means_of(a: int, b: int | None) -> float:
        sl = slice(a, b)
        return float(np.dot(flat_means[sl], counts[sl]) / np.sum(counts[sl]))

    def search(permute: str) -> tuple[list[int], dict[int, float], int, list[int]]:
        found = e_divisive(
            s.values,
            alpha=cfg.energy_exponent,
            max_pvalue=cfg.max_pvalue,
            permutations=cfg.permutations,
            kappa_search=cfg.kappa_search,
            permute=permute,
            seed=_seed_for(cfg, s.version, s.family, s.metric),
        )
        kept = _merge([c.index for c in found], s.values, means_of, min_effect, cfg.max_pvalue)
        return kept, {c.index: c.p_value for c in found}, len(found) - len(kept), [c.index for c in found]

    cps, p_of, dropped, found = search("replicates" if cfg.permute == "auto" else cfg.permute)
    if cfg.permute == "auto":
        p_night = _night_effect_p(s.values, [0, *found, n])  # around every significant change, even small
        if p_night is not None and p_night <= cfg.night_effect_pvalue:
            cps, p_of, dropped, _ = search("nights")
            notes.append(
                f"nights vary more than their seeds explain (F test p={p_night:.2g}): whole nights permuted"
            )
    if dropped:
        notes.append(
            f"{dropped} change point(s) dropped: smaller than the minimum effect or not significant by a t test "
            "whose error includes night-to-night variation"
        )
    cuts = [0, *cps, n]
    v, df, s_w2 = _night_mean_variance(s.values, cuts)
    z = float(sps.norm.isf(cfg.max_pvalue / 2 / max(1, n - 1)) + sps.norm.ppf(cfg.power))
    stab = stability(s, cfg)
    if cps:
        c = cps[-1]
        a = cuts[-3]
        before, after = _segment(s, a, c, nearest_last=True), _segment(s, c, n, nearest_last=False)
        effect = after.mean - before.mean
        scale = z * math.sqrt(1 / before.nights + 1 / after.nights)
        se = math.sqrt(v * (1 / before.nights + 1 / after.nights)) if math.isfinite(v) else math.nan
        return HistoryVerdict(
            **base,
            verdict=_direction(effect, hib),
            change_night=s.nights[c],
            change_points=[s.nights[i] for i in cps],
            p_value=p_of.get(c),
            effect=_t_interval(effect, se, df, cfg.confidence),
            before=before,
            after=after,
            mde=scale * math.sqrt(v) if math.isfinite(v) else None,
            seeds_per_night=seeds,
            seeds_needed=_seeds_needed(v, s_w2, seeds, scale, min_effect or 0, cfg.max_seeds_needed),
            stability=stab,
            notes=notes,
        )
    after_n = min(cfg.mde_nights, n - 1)
    scale = z * math.sqrt(1 / after_n + 1 / (n - after_n))
    mde = scale * math.sqrt(v) if math.isfinite(v) else None
    if mde is None:
        verdict: VerdictName = "insufficient data"
        notes.append("no variance estimate (one value per night and one segment)")
    elif min_effect is not None and mde > min_effect:
        verdict = "inconclusive"
        notes.append(f"MDE {mde:.4g} > minimum effect {min_effect:.4g}")
    else:
        verdict = "no change"
        if min_effect is None:
            notes.append(f"no minimum effect known for {s.metric}: 'no change' means none detected")
    return HistoryVerdict(
        **base,
        verdict=verdict,
        mde=mde,
        seeds_per_night=seeds,
        seeds_needed=_seeds_needed(v, s_w2, seeds, scale, min_effect or 0, cfg.max_seeds_needed),
        stability=stab,
        notes=notes,
    )


def _detect_deterministic(s: Series, cfg: DetectConfig, base: dict, notes: list[str]) -> HistoryVerdict:
    distinct = _collapse(s)
    seeds = float(np.mean([len(v) for v in s.values])) if s.values else 0.0
    notes.append(f"deterministic: {len(s.nights)} night(s), {len(distinct.nights)} distinct")
    if len(s.nights) < 2:
        notes.append("one night: nothing to compare")
        return HistoryVerdict(
            **base,
            verdict="insufficient data",
            seeds_per_night=seeds or None,
            stability=Stability(verdict="insufficient data"),
            notes=notes,
        )
    stab = stability(distinct, cfg) if len(distinct.nights) >= 2 else Stability(verdict="no change")
    if len(distinct.nights) == 1:
        return HistoryVerdict(
            **base, verdict="no change", mde=0.0, seeds_per_night=seeds, stability=stab, notes=notes
        )
    k = len(distinct.nights) - 1
    prev_v, prev_s = distinct.values[k - 1], distinct.seeds[k - 1]
    cur_v, cur_s = distinct.values[k], distinct.seeds[k]
    common, ip, ic = np.intersect1d(prev_s, cur_s, return_indices=True)
    if len(common):
        d = cur_v[ic] - prev_v[ip]
        effect = float(d.mean())
        se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) >= 2 else math.nan
        interval = _t_interval(effect, se, len(d) - 1, cfg.confidence)
        if se == 0:
            interval = Interval(estimate=effect, low=effect, high=effect, confidence=cfg.confidence)
    else:
        effect = float(cur_v.mean() - prev_v.mean())
        interval = Interval(estimate=effect, low=None, high=None, confidence=cfg.confidence)
        notes.append("no seed in common across the change: effect is a difference of means")
    orig = s.nights.index(distinct.nights[k])
    prev_start = s.nights.index(distinct.nights[k - 1])
    return HistoryVerdict(
        **base,
        verdict=_direction(effect, base["higher_is_better"]) if effect != 0 else "no change",
        change_night=distinct.nights[k],
        change_points=distinct.nights[1:],
        effect=interval,
        before=_segment(s, prev_start, orig, nearest_last=True),
        after=_segment(s, orig, len(s.nights), nearest_last=False),
        mde=0.0,
        seeds_per_night=seeds,
        stability=stab,
        notes=[*notes, "values differ from the previous distinct night: a change, no test needed"],
    )


# -------------------------------------------------------------------------------------- versus baseline
def compare_to_baseline(
    cand: Series,
    base: Series,
    since: str | None,
    cfg: DetectConfig,
    deterministic: bool = False,
) -> BaselineVerdict:
    """Version vs baseline over their common nights from ``since`` on (module docstring); p unadjusted."""
    min_effect = cfg.min_effect_for(cand.metric)
    out = {
        "version": cand.version,
        "baseline": base.version,
        "family": cand.family,
        "metric": cand.metric,
        "higher_is_better": cfg.higher_is_better_for(cand.metric),
        "since_night": since,
        "min_effect": min_effect,
        "deterministic": deterministic,
    }
    if deterministic:
        cand, base = _collapse(cand), _collapse(base)
    bidx = {night: i for i, night in enumerate(base.nights)}
    pairs = [
        (i, bidx[night])
        for i, night in enumerate(cand.nights)
        if night in bidx and (since is None or night >= since)
    ]
    if deterministic and pairs:
        pairs = pairs[-1:]  # identical replays are one observation, not replicates
    notes: list[str] = []
    if not pairs:
        if deterministic:  # distinct nights of the two sides may differ: compare the latest of each
            pairs = [(len(cand.nights) - 1, len(base.nights) - 1)]
        else:
            return BaselineVerdict(**out, verdict="insufficient data", notes=["no night in common"])
    d = np.array([cand.values[i].mean() - base.values[j].mean() for i, j in pairs])
    within = [
        (
            cand.values[i].var(ddof=1) / len(cand.values[i]),
            base.values[j].var(ddof=1) / len(base.values[j]),
            len(cand.values[i]),
            len(base.values[j]),
        )
        for i, j in pairs
        if len(cand.values[i]) >= 2 and len(base.values[j]) >= 2
    ]
    n = len(d)
    effect = float(d.mean())
    se_w, df_w = math.nan, 0.0
    if len(within) == n:
        vc = np.array([w[0] for w in within])
        vb = np.array([w[1] for w in within])
        se_w = math.sqrt(float((vc + vb).mean()) / n)
        denom = float(
            np.sum(vc**2 / (np.array([w[2] for w in within]) - 1))
            + np.sum(vb**2 / (np.array([w[3] for w in within]) - 1))
        )
        df_w = (
            float((vc + vb).sum() ** 2 / denom) if denom > 0 else float(sum(w[2] + w[3] - 2 for w in within))
        )
    se_b = float(d.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
    if math.isnan(se_w) and math.isnan(se_b):
        return BaselineVerdict(
            **out, verdict="insufficient data", nights=n, notes=["one night with < 2 seeds a side"]
        )
    if math.isnan(se_b) or (not math.isnan(se_w) and se_w >= se_b):
        se, df = se_w, df_w
    else:
        se, df = se_b, float(n - 1)
        notes.append("night-to-night variation of the difference exceeds the seed-level error")
    if se == 0:
        p = 1.0 if effect == 0 else 0.0
        mde = 0.0
    else:
        p = float(2 * sps.t.sf(abs(effect) / se, df))
        mde = float((sps.t.ppf(1 - cfg.alpha / 2, df) + sps.t.ppf(cfg.power, df)) * se)
    need = None
    if min_effect is not None and mde > min_effect and not math.isnan(se_w) and se > 0:
        seeds = float(np.mean([w[2] for w in within] + [w[3] for w in within]))
        zs = float(sps.norm.isf(cfg.alpha / 2) + sps.norm.ppf(cfg.power))
        extra = max(0.0, se**2 - se_w**2)
        room = (min_effect / zs) ** 2 - extra
        if room > 0:
            k = math.ceil(se_w**2 * seeds / room)
            need = k if k <= cfg.max_seeds_needed else None
    return BaselineVerdict(
        **out,
        verdict="insufficient data",  # decided after BH in detect()
        nights=n,
        effect=_t_interval(effect, se, df, cfg.confidence)
        if se > 0
        else Interval(estimate=effect, low=effect, high=effect, confidence=cfg.confidence),
        p_value=p,
        df=df,
        mde=mde,
        seeds_needed=need,
        notes=notes,
    )


def _decide(rows: list[BaselineVerdict], cfg: DetectConfig) -> None:
    idx = [i for i, r in enumerate(rows) if r.p_value is not None]
    if idx:
        adjusted = sps.false_discovery_control([rows[i].p_value for i in idx], method="bh")
        for i, pa in zip(idx, np.atleast_1d(adjusted), strict=True):
            r = rows[i]
            r.p_adjusted = float(pa)
            eff = r.effect.estimate if r.effect else 0.0
            big = r.min_effect is None or abs(eff) >= r.min_effect
            if pa <= cfg.alpha and big and eff != 0:
                r.verdict = _direction(eff, r.higher_is_better)
            elif r.min_effect is not None and r.mde is not None and r.mde > r.min_effect:
                r.verdict = "inconclusive"
                r.notes.append(f"MDE {r.mde:.4g} > minimum effect {r.min_effect:.4g}")
            else:
                r.verdict = "no change"


# ---------------------------------------------------------------------------------------------- driver
def detect(
    series: Iterable[Series],
    *,
    baseline: str | None = None,
    config: DetectConfig | None = None,
    trends: bool = False,
) -> Detection:
    """History verdicts for every series (with its per-night ``trend`` when ``trends``), and every version
    vs ``baseline`` (BH across all of them)."""
    cfg = config or DetectConfig()
    items = list(series)
    if not items:
        raise GenbenchError("no series to analyse")
    verdicts = [detect_series(s, cfg) for s in items]
    if trends:
        for s, v in zip(items, verdicts, strict=True):
            t = s.tail(cfg.window)
            v.trend = [
                TrendPoint(
                    night=night,
                    mean=float(x.mean()),
                    std=float(x.std(ddof=1)) if len(x) >= 2 else None,
                    n=len(x),
                )
                for night, x in zip(t.nights, t.values, strict=True)
            ]
    by_key = {(s.version, s.family, s.metric): (s, v) for s, v in zip(items, verdicts, strict=True)}
    rows: list[BaselineVerdict] = []
    warnings: list[str] = []
    versions = {s.version for s in items}
    if baseline is not None and baseline not in versions:
        warnings.append(f"baseline {baseline!r} has no rows in the history")
    elif baseline is not None:
        for (version, family, metric), (s, v) in by_key.items():
            if version == baseline or (baseline, family, metric) not in by_key:
                continue
            b, bv = by_key[(baseline, family, metric)]
            since = max([c for c in (v.change_night, bv.change_night) if c is not None], default=None)
            s_w, b_w = s.tail(cfg.window), b.tail(cfg.window)
            rows.append(
                compare_to_baseline(s_w, b_w, since, cfg, deterministic=v.deterministic and bv.deterministic)
            )
        _decide(rows, cfg)
    latest = max((v.last_night for v in verdicts if v.last_night), default=None)
    return Detection(
        latest_night=latest,
        baseline=baseline,
        config=cfg,
        verdicts=verdicts,
        versus_baseline=rows,
        warnings=warnings,
    )
