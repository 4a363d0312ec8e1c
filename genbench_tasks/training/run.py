"""Module entry point (usable as a Ray job entrypoint):

    python -m genbench_tasks.training.run --profile local-cpu --verl-version 0.9.1 --seed 0 \
        --data DIR --out DIR [--resume] [--sft-dir DIR]
    python -m genbench_tasks.training.run --backend trl-ppo --profile local-cpu --seed 0 \
        --data DIR --out DIR [--resume] [--sft-dir DIR]

`--backend verl-core` (default) is one (verl version, seed) run; `--backend trl-ppo` the TRL PPO baseline,
one run per (profile, data, seed), so it takes no --verl-version.
Exit codes: 0 done, 2 user error (e.g. the imported verl differs from --verl-version), 3 interrupted.
Progress: one line per PPO step on stdout; the final line is `GENBENCH_RESULT {json TrainResult}`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from genbench_tasks.errors import GenbenchError
from genbench_tasks.profiles import DEFAULT_PROFILE

RESULT_PREFIX = "GENBENCH_RESULT "
BACKENDS = ("verl-core", "trl-ppo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m genbench_tasks.training.run",
        description=(
            "One PPO+GAE training run (SFT warm start shared across seeds/versions): verl-core per "
            "(verl version, seed), or the trl-ppo baseline per seed."
        ),
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="verl-core", help="trainer (default: verl-core)"
    )
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="profile name or YAML path")
    parser.add_argument(
        "--verl-version", default=None, help="verl version this run must import (verl-core only; required)"
    )
    parser.add_argument("--seed", type=int, required=True, help="PPO seed")
    parser.add_argument("--data", required=True, help="dataset dir (holds datasets.json)")
    parser.add_argument("--out", required=True, help="run output dir")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="verl-core: continue from the newest complete state; trl-ppo: keep a complete run",
    )
    parser.add_argument(
        "--sft-dir", default=None, help="shared SFT dir (default: sibling sft-<key> of --out)"
    )
    parser.add_argument("--steps", type=int, default=None, help="override ppo.steps")
    return parser


def _print(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend == "verl-core" and not args.verl_version:
        parser.error("--verl-version is required with --backend verl-core")
    if args.backend == "trl-ppo" and args.verl_version:
        parser.error("--backend trl-ppo is trained once per seed, not per verl version: drop --verl-version")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from genbench_tasks.profiles import load_profile

        if args.backend == "verl-core":
            from genbench_tasks.training.verl_adapter import check_verl_version

            check_verl_version(args.verl_version)  # before loading anything else
        overrides = {"ppo": {"steps": args.steps}} if args.steps is not None else None
        profile = load_profile(args.profile, overrides)
        from genbench_tasks.training.ppo_core import InterruptedRun

        try:
            if args.backend == "trl-ppo":
                from genbench_tasks.training import trl_ppo

                result = trl_ppo.train_run(
                    profile,
                    args.seed,
                    args.data,
                    args.out,
                    resume=args.resume,
                    sft_dir=args.sft_dir,
                    printer=_print,
                )
            else:
                from genbench_tasks.training.ppo_core import train_run

                result = train_run(
                    profile,
                    args.verl_version,
                    args.seed,
                    args.data,
                    args.out,
                    resume=args.resume,
                    sft_dir=args.sft_dir,
                    printer=_print,
                )
        except InterruptedRun as exc:
            print(f"genbench: interrupted: {exc}", file=sys.stderr)
            return 3
    except GenbenchError as exc:
        print(f"genbench: error: {exc}", file=sys.stderr)
        return 2
    print(RESULT_PREFIX + json.dumps(result.model_dump()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
