"""`genbench train`: one PPO+GAE run on this machine: by verl (verl's own `main_ppo`, the nightly's job
entrypoint run here: on CPU through the CPU layer), verl-core (our loop on verl's core_algos, in process) or
trl-ppo (the study's traditional-PPO baseline, TRL's PPOTrainer).

Ray jobs go through the nightly's one launch path (the DAG's RayJobOperator), not through this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genbench_tasks.cli.arguments import json_object, output_dir, seed, version
from genbench_tasks.profiles import DEFAULT_PROFILE


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train one PPO run (a verl version's, or the TRL baseline's) for one seed",
        description=(
            "Run the shared SFT warm start (once per profile+data) and one PPO+GAE run: OUT/checkpoint (HF), "
            "OUT/metrics.jsonl. --backend verl (default for profiles with backend: verl) runs verl's own "
            "trainer, python -m verl.trainer.main_ppo, exactly as the nightly's Ray job does (preflight, "
            "main_ppo, FSDP->HF merge; OUT/state holds verl's checkpoints and a rerun resumes); on "
            "cluster.device: cpu through genbench's CPU layer, another verl release from its cached install. "
            "--backend verl-core runs the in-process loop on verl's core_algos (OUT/manifest.json, "
            "OUT/state/step_N) and fails fast when the imported verl is another. Both need --verl-version. "
            "--backend trl-ppo trains the traditional-PPO baseline with the same data, SFT start, reward and "
            "seeds (docs/trl-baseline.md) and takes no verl version. Evaluate OUT/checkpoint with `genbench eval`."
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
        default=None,
        help="verl: verl's main_ppo; verl-core: the in-process loop; trl-ppo: the TRL baseline "
        "(default: the profile's backend)",
    )
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help=f"profile name or YAML path (default: {DEFAULT_PROFILE})"
    )
    parser.add_argument(
        "--overrides", type=json_object, default=None, help="JSON deep-merged into the profile (as for demo)"
    )
    parser.add_argument(
        "--verl-version",
        type=version,
        help="verl version the run must import (verl and verl-core; required there)",
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


BACKENDS = ("verl", "verl-core", "trl-ppo")


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

    profile = load_profile(args.profile, args.overrides)
    backend = args.backend or profile.backend
    if backend != "trl-ppo" and not args.verl_version:
        raise GenbenchError(f"--verl-version is required with --backend {backend}")
    if backend == "trl-ppo" and args.verl_version:
        raise GenbenchError(
            "--verl-version applies to --backend verl/verl-core only (trl-ppo trains no verl)"
        )
    if backend == "verl" and args.resume:
        raise GenbenchError(
            "--backend verl always resumes from OUT/state (verl's own checkpoints): drop --resume"
        )
    for family in profile.data.families:  # configuration errors before anything is written
        get_family(family)
    if args.data:
        from genbench_tasks.data.build import load_manifest

        load_manifest(args.data)  # a readable dataset directory, before anything is written
    output_dir(args.out, "--out")  # fail now, not after the SFT warm start
    if args.sft_dir:
        output_dir(args.sft_dir, "--sft-dir")
    if backend == "trl-ppo":
        from genbench_tasks.training import trl_ppo

        trl_ppo.check_settings(profile)  # settings TRL cannot reproduce, before the SFT warm start
    if backend == "verl":
        from genbench_tasks.pipeline.cells import check_run_config

        check_run_config(profile, _verl_run(profile, args, str(args.data or Path(args.out) / "data")))
    data_dir = _ensure_data(profile, args.data, args.out)
    if backend == "verl":
        return _train_verl(profile, args, data_dir)
    if backend == "trl-ppo":
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


def _verl_run(profile, args: argparse.Namespace, data_dir: str, model_path: str | None = None):
    from genbench_tasks.verl import make_run

    placeholder = model_path or str(Path(args.out) / "sft-placeholder")
    return make_run(
        profile,
        args.verl_version,
        seed=args.seed,
        data_dir=data_dir,
        output_dir=args.out,
        model_path=placeholder,
    )


def _train_verl(profile, args: argparse.Namespace, data_dir: str) -> int:
    """SFT warm start, then the nightly's verl job entrypoint run here (bash), then its metrics summary."""
    from genbench_tasks.errors import GenbenchError
    from genbench_tasks.pipeline.cells import run_job, run_verl_job_here
    from genbench_tasks.training.outputs import read_metrics, reward_first_last
    from genbench_tasks.training.sft import default_sft_dir, ensure_sft

    sft_dir = Path(args.sft_dir) if args.sft_dir else default_sft_dir(profile, data_dir, Path(args.out))
    sft = ensure_sft(profile, data_dir, sft_dir)
    run = _verl_run(profile, args, data_dir, model_path=sft.checkpoint)
    job = run_job(profile, run, check=False)  # checked above, before the SFT
    code = run_verl_job_here(job, printer=_print)
    if code != 0:
        raise GenbenchError(
            f"verl job failed (exit {code}); rerun the same command to resume from {args.out}/state"
        )
    rows = read_metrics(Path(args.out) / "metrics.jsonl")
    first, last = reward_first_last(rows) if rows else (None, None)
    summary = {
        "backend": "verl",
        "verl_version": args.verl_version,
        "seed": args.seed,
        "run_dir": args.out,
        "checkpoint": job.model_dir,
        "sft_checkpoint": sft.checkpoint,
        "steps": len(rows),
        "reward_first": first,
        "reward_last": last,
    }
    print(json.dumps(summary, indent=2))
    return 0
