"""Calibration of the nightly verdicts by simulation: change detection over the history vs today's pairwise test.

    .venv/bin/python benchmarks/bench_detection.py [--series 100] [--only TEXT] [--seed 0]

Each simulated version has 30 nights of 5 seeds (seed sd 0.03 around 0.40); the detector runs every night
on the history so far (``scoring.detection.detect_series``, default ``DetectConfig``), as the nightly does.
Scenarios: no change (null), a drop of 2, 3 or 5 points or of the detector's own predicted MDE at night
16, the seed sd multiplied by 2 or 3 at night 16, and (``drift``) a shared night effect of sd 0.01.
Side by side, today's pairwise test: ``scoring.stats.compare()`` of each night against the previous one
(the nightly's "previous nightly" comparison), its verdict and Brown-Forsythe stability verdict.

Printed per scenario and method: the share of series detected within 2, 5 and 10 nights of the change
(delay = detecting night - change night; history: a "regression" (or variance increase) placed at most 2
nights before the change; pairwise: the first "regression" (or variance increase) from the change night on),
the median delay, and false alarms: the share of version-months (30-night series) with any alert, of either
kind, at a night without a change (null) or before the change. compare() runs on one metric, so its
Benjamini-Hochberg step has one row (the nightly's 21 rows a comparison dilute it: fewer false alarms and
less power than here). Then the
version-vs-baseline test's type I error and power (pooled over 10 nights, before BH).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from genbench_tasks.scoring.detection import DetectConfig, Series, compare_to_baseline, detect_series
from genbench_tasks.scoring.stats import CompareConfig, compare

NIGHTS, SEEDS, SD, LEVEL, CHANGE = 30, 5, 0.03, 0.40, 15  # CHANGE: 0-based index of the first changed night
NIGHT_NAMES = [f"2026-11-{i + 1:02d}" for i in range(NIGHTS)]
PAIRWISE = CompareConfig(n_bootstrap=100, metrics=["success_rate"])


def simulate(rng: np.random.Generator, step: float, sd_factor: float, night_sd: float) -> np.ndarray:
    y = rng.normal(0.0, SD, (NIGHTS, SEEDS))
    y[CHANGE:] *= sd_factor
    y += LEVEL + rng.normal(0.0, night_sd, (NIGHTS, 1))
    y[CHANGE:] -= step
    return y


def series(y: np.ndarray, upto: int) -> Series:
    return Series(
        "v",
        "code_generation",
        "success_rate",
        NIGHT_NAMES[:upto],
        [row.copy() for row in y[:upto]],
        [np.arange(SEEDS)] * upto,
    )


def history_alerts(y: np.ndarray, cfg: DetectConfig, kind: str) -> tuple[list[int], int | None]:
    """Looks (0-based latest night) with any alert, and the delay of the first alert of ``kind`` ("mean"
    or "variance") at or after the change that places it at most 2 nights early (None: not found)."""
    looks = []
    for upto in range(cfg.min_nights, NIGHTS + 1):
        v = detect_series(series(y, upto), cfg)
        mean = v.change_night if v.verdict in ("regression", "improvement") else None
        var = v.stability.change_night if v.stability.verdict == "variance increase" else None
        if mean is None and var is None:
            continue
        looks.append(upto - 1)
        night = (mean if v.verdict == "regression" else None) if kind == "mean" else var
        if night is not None and upto - 1 >= CHANGE and NIGHT_NAMES.index(night) >= CHANGE - 2:
            return looks, upto - 1 - CHANGE
    return looks, None


def pairwise_alerts(y: np.ndarray, kind: str) -> tuple[list[int], int | None]:
    """The same for compare() of each night against the previous one."""
    looks = []
    for t in range(1, NIGHTS):
        cand = [
            {"version": "v", "family": "f", "seed": s, "metrics": {"success_rate": y[t, s]}}
            for s in range(SEEDS)
        ]
        base = [
            {"version": "v", "family": "f", "seed": s, "metrics": {"success_rate": y[t - 1, s]}}
            for s in range(SEEDS)
        ]
        (row,) = compare(cand, base, config=PAIRWISE)
        mean = row.verdict in ("regression", "improvement")
        var = row.stability_verdict == "variance increase"
        if not (mean or var):
            continue
        looks.append(t)
        if t >= CHANGE and (row.verdict == "regression" if kind == "mean" else var):
            return looks, t - CHANGE
    return looks, None


def summarize(delays: list[int | None], false_alarm: list[bool]) -> str:
    n = len(delays)
    got = [d for d in delays if d is not None]

    def within(k: int) -> str:
        return f"{100 * sum(d <= k for d in got) / n:5.1f}%"

    med = f"{np.median(got):4.1f}" if got else "   -"
    return f"{within(2)} {within(5)} {within(10)}   {med}   {100 * np.mean(false_alarm):5.1f}%"


def run_scenario(name, rng, cfg, n, *, step=0.0, sd_factor=1.0, night_sd=0.0, pairwise=True) -> list[str]:
    """History detection on ``n`` series, pairwise compare() on the first half of them."""
    kind = "variance" if sd_factor != 1.0 else "mean"
    null = step == 0.0 and sd_factor == 1.0
    out = {"history (E-divisive)": ([], []), "pairwise compare()": ([], [])}
    for i in range(n):
        y = simulate(rng, step, sd_factor, night_sd)
        methods = [("history (E-divisive)", lambda y=y: history_alerts(y, cfg, kind))]
        if pairwise and i < n // 2:
            methods.append(("pairwise compare()", lambda y=y: pairwise_alerts(y, kind)))
        for method, fn in methods:
            looks, delay = fn()
            out[method][0].append(None if null else delay)
            out[method][1].append(bool(looks) if null else any(t < CHANGE for t in looks))
    return [
        f"{name if j == 0 else '':24s} {method:22s} {len(d):4d}  {summarize(d, fa)}"
        for j, (method, (d, fa)) in enumerate((m, v) for m, v in out.items() if v[0])
    ]


def baseline_calibration(rng: np.random.Generator, cfg: DetectConfig, n: int) -> list[str]:
    out = []
    for diff in (0.0, 0.02, 0.03):
        hits = 0
        for _ in range(n):
            a = rng.normal(LEVEL, SD, (10, SEEDS)) + rng.normal(0, 0.0, (10, 1))
            b = rng.normal(LEVEL - diff, SD, (10, SEEDS))
            r = compare_to_baseline(series(b, 10), series(a, 10), None, cfg)
            hits += r.p_value is not None and r.p_value <= cfg.alpha
        out.append(f"  true difference {diff:.2f}: p <= {cfg.alpha} in {100 * hits / n:5.1f}% of {n}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--series", type=int, default=100, help="series per scenario, twice that for the nulls (default 100)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", metavar="TEXT", help="run only the scenarios whose name contains TEXT")
    args = parser.parse_args()
    cfg = DetectConfig()
    rng = np.random.default_rng(args.seed)
    n = args.series
    t0 = time.time()
    mde = detect_series(series(simulate(rng, 0, 1, 0), CHANGE), cfg)  # predicted at 15 nights, 5 seeds
    mde5 = mde.mde or math.nan
    print(
        f"{NIGHTS} nights x {SEEDS} seeds, seed sd {SD}; change at night {CHANGE + 1}; DetectConfig defaults"
    )
    print(f"detector's predicted MDE (step lasting {cfg.mde_nights} nights, 15 nights before): {mde5:.4f}")
    print(
        f"{'scenario':24s} {'method':22s} {'n':>4s}  {'<=2n':>6s} {'<=5n':>6s} {'<=10n':>6s}  med.d  false/mo"
    )
    scenarios = [
        ("null", {"n": 2 * n}),
        ("step -2 points", {"step": 0.02}),
        ("step -3 points", {"step": 0.03}),
        ("step -5 points", {"step": 0.05}),
        (f"step -MDE ({mde5:.3f})", {"step": mde5, "pairwise": False}),
        ("seed sd x2", {"sd_factor": 2.0}),
        ("seed sd x3", {"sd_factor": 3.0}),
        ("null, drift sd 0.01", {"night_sd": 0.01, "pairwise": False, "n": 2 * n}),
        ("step -3, drift 0.01", {"step": 0.03, "night_sd": 0.01, "pairwise": False}),
    ]
    for name, kw in scenarios:
        if args.only and args.only not in name:
            continue
        for line in run_scenario(name, rng, cfg, **{"n": n, **kw}):
            print(line, flush=True)
    print("version vs baseline (10 common nights, no change on either side), unadjusted:")
    for line in baseline_calibration(rng, cfg, 4 * n):
        print(line)
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
