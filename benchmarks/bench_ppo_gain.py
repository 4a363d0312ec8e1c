"""PPO's in-domain gain over its SFT init, read from verl's own validation in finished main_ppo runs: verl
validates before the first update (step 0: the SFT model) and every ``test_freq`` steps, on the training
families' val split. Per run: reward and success at step 0 and at the last validation; across runs (seeds):
the mean gain with the report's 95% bootstrap CI (paired: each seed against its own step 0).

    python benchmarks/bench_ppo_gain.py RUN_OR_CELL_DIR [...]   # dirs holding verl-metrics/attempt-*.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genbench_tasks.scoring.stats import describe
from genbench_tasks.verl.job import verl_logged

#: verl's validation means over ``val_kwargs.n`` samples a prompt: ``.../mean@N``
PREFIXES = {
    "reward": "val-aux/genbench/{family}/reward/mean@",
    "success": "val-core/genbench/{family}/acc/mean@",
}
FAMILIES = ("rewriting", "reasoning")


def validations(run: Path) -> dict[int, dict]:
    return {step: data for step, data in verl_logged(run).items() if any(k.startswith("val-") for k in data)}


def sample_mean(data: dict, prefix: str) -> float:
    """The ``mean@N`` figure under ``prefix`` (verl logs one per sample count it validated with)."""
    found = {int(key[len(prefix) :]): value for key, value in data.items() if key.startswith(prefix)}
    if not found:
        raise KeyError(f"no {prefix}N in verl's validation metrics")
    return found[max(found)]


def interval(gains: list[float]) -> str:
    summary = describe(gains)
    if summary.ci_low is None:
        return f"{summary.mean:+.3f} (one run: no interval)"
    return f"{summary.mean:+.3f} [{summary.ci_low:+.3f}, {summary.ci_high:+.3f}]"


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
                prefix = key.format(family=family)
                before, after = sample_mean(vals[0], prefix), sample_mean(vals[last], prefix)
                gains.setdefault((family, metric), []).append(after - before)
                cells.append(f"{family} {metric} {before:.3f}->{after:.3f}")
        print(f"{run.name} (steps 0->{last}): " + ", ".join(cells))
    print(f"\ngain over the SFT init, mean over {len(args.runs)} runs [95% bootstrap CI]:")
    for (family, metric), values in gains.items():
        print(f"  {family:10s} {metric:8s} {interval(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
