"""`genbench train`: one PPO+GAE run in this process, by verl-core (our loop on verl's core_algos, checked
against --verl-version) or by trl-ppo (the study's traditional-PPO baseline, TRL's PPOTrainer).

Ray jobs go through the nightly's one launch path (the DAG's RayJobOperator submitting
`genbench worker run CELL_DIR`), not through this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genbench_tasks.cli.arguments import output_dir, seed, version
from genbench_tasks.profiles import DEFAULT_PROFILE


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train one PPO run (a verl version's, or the TRL baseline's) for one seed",
        description=(
            "Run the shared SFT warm start (once per profile+data) and one PPO+GAE run: OUT/checkpoint (HF), "
            "OUT/metrics.jsonl, OUT/manifest.json (verl-core also OUT/state/step_N). --backend verl-core "
            "(default) needs --verl-version and fails fast when the imported verl is another; --backend "
            "trl-ppo trains the traditional-PPO baseline with the same data, SFT start, reward and seeds "
            "(docs/trl-baseline.md) and takes no verl version. Evaluate OUT/checkpoint with `genbench eval`."
        ),
        epilog=(
            f"examples: genbench train --profile {DEFAULT_PROFILE} --verl-version 0.9.1 --seed 0 --out runs/v091-s0\n"
            f"          genbench train --profile {DEFAULT_PROFILE} --backend trl-ppo --seed 0 --out runs/trl-s0"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=BACKENDS[0],
        help="verl-core: verl's PPO (default); trl-ppo: the TRL baseline",
    )
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help=f"profile name or YAML path (default: {DEFAULT_PROFILE})"
    )
    parser.add_argument(
        "--verl-version",
        type=version,
        help="verl version the run must import (verl-core only; required there)",
    )
    parser.add_argument("--seed", type=seed, required=True, help="PPO seed (0 to 2**32-1)")
    parser.add_argument("--out", required=True, help="run output directory (created, must be writable)")
    parser.add_argument("--data", default=None, help="dataset dir (default: build into OUT/data)")
    parser.add_argument("--sft-dir", default=None, help="shared SFT dir (default: sibling sft-<key> of OUT)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete state (trl-ppo keeps no mid-run state: a complete run is kept)",
    )
    parser.set_defaults(func=_train)


BACKENDS = ("verl-core", "trl-ppo")


def _ensure_data(profile, data: str | None, out: str) -> str:
    if data:
        return data
    from genbench_tasks.data.build import MANIFEST_NAME, build_datasets

    data_dir = Path(out) / "data"
    if not (data_dir / MANIFEST_NAME).is_file():
        build_datasets(profile, data_dir)
    return str(data_dir)


def _print(line: str) -> None:
    print(line, flush=True)


def _train(args: argparse.Namespace) -> int:
    from genbench_tasks.errors import GenbenchError
    from genbench_tasks.families import get_family
    from genbench_tasks.profiles import load_profile

    if args.backend == "verl-core" and not args.verl_version:
        raise GenbenchError("--verl-version is required with --backend verl-core")
    if args.backend == "trl-ppo" and args.verl_version:
        raise GenbenchError("--verl-version applies to --backend verl-core only (trl-ppo trains no verl)")
    profile = load_profile(args.profile)
    for family in profile.data.families:  # configuration errors before anything is written
        get_family(family)
    if args.data:
        from genbench_tasks.data.build import load_manifest

        load_manifest(args.data)  # a readable dataset directory, before anything is written
    output_dir(args.out, "--out")  # fail now, not after the SFT warm start
    if args.sft_dir:
        output_dir(args.sft_dir, "--sft-dir")
    if args.backend == "trl-ppo":
        from genbench_tasks.training import trl_ppo

        trl_ppo.check_settings(profile)  # settings TRL cannot reproduce, before the SFT warm start
    data_dir = _ensure_data(profile, args.data, args.out)
    if args.backend == "trl-ppo":
        result = trl_ppo.train_run(
            profile, args.seed, data_dir, args.out, resume=args.resume, sft_dir=args.sft_dir, printer=_print
        )
    else:
        from genbench_tasks.training.ppo_core import train_run

        result = train_run(
            profile,
            args.verl_version,
            args.seed,
            data_dir,
            args.out,
            resume=args.resume,
            sft_dir=args.sft_dir,
            printer=_print,
        )
    print(json.dumps(result.model_dump(), indent=2), file=sys.stdout)
    return 0
