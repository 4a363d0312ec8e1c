"""PPO's in-domain gain over its SFT init, read from verl's own validation in finished main_ppo runs: verl
validates before the first update (step 0: the SFT model) and every ``test_freq`` steps, on the training
families' val split. Per run: reward and success at step 0 and at the last validation; across runs (seeds):
the mean gain with a 95% t-interval (paired: each seed against its own step 0).

    python benchmarks/bench_ppo_gain.py RUN_OR_CELL_DIR [...]   # dirs holding verl-metrics/attempt-*.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from scipy import stats

PREFIXES = {
    "reward": "val-aux/genbench/{family}/reward/mean@1",
    "success": "val-core/genbench/{family}/acc/mean@1",
}
FAMILIES = ("rewriting", "reasoning")


def validations(run: Path) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    for path in sorted((run / "verl-metrics").glob("attempt-*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            data = row.get("data", row)
            if any(k.startswith("val-") for k in data):
                rows[int(row["step"])] = data
    return rows


def interval(gains: list[float]) -> str:
    mean = statistics.fmean(gains)
    if len(gains) < 2:
        return f"{mean:+.3f} (one run: no interval)"
    half = stats.t.ppf(0.975, len(gains) - 1) * statistics.stdev(gains) / len(gains) ** 0.5
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, help="main_ppo run dirs (train cells or genbench train --out)"
    )
    args = parser.parse_args()
    gains: dict[tuple[str, str], list[float]] = {}
    for run in args.runs:
        vals = validations(run)
        if 0 not in vals or len(vals) < 2:
            print(f"{run}: no step-0 and final validation", file=sys.stderr)
            return 2
        last = max(vals)
        cells = []
        for family in FAMILIES:
            for metric, key in PREFIXES.items():
                before, after = vals[0][key.format(family=family)], vals[last][key.format(family=family)]
                gains.setdefault((family, metric), []).append(after - before)
                cells.append(f"{family} {metric} {before:.3f}->{after:.3f}")
        print(f"{run.name} (steps 0->{last}): " + ", ".join(cells))
    print(f"\ngain over the SFT init, mean over {len(args.runs)} runs [95% t-interval]:")
    for (family, metric), values in gains.items():
        print(f"  {family:10s} {metric:8s} {interval(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
