"""Tests of genbench_tasks.scoring.stats on hand-computed values and seeded simulations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from genbench_tasks.scoring.stats import (
    CompareConfig,
    ComparisonRow,
    StudyTables,
    benjamini_hochberg,
    bootstrap_diff_ci,
    compare,
    describe,
    higher_is_better,
    mcnemar_exact,
    min_detectable_effect_paired,
    min_detectable_effect_two_sample,
    paired_item_comparison,
    study_tables,
    variance_increase_test,
    welch_test,
)

FAST = CompareConfig(n_bootstrap=200, n_bootstrap_items=500, n_bootstrap_bleu=200)


def runs(version: str, family: str, metrics_per_seed: list[dict[str, float | None]]) -> list[dict]:
    return [
        {"version": version, "family": family, "seed": s, "metrics": m}
        for s, m in enumerate(metrics_per_seed)
    ]


def row_of(rows: list[ComparisonRow], family: str, metric: str) -> ComparisonRow:
    (row,) = [r for r in rows if r.family == family and r.metric == metric]
    return row


# --------------------------------------------------------------------------------------------- describe
def test_describe_known_values():
    s = describe([1.0, 2.0, 3.0, 4.0, None, float("nan")])
    assert s.n == 4 and s.mean == 2.5
    assert s.std == pytest.approx(math.sqrt(5 / 3))  # ddof=1
    assert 1.0 <= s.ci_low < 2.5 < s.ci_high <= 4.0
    assert describe([1.0, 2.0, 3.0, 4.0]) == describe([4.0, 3.0, 2.0, 1.0])  # seeded, order-free
    one = describe([0.7])
    assert (one.n, one.mean, one.std, one.ci_low, one.ci_high) == (1, 0.7, None, None, None)
    assert describe([]).mean is None
    const = describe([0.5] * 5)
    assert (const.std, const.ci_low, const.ci_high) == (0.0, 0.5, 0.5)


def test_describe_ci_coverage():
    # 95% percentile-bootstrap CI of the mean of n=30 normals covers the truth ~95% (bootstrap is a bit short)
    rng = np.random.default_rng(7)
    hits = sum(
        (s := describe(rng.normal(1.0, 2.0, 30), n_resamples=1000, seed=i)).ci_low <= 1.0 <= s.ci_high
        for i in range(200)
    )
    assert 0.87 <= hits / 200 <= 0.99


# ------------------------------------------------------------------------------------------- primitives
def test_benjamini_hochberg_hand_computed():
    p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.060, 0.074, 0.205]
    # p_(i) * m / i = .008 .032 .104 .082 .0672 .08 .08457 .205, then running min from the right
    expected = [0.008, 0.032, 0.0672, 0.0672, 0.0672, 0.08, 0.074 * 8 / 7, 0.205]
    assert benjamini_hochberg(p) == pytest.approx(expected, abs=1e-12)
    assert benjamini_hochberg(p) == pytest.approx(
        list(sps.false_discovery_control(p, method="bh")), abs=1e-12
    )
    # order preserved, None skipped and not counted in m
    assert benjamini_hochberg([0.04, None, 0.01, 0.03]) == [
        pytest.approx(0.04),
        None,
        pytest.approx(0.03),
        pytest.approx(0.04),
    ]
    assert benjamini_hochberg([0.9, 0.8]) == [pytest.approx(0.9), pytest.approx(0.9)]
    assert benjamini_hochberg([None]) == [None]
    assert benjamini_hochberg([]) == []


def test_welch_edge_cases():
    assert welch_test([1.0], [1.0, 2.0]) == (None, [])
    assert welch_test([0.5, 0.5, 0.5], [0.5, 0.5])[0] == 1.0
    assert welch_test([0.5, 0.5, 0.5], [0.6, 0.6])[0] == 0.0
    p, _ = welch_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.5])
    assert p == pytest.approx(sps.ttest_ind([1, 2, 3], [2, 3, 4.5], equal_var=False).pvalue)


def test_variance_increase_test_is_one_sided_brown_forsythe():
    rng = np.random.default_rng(3)
    c, b = rng.normal(0, 3, 8), rng.normal(0, 1, 8)
    p_up, _ = variance_increase_test(c, b)
    p_down, _ = variance_increase_test(b, c)
    # two groups: BF == pooled t-test on absolute deviations from the medians
    zc, zb = np.abs(c - np.median(c)), np.abs(b - np.median(b))
    assert p_up == pytest.approx(sps.ttest_ind(zc, zb, alternative="greater").pvalue, rel=1e-9)
    assert p_up + p_down == pytest.approx(1.0)
    assert p_up < 0.05
    assert variance_increase_test([1.0, 2.0], [1.0, 5.0])[0] is None  # degenerate with 2 a side
    assert variance_increase_test([1.0] * 4, [2.0] * 4)[0] == 1.0  # zero spread both sides


def test_bootstrap_diff_ci():
    ci = bootstrap_diff_ci([1.0, 1.1, 0.9, 1.0], [0.0, 0.1, -0.1, 0.0], n_resamples=2000)
    assert ci is not None and 0.8 < ci[0] < 1.0 < ci[1] < 1.2
    assert bootstrap_diff_ci([1.0], [0.0, 1.0]) is None


def test_mde_formulas_and_power():
    c, b = [0.50, 0.52, 0.48, 0.51, 0.49], [0.60, 0.61, 0.58, 0.62, 0.59]
    s_p = math.sqrt((4 * np.var(c, ddof=1) + 4 * np.var(b, ddof=1)) / 8)
    expected = (sps.t.ppf(0.975, 8) + sps.t.ppf(0.8, 8)) * s_p * math.sqrt(2 / 5)
    assert min_detectable_effect_two_sample(c, b) == pytest.approx(expected)
    d = [0.1, -0.2, 0.3, 0.0, 0.1, 0.2]
    assert min_detectable_effect_paired(d) == pytest.approx(
        (sps.t.ppf(0.975, 5) + sps.t.ppf(0.8, 5)) * np.std(d, ddof=1) / math.sqrt(6)
    )
    assert min_detectable_effect_two_sample([1.0], [1.0, 2.0]) is None
    # a true shift equal to the MDE is detected by Welch about 80% of the time (5 vs 5, sd 1)
    rng = np.random.default_rng(11)
    mde = (sps.t.ppf(0.975, 8) + sps.t.ppf(0.8, 8)) * math.sqrt(2 / 5)
    x, y = rng.normal(0, 1, (4000, 5)), rng.normal(mde, 1, (4000, 5))
    power = np.mean(sps.ttest_ind(x, y, axis=1, equal_var=False).pvalue < 0.05)
    assert 0.72 <= power <= 0.86


def test_mcnemar_exact_hand_computed():
    # 8 discordant pairs favour the candidate, 2 the baseline, 5 concordant: p = 2 * P(X <= 2 | 10, 1/2)
    cand = [True] * 8 + [False] * 2 + [True] * 3 + [False] * 2
    base = [False] * 8 + [True] * 2 + [True] * 3 + [False] * 2
    assert mcnemar_exact(cand, base) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_exact([True, False], [True, False]) == 1.0


def test_direction_defaults():
    assert higher_is_better("success_rate") and higher_is_better("bleu") and higher_is_better("pass@4")
    assert not higher_is_better("reward_std")


# ---------------------------------------------------------------------------------------------- compare
def shifted_runs(rng, version, mu_s, mu_r, sd_r_within, n=5, sd=0.01):
    return runs(
        version,
        "reasoning",
        [
            {
                "success_rate": float(rng.normal(mu_s, sd)),
                "reward_mean": float(rng.normal(mu_r, sd)),
                "reward_std": float(rng.normal(sd_r_within, sd)),
                "bleu": None,
            }
            for _ in range(n)
        ],
    )


def test_known_shift_detected_in_the_right_direction():
    rng = np.random.default_rng(0)
    base = shifted_runs(rng, "0.8.0", 0.60, 0.50, 0.20)
    worse = shifted_runs(rng, "0.9.1", 0.50, 0.40, 0.30)  # lower success/reward, higher within-run std
    better = shifted_runs(rng, "0.9.1", 0.70, 0.60, 0.10)
    rows = compare(worse, base, config=FAST)
    assert {r.metric for r in rows} == {"success_rate", "reward_mean", "reward_std"}  # all-None bleu skipped
    for r in rows:
        assert r.verdict == "regression", r
        assert r.diff_ci is not None and (r.diff_ci[1] < 0 if r.higher_is_better else r.diff_ci[0] > 0)
        assert r.p_adjusted is not None and r.p_adjusted >= r.p_welch
    assert row_of(rows, "reasoning", "success_rate").diff == pytest.approx(-0.1, abs=0.03)
    assert all(r.verdict == "improvement" for r in compare(better, base, config=FAST))
    # a significant but tiny shift is "no change" under the minimum effect
    tiny = compare(
        shifted_runs(rng, "x", 0.61, 0.51, 0.20, sd=0.001),
        shifted_runs(rng, "y", 0.60, 0.50, 0.20, sd=0.001),
        config=FAST,
    )
    assert row_of(tiny, "reasoning", "success_rate").verdict == "no change"
    assert row_of(tiny, "reasoning", "success_rate").p_adjusted < 0.05
    custom = FAST.model_copy(update={"min_effect": {"success_rate": 0.005}})
    tiny = compare(
        shifted_runs(rng, "x", 0.61, 0.51, 0.20, sd=0.001),
        shifted_runs(rng, "y", 0.60, 0.50, 0.20, sd=0.001),
        config=custom,
    )
    assert row_of(tiny, "reasoning", "success_rate").verdict == "improvement"


def test_variance_increase_detected():
    rng = np.random.default_rng(5)
    base = runs("b", "f", [{"success_rate": float(v)} for v in rng.normal(0.5, 0.005, 12)])
    cand = runs("c", "f", [{"success_rate": float(v)} for v in rng.normal(0.5, 0.08, 12)])
    row = row_of(compare(cand, base, config=FAST), "f", "success_rate")
    assert row.stability_verdict == "variance increase"
    assert row_of(compare(base, cand, config=FAST), "f", "success_rate").stability_verdict == "no change"


def test_false_alarm_rate_under_null_is_nominal():
    """400 seeded null draws, 1 family x 3 metrics, BH at 0.05 with no minimum effect.

    Under the global null BH controls the family-wise rate at alpha, so P(any flag in a draw) <= 0.05.
    The binomial sd of a rate at 0.05 over 400 draws is sqrt(.05 * .95 / 400) = 0.011; allow 3 sd.
    """
    rng = np.random.default_rng(2024)
    cfg = FAST.model_copy(
        update={"min_effect": {"success_rate": 0.0, "reward_mean": 0.0, "bleu": 0.0}, "n_bootstrap": 50}
    )
    draws = 400
    flagged = unstable = per_row = 0

    def side(version: str) -> list[dict]:
        return runs(
            version,
            "rewriting",
            [
                {
                    "success_rate": float(rng.normal(0.5, 0.05)),
                    "reward_mean": float(rng.normal(0.0, 1.0)),
                    "bleu": float(rng.normal(30, 2)),
                }
                for _ in range(5)
            ],
        )

    for _ in range(draws):
        rows = compare(side("c"), side("b"), config=cfg)
        assert len(rows) == 3
        flagged += any(r.verdict in ("regression", "improvement") for r in rows)
        unstable += any(r.stability_verdict == "variance increase" for r in rows)
        per_row += sum(r.p_welch <= 0.05 for r in rows)
    # not vacuously conservative: Welch's size at 5 vs 5 with equal variances is ~0.0445 (2e5-draw
    # simulation); 1200 rows give sd sqrt(.0445 * .9555 / 1200) = 0.006, allow 3 sd
    assert abs(per_row / (3 * draws) - 0.0445) <= 3 * 0.006
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / draws)
    assert flagged / draws <= bound
    assert unstable / draws <= bound


def test_insufficient_data_never_crashes():
    base = runs("b", "f", [{"success_rate": 0.5, "bleu": 30.0}, {"success_rate": 0.6, "bleu": 31.0}])
    one = runs("c", "f", [{"success_rate": 0.1, "bleu": None}])
    rows = compare(one, base, config=FAST)
    assert {r.metric: r.verdict for r in rows} == {
        "success_rate": "insufficient data",
        "bleu": "insufficient data",
    }
    sr = row_of(rows, "f", "success_rate")
    assert (
        sr.p_welch is None
        and sr.p_adjusted is None
        and sr.diff == pytest.approx(-0.45)
        and sr.diff_ci is None
    )
    assert sr.stability_verdict == "insufficient data" and sr.min_detectable_effect is None
    assert row_of(rows, "f", "bleu").n_candidate == 0
    # family only on one side, and no runs at all
    assert [r.verdict for r in compare([], base, config=FAST)] == ["insufficient data"] * 2
    assert compare([], [], config=FAST) == []
    # 2 runs a side: Welch runs, the variance test says it cannot
    two = compare(runs("c", "f", [{"success_rate": 0.5}, {"success_rate": 0.52}]), base, config=FAST)
    two_sr = row_of(two, "f", "success_rate")
    assert two_sr.verdict != "insufficient data" and two_sr.stability_verdict == "insufficient data"


def test_zero_variance_both_sides():
    same = compare(
        runs("c", "f", [{"success_rate": 1.0}] * 5), runs("b", "f", [{"success_rate": 1.0}] * 5), config=FAST
    )
    assert (
        same[0].verdict == "no change" and same[0].p_welch == 1.0 and same[0].stability_verdict == "no change"
    )
    diff = compare(
        runs("c", "f", [{"success_rate": 0.8}] * 5), runs("b", "f", [{"success_rate": 1.0}] * 5), config=FAST
    )
    assert diff[0].verdict == "regression" and diff[0].p_welch == 0.0
    assert diff[0].diff_ci == (pytest.approx(-0.2), pytest.approx(-0.2))
    json.loads(json.dumps([r.model_dump(mode="json") for r in diff]))  # no NaN anywhere


# ----------------------------------------------------------------------------------------- item level
def make_items(rng, n_items, n_seeds, p_item, shift, refs=None, hyp_good=None):
    logit = np.log(p_item / (1 - p_item))[:, None] + shift
    p = 1 / (1 + np.exp(-np.broadcast_to(logit, (n_items, n_seeds))))
    passed = rng.random(p.shape) < p
    reward = p + rng.normal(0, 0.1, p.shape)
    items = {}
    for j in range(n_items):
        item = {"passed": passed[j].tolist(), "reward": reward[j].tolist()}
        if refs is not None:
            item["reference"] = refs[j]
            item["hypothesis"] = [
                refs[j] if hyp_good else f"unrelated words number {j} {s}" for s in range(n_seeds)
            ]
        items[f"item{j:03d}"] = item
    return items, passed, reward


def test_paired_item_comparison_detects_shift():
    rng = np.random.default_rng(9)
    p_item = rng.beta(2, 2, 120)
    refs = [f"the quick brown fox number {j} jumps over the lazy dog" for j in range(120)]
    cand, _, _ = make_items(rng, 120, 5, p_item, -1.0, refs, hyp_good=False)
    base, _, _ = make_items(rng, 120, 5, p_item, 0.0, refs, hyp_good=True)
    succ = paired_item_comparison(cand, base, "success_rate", n_resamples=500)
    assert succ.test == "mcnemar_exact_item_majority" and succ.p_value < 0.01 and succ.diff < 0
    assert (
        succ.diff_ci[1] < 0
        and succ.min_detectable_effect > 0
        and (succ.n_items, succ.n_seeds_candidate) == (120, 5)
    )
    rew = paired_item_comparison(cand, base, "reward_mean", n_resamples=500)
    assert rew.test == "bootstrap_items_seeds" and rew.p_value < 0.01 and rew.diff_ci[1] < 0
    bleu = paired_item_comparison(cand, base, "bleu", n_resamples_bleu=200)
    assert bleu.test == "sacrebleu_paired_bs" and bleu.diff < -50 and bleu.p_value < 0.01
    assert bleu.min_detectable_effect is not None
    assert paired_item_comparison(cand, base, "consistency") is None
    # identical sides: nothing to see
    same = paired_item_comparison(base, base, "reward_mean", n_resamples=300)
    assert same.diff == 0 and same.p_value == 1.0
    assert paired_item_comparison(base, base, "success_rate").p_value == 1.0
    same_bleu = paired_item_comparison(base, base, "bleu", n_resamples_bleu=100)
    assert same_bleu.diff == 0 and same_bleu.p_value == 1.0  # not sacrebleu's 1/(n+1) for identical systems
    # mismatched item sets are intersected, with a note
    partial = paired_item_comparison(
        {k: cand[k] for k in list(cand)[:60]}, base, "success_rate", n_resamples=200
    )
    assert partial.n_items == 60 and any("common" in n for n in partial.notes)


def test_item_level_null_rate_without_seed_effect():
    """No shift and no seed-to-seed effect: McNemar (item majority) rejects at most at the nominal rate.

    300 draws, sd of a 0.05 rate is 0.0126; allow 3 sd. (With seed effects it over-rejects: see stats.py.)
    """
    rng = np.random.default_rng(21)
    rejections = 0
    for _ in range(300):
        p_item = rng.beta(2, 2, 60)
        cand, _, _ = make_items(rng, 60, 5, p_item, 0.0)
        base, _, _ = make_items(rng, 60, 5, p_item, 0.0)
        rejections += paired_item_comparison(cand, base, "success_rate", n_resamples=50).p_value <= 0.05
    assert rejections / 300 <= 0.05 + 3 * 0.0126


def test_compare_with_items_reports_paired_columns():
    rng = np.random.default_rng(13)
    p_item = rng.beta(2, 2, 80)
    cand_items, c_pass, c_rew = make_items(rng, 80, 5, p_item, -1.0)
    base_items, b_pass, b_rew = make_items(rng, 80, 5, p_item, 0.0)

    def to_runs(version, passed, reward):
        return runs(
            version,
            "f",
            [
                {"success_rate": float(passed[:, s].mean()), "reward_mean": float(reward[:, s].mean())}
                for s in range(5)
            ],
        )

    cand_runs, base_runs = to_runs("c", c_pass, c_rew), to_runs("b", b_pass, b_rew)
    for prefer in (False, True):
        cfg = FAST.model_copy(update={"prefer_paired": prefer})
        rows = compare(cand_runs, base_runs, {"f": cand_items}, {"f": base_items}, config=cfg)
        for r in rows:
            assert r.paired_test is not None and r.p_paired is not None and r.diff_ci_paired is not None
            assert r.min_detectable_effect_paired is not None and r.verdict == "regression"
            assert r.p_adjusted >= (r.p_paired if prefer else r.p_welch)


# ------------------------------------------------------------------------------------------ study tables
def test_study_tables_and_generalization_gap():
    rng = np.random.default_rng(1)
    records = []
    truth = {"rewriting": 0.7, "reasoning": 0.6, "code_generation": 0.3}
    for version, bump in (("0.10.0", 0.05), ("0.9.1", 0.0)):
        for family, mu in truth.items():
            for seed in range(5):
                records.append(
                    {
                        "version": version,
                        "family": family,
                        "seed": seed,
                        "metrics": {
                            "success_rate": float(mu + bump + rng.normal(0, 0.02)),
                            "bleu": float(rng.normal(30, 1)) if family == "rewriting" else None,
                            "consistency": float(rng.normal(0.8, 0.01)),
                            "reward_mean": float(rng.normal(0.5, 0.05)),
                        },
                    }
                )
    roles = {"rewriting": "train", "reasoning": "train", "code_generation": "heldout"}
    out = study_tables(records, roles, n_resamples=2000)
    assert set(out.families) == set(truth)
    rw = out.families["rewriting"]
    assert rw.role == "train" and [r.version for r in rw.table1] == [
        "0.9.1",
        "0.10.0",
    ]  # natural version order

    def col(version, family, metric):
        return [r["metrics"][metric] for r in records if r["version"] == version and r["family"] == family]

    t1 = rw.table1[0]
    assert t1.n_runs == 5 and t1.success_rate.mean == pytest.approx(
        np.mean(col("0.9.1", "rewriting", "success_rate"))
    )
    assert t1.bleu.n == 5 and out.families["reasoning"].table1[0].bleu.n == 0
    t2 = out.families["reasoning"].table2[1]
    assert t2.success_rate_std == pytest.approx(np.std(col("0.10.0", "reasoning", "success_rate"), ddof=1))
    assert t2.reward_std == pytest.approx(np.std(col("0.10.0", "reasoning", "reward_mean"), ddof=1))

    gaps = {g.version: g for g in out.generalization_gap}
    g = gaps["0.9.1"]
    per_seed = [
        (col("0.9.1", "rewriting", "success_rate")[s] + col("0.9.1", "reasoning", "success_rate")[s]) / 2
        - col("0.9.1", "code_generation", "success_rate")[s]
        for s in range(5)
    ]
    assert g.n_seeds == 5 and g.gap.mean == pytest.approx(np.mean(per_seed))
    assert g.gap.std == pytest.approx(np.std(per_seed, ddof=1))
    assert g.gap.ci_low < 0.35 < g.gap.ci_high  # true gap (0.7 + 0.6) / 2 - 0.3
    assert g.in_domain_success - g.heldout_success == pytest.approx(g.gap.mean)
    assert StudyTables.model_validate_json(out.model_dump_json()) == out
    assert study_tables(records).generalization_gap == []  # no roles, no gap
