"""Benchmark one local-cpu verl-core PPO run: wall time, CPU time, peak memory, first-vs-last reward.

    .venv/bin/python benchmarks/bench_train.py [--profile local-cpu] [--verl-version 0.9.1] [--seed 0]
        [--work DIR] [--keep]

The SFT stage is timed separately (it is shared across seeds/versions). Each stage runs in its own
subprocess so peak RSS (ru_maxrss) is per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE = r"""
import json, resource, sys, time
from genbench_tasks.profiles import load_profile
stage, profile, data, out, version, seed = sys.argv[1:7]
p = load_profile(profile)
t0, c0 = time.time(), time.process_time()
if stage == "sft":
    from genbench_tasks.training.sft import ensure_sft
    r = ensure_sft(p, data, out)
    extra = {"val_sampled": r.val_sampled, "val_greedy": r.val_greedy, "loss_first": r.loss_first,
             "loss_last": r.loss_last, "skipped": r.skipped}
else:
    from genbench_tasks.training.ppo_core import train_run
    r = train_run(p, version, int(seed), data, out, sft_dir=sys.argv[7], printer=lambda s: None)
    extra = {"reward_first": r.reward_first, "reward_last": r.reward_last, "steps": r.steps}
print("BENCH " + json.dumps({"wall_s": time.time() - t0, "cpu_s": time.process_time() - c0,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}))
"""


def _stage(args: list[str]) -> dict:
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", STAGE, *args], capture_output=True, text=True, env={**os.environ}
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"stage {args[0]} failed ({proc.returncode})")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH "))
    result = json.loads(line[len("BENCH ") :])
    result["process_wall_s"] = time.time() - started  # includes interpreter start + imports
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="local-cpu")
    parser.add_argument("--verl-version", default="0.9.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="work dir (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work or tempfile.mkdtemp(prefix="genbench-bench-"))
    data, sft, run = work / "data", work / "sft", work / f"run-{args.verl_version}-s{args.seed}"
    from genbench_tasks.data.build import build_datasets
    from genbench_tasks.profiles import load_profile

    if not (data / "datasets.json").is_file():
        build_datasets(load_profile(args.profile), data)
    common = [args.profile, str(data)]
    sft_res = _stage(["sft", *common, str(sft), args.verl_version, str(args.seed)])
    ppo_res = _stage(["ppo", *common, str(run), args.verl_version, str(args.seed), str(sft)])
    from genbench_tasks.training.outputs import read_metrics, train_time_s

    metrics = read_metrics(run / "metrics.jsonl")
    print(f"work dir: {work}   (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(
        f"SFT : wall {sft_res['wall_s']:7.1f}s  cpu {sft_res['cpu_s']:7.1f}s  peak RSS "
        f"{sft_res['peak_rss_mb']:6.0f} MB  loss {sft_res['loss_first']:.3f} -> {sft_res['loss_last']:.3f}  "
        f"val reward sampled {sft_res['val_sampled'].get('reward_mean', 0):.3f} "
        f"(acc {sft_res['val_sampled'].get('acc_mean', 0):.3f}), greedy "
        f"{sft_res['val_greedy'].get('reward_mean', 0):.3f} (acc {sft_res['val_greedy'].get('acc_mean', 0):.3f})"
        + ("  [cached]" if sft_res["skipped"] else "")
    )
    print(
        f"PPO : wall {ppo_res['wall_s']:7.1f}s  cpu {ppo_res['cpu_s']:7.1f}s  peak RSS "
        f"{ppo_res['peak_rss_mb']:6.0f} MB  steps {ppo_res['steps']}  step time mean "
        f"{train_time_s(metrics) / len(metrics):.2f}s  (process incl. imports "
        f"{ppo_res['process_wall_s']:.1f}s)"
    )
    print(
        f"reward (train families, mean of first/last quarter of steps): {ppo_res['reward_first']:.4f} -> "
        f"{ppo_res['reward_last']:.4f}  ({ppo_res['reward_last'] - ppo_res['reward_first']:+.4f})"
    )
    print(f"this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
