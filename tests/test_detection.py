"""Change detection over the nightly history: E-divisive means on hand-checked values, verdicts, stability,
version vs baseline, the history format and `genbench detect`."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from genbench_tasks.artifacts.io import read_model
from genbench_tasks.artifacts.verdicts import Detection
from genbench_tasks.cli import main
from genbench_tasks.errors import GenbenchError
from genbench_tasks.evaluation.history import (
    HistoryRow,
    read_history,
    rebuild_history,
    record_run,
    rows_from_run,
    series_from_history,
)
from genbench_tasks.scoring.changepoint import best_split, e_divisive, qhat
from genbench_tasks.scoring.detection import DetectConfig, Series, detect, detect_series
from tests.fixtures.rundir import make_rundir

NIGHTS = [(date(2026, 11, 1) + timedelta(days=i)).isoformat() for i in range(40)]


def series(y: np.ndarray, version: str = "0.9.1", metric: str = "success_rate") -> Series:
    return Series(
        version,
        "code_generation",
        metric,
        NIGHTS[: len(y)],
        [row.astype(float) for row in y],
        [np.arange(y.shape[1])] * len(y),
    )


def noisy(rng, nights=30, seeds=5, sd=0.03, level=0.4) -> np.ndarray:
    return level + rng.normal(0.0, sd, (nights, seeds))


# --------------------------------------------------------------------------------------- E-divisive
def test_qhat_hand_checked():
    # X = {0,1,0,1}, Y = {5,6,5,6}: between 80 * 2/8 = 20, each within term 4 * 1/3 -> 20 - 8/3
    x = np.array([0.0, 1, 0, 1, 5, 6, 5, 6])
    q = qhat(x)
    assert q[4] == pytest.approx(52 / 3) and q[0] == q[8] == -np.inf
    assert best_split(x[None]) == (pytest.approx([52 / 3]), [4])
    # with the search over kappa (the published algorithm): Apache Otava 0.8.0's PairDistanceCalculator
    # gives the same split and value on this series (index 4, qhat 17.3333)
    q, tau = best_split(x[None], kappa_search=True)
    assert (q[0], tau[0]) == (pytest.approx(52 / 3), 4)
    # [0, 0, 3]: tau=2, kappa=3 -> between 6 * 2/3 = 4, no within terms; tau=1, kappa=3 -> 2 - 2 = 0
    qk = qhat(np.array([0.0, 0, 3]), kappa_search=True)
    assert qk[2, 3] == pytest.approx(4.0) and qk[1, 3] == pytest.approx(0.0) and qk[1, 2] == 0.0
    with pytest.raises(GenbenchError):
        qhat(x, alpha=2.0)


def test_e_divisive_finds_steps_and_is_deterministic():
    rng = np.random.default_rng(0)
    y = noisy(rng)
    y[20:] -= 0.05
    (cp,) = e_divisive(y, seed=1)
    assert cp.index == 20 and cp.p_value == pytest.approx(1 / 1000) and cp.permutations == 999
    assert e_divisive(y, seed=1) == [cp]
    y[8:] += 0.08  # two changes: at 8 (+0.08) and 20 (-0.05)
    assert [c.index for c in e_divisive(y, seed=1)] == [8, 20]
    # a mid-series step is found permuting whole nights too (valid with shared night effects)
    assert [c.index for c in e_divisive(y, seed=1, permute="nights")] == [8, 20]
    # no change: the permutation test stops early (p can no longer reach max_pvalue)
    assert e_divisive(noisy(rng), seed=1) == []


def test_e_divisive_null_rate():
    """Per-look false positive rate of the permutation test stays near max_pvalue (here 0.05)."""
    rng = np.random.default_rng(7)
    hits = sum(
        bool(e_divisive(noisy(rng, nights=12), max_pvalue=0.05, permutations=199, seed=i)) for i in range(200)
    )
    assert hits / 200 <= 0.09


# ------------------------------------------------------------------------------------------ verdicts
def test_step_gives_a_regression_on_its_night():
    rng = np.random.default_rng(1)
    y = noisy(rng)
    y[22:] -= 0.04
    v = detect_series(series(y), DetectConfig())
    assert v.verdict == "regression" and v.change_night == NIGHTS[22] and not v.deterministic
    assert v.effect.low < -0.04 < v.effect.high and v.effect.high < -0.02
    assert (v.before.first_night, v.before.last_night, v.after.nights, v.after.values) == (
        NIGHTS[0],
        NIGHTS[21],
        8,
        40,
    )
    # lower is better for *_std metrics: the same drop is an improvement
    assert detect_series(series(y, metric="reward_std"), DetectConfig()).verdict == "improvement"


def test_no_change_inconclusive_and_insufficient_data():
    rng = np.random.default_rng(2)
    cfg = DetectConfig()
    v = detect_series(series(noisy(rng)), cfg)
    # 5 seeds, sd 0.03: the step found after 5 nights with 80% power is larger than 0.02 -> inconclusive
    assert v.verdict == "inconclusive" and v.change_night is None and v.mde > 0.02
    assert v.seeds_needed is not None and v.seeds_needed > 5
    # with the seeds it asks for, the MDE comes to the minimum effect (up to the noise of the sd estimate)
    assert detect_series(series(noisy(rng, seeds=v.seeds_needed)), cfg).mde == pytest.approx(0.02, rel=0.15)
    more = detect_series(series(noisy(rng, seeds=2 * v.seeds_needed)), cfg)
    assert more.verdict == "no change" and more.mde < 0.02
    assert detect_series(series(noisy(rng, nights=2)), cfg).verdict == "insufficient data"
    # a metric without a known minimum effect: "no change" says only that nothing was detected
    unknown = detect_series(series(noisy(rng), metric="latency"), cfg)
    assert (
        unknown.verdict == "no change"
        and unknown.min_effect is None
        and "no minimum effect" in unknown.notes[0]
    )


def test_small_significant_step_is_dropped_by_the_minimum_magnitude():
    rng = np.random.default_rng(3)
    y = noisy(rng, seeds=40, sd=0.01)  # very precise: a 0.01 step is significant but below 0.02
    y[15:] += 0.01
    v = detect_series(series(y), DetectConfig())
    assert v.change_night is None and "smaller than the minimum effect" in v.notes[0]


def test_deterministic_series_reports_any_difference():
    rng = np.random.default_rng(4)
    night = rng.normal(0.4, 0.03, 5)
    y = np.tile(night, (8, 1))
    y[5:] -= 0.001  # tiny, but identical seeds and code must give identical numbers
    v = detect_series(series(y), DetectConfig())
    assert v.deterministic and v.verdict == "regression" and v.change_night == NIGHTS[5]
    assert (v.effect.estimate, v.effect.low, v.effect.high) == pytest.approx((-0.001, -0.001, -0.001))
    assert v.mde == 0.0 and "2 distinct" in v.notes[0]
    same = detect_series(series(np.tile(night, (8, 1))), DetectConfig())
    assert same.verdict == "no change" and same.change_night is None


def test_stability_fires_on_a_variance_increase():
    rng = np.random.default_rng(5)
    y = rng.normal(0.0, 0.03, (30, 5))
    y[27:] *= 3
    v = detect_series(series(0.4 + y), DetectConfig())
    assert v.stability.verdict == "variance increase" and v.stability.change_night >= NIGHTS[26]
    assert v.stability.sd_ratio.low > 1.5 and v.stability.df == (12, 108)
    assert detect_series(series(noisy(rng)), DetectConfig()).stability.verdict == "no change"


def test_versus_baseline_pooled_and_bh():
    rng = np.random.default_rng(6)
    base = noisy(rng, nights=10)
    rows = [
        series(base, "0.8.0"),
        series(noisy(rng, nights=10) - 0.03, "0.9.1"),
        series(noisy(rng, nights=10), "0.9.2"),
    ]
    det = detect(rows, baseline="0.8.0")
    by = {r.version: r for r in det.versus_baseline}
    assert set(by) == {"0.9.1", "0.9.2"} and by["0.9.1"].nights == 10
    assert by["0.9.1"].verdict == "regression" and by["0.9.1"].effect.high < -0.015
    assert by["0.9.2"].verdict in ("no change", "inconclusive")
    ps = [by[v].p_value for v in ("0.9.1", "0.9.2")]
    assert [by[v].p_adjusted for v in ("0.9.1", "0.9.2")] == pytest.approx(
        list(sps.false_discovery_control(ps))
    )
    # one night: 5 vs 5 seeds cannot resolve 0.02 -> inconclusive with the seeds that would
    one = detect([series(base[:1], "0.8.0"), series(base[1:2] - 0.01, "0.9.1")], baseline="0.8.0")
    (r,) = one.versus_baseline
    assert r.verdict == "inconclusive" and r.mde > 0.02 and r.seeds_needed > 5
    assert detect(rows, baseline="nope").warnings == ["baseline 'nope' has no rows in the history"]


def test_versus_baseline_since_the_last_change():
    rng = np.random.default_rng(8)
    base = noisy(rng)
    cand = noisy(rng)
    cand[24:] -= 0.05  # 0.9.1 regressed at night 24: compare only from there
    det = detect([series(base, "0.8.0"), series(cand, "0.9.1")], baseline="0.8.0")
    (r,) = det.versus_baseline
    assert r.since_night == NIGHTS[24] and r.nights == 6 and r.verdict == "regression"


# ------------------------------------------------------------------------------------------- history
def test_history_rows_record_and_rebuild(tmp_path):
    runs = tmp_path / "runs"
    for i, day in enumerate(("2026-11-18", "2026-11-19")):
        make_rundir(runs / day, run_id=f"n{i}", date=day, seeds=(0, 1), rng_seed=i)
    rows = rows_from_run(runs / "2026-11-18")
    assert {r.version for r in rows} == {"sft", "0.8.0", "0.9.1"} and all(
        r.night == "2026-11-18" for r in rows
    )
    r = next(r for r in rows if r.version == "0.9.1" and r.seed == 1 and r.family == "humaneval")
    assert r.run_key == "2026-11-18_n0" and r.role == "heldout" and r.profile == "local-cpu"
    assert r.items == "runs/2026-11-18_n0/eval/0.9.1/seed=1/samples.humaneval.jsonl"
    history = tmp_path / "history"
    for day in ("2026-11-18", "2026-11-19"):
        record_run(runs / day, history)
    first = {p.name: p.read_bytes() for p in history.iterdir()}
    assert sorted(first) == ["2026-11-18_n0.jsonl", "2026-11-19_n1.jsonl"]
    assert (runs / "2026-11-18" / "history.jsonl").read_bytes() == first["2026-11-18_n0.jsonl"]
    # lost: rebuilt from the run directories, byte for byte; and again (idempotent)
    rebuilt = tmp_path / "rebuilt"
    assert rebuild_history(runs, rebuilt) == 2 and rebuild_history(runs, rebuilt) == 2
    assert {p.name: p.read_bytes() for p in rebuilt.iterdir()} == first
    # readable without the package: plain JSON lines with the documented columns
    line = json.loads(first["2026-11-18_n0.jsonl"].splitlines()[0])
    assert {"night", "version", "seed", "family", "metric", "value", "run_id", "items"} <= set(line)
    df = read_history(history)
    assert sorted(df["night"].unique()) == ["2026-11-18", "2026-11-19"]


def _hand_rows(rng) -> list[dict]:
    rows = []
    for t in range(20):
        for s in range(5):
            for v, drop in (("a", 0.0), ("b", 0.05 if t >= 14 else 0.0)):
                rows.append(
                    {
                        "night": NIGHTS[t],
                        "version": v,
                        "seed": s,
                        "family": "mine",
                        "metric": "acc",
                        "value": 0.5 - drop + rng.normal(0, 0.02),
                    }
                )
                rows.append(
                    {
                        "night": NIGHTS[t],
                        "version": v,
                        "seed": s,
                        "family": "mine",
                        "metric": "speed",
                        "value": rng.normal(10, 1),
                    }
                )
    return rows


def test_read_history_formats_agree(tmp_path):
    rows = _hand_rows(np.random.default_rng(9))
    df = pd.DataFrame(rows)
    df.to_csv(tmp_path / "h.csv", index=False)
    df.to_parquet(tmp_path / "h.parquet")
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    frames = [
        read_history(tmp_path / f"h.{ext}")[["night", "version", "seed", "family", "metric", "value"]]
        for ext in ("csv", "parquet", "jsonl")
    ]
    for f in frames[1:]:
        pd.testing.assert_frame_equal(
            f.reset_index(drop=True), frames[0].reset_index(drop=True), check_exact=False
        )
    # an unregistered family: every metric is tested unless narrowed
    ser, notes = series_from_history(frames[0])
    assert {s.metric for s in ser} == {"acc", "speed"} and "not registered" in notes[0]
    ser, _ = series_from_history(frames[0], metrics=["acc"])
    assert {(s.version, s.metric) for s in ser} == {("a", "acc"), ("b", "acc")} and len(ser[0].nights) == 20
    with pytest.raises(GenbenchError, match="no metric to test"):
        series_from_history(frames[0], metrics=["nope"])


def test_read_history_rejects_bad_input(tmp_path):
    (tmp_path / "a.csv").write_text("night,version,seed,family,value\n2026-11-01,a,0,f,1\n")
    with pytest.raises(GenbenchError, match="missing column.*metric"):
        read_history(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("night,version,seed,family,metric,value\nyesterday,a,0,f,m,1\n")
    with pytest.raises(GenbenchError, match="ISO dates"):
        read_history(tmp_path / "b.csv")
    (tmp_path / "c.jsonl").write_text("{not json\n")
    with pytest.raises(GenbenchError, match="not readable"):
        read_history(tmp_path / "c.jsonl")
    with pytest.raises(GenbenchError, match="does not exist"):
        read_history(tmp_path / "none")
    with pytest.raises(ValueError):
        HistoryRow(night="2026-13-01", version="a", seed=0, family="f", metric="m", value=1.0)


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_detect_hand_written_file(tmp_path, capsys):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _hand_rows(np.random.default_rng(10))))
    out = tmp_path / "verdicts.json"
    assert (
        main(["detect", "--history", str(path), "--metrics", "acc", "--baseline", "a", "--out", str(out)])
        == 0
    )
    doc = read_model(out, Detection)
    by = {(v.version, v.metric): v for v in doc.verdicts}
    assert set(by) == {("a", "acc"), ("b", "acc")}
    b = by[("b", "acc")]
    assert b.verdict == "regression" and b.change_night == NIGHTS[14]
    assert b.effect.low < -0.05 < b.effect.high and b.mde > 0
    assert by[("a", "acc")].change_night is None and by[("a", "acc")].verdict == "no change"
    assert doc.versus_baseline[0].since_night == NIGHTS[14]
    assert "regression  b mine/acc at 2026-11-15" in capsys.readouterr().out


def test_cli_detect_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("night,version\n2026-11-01,a\n")
    for args in (
        ["--history", str(tmp_path / "bad.csv")],
        ["--history", str(tmp_path / "missing")],
        ["--history", str(tmp_path / "bad.csv"), "--metrics", ","],
    ):
        assert main(["detect", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("genbench: error: ") and "\n" not in err
