"""`genbench check-config`: compose and validate a profile's verl config against a verl release, offline."""

from __future__ import annotations

import argparse

from genbench_tasks.cli import arguments
from genbench_tasks.profiles import DEFAULT_PROFILE

DESCRIPTION = """\
Build the Hydra overrides genbench passes to `python -m verl.trainer.main_ppo` for PROFILE and compose
them against each verl release's own config (verl/trainer/config/ppo_trainer.yaml from that release's
wheel, fetched once with `pip download --no-deps verl==V` into $GENBENCH_CACHE/verl-wheels, default
~/.cache/genbench). No GPU, no Ray, no verl import for the composition itself.

Checks, in order (the first failure exits 2 with one line naming the key and the version):
  compose          every key exists in that release (renamed/removed keys are named, with the rename)
  version-traps    rollout.name set (mandatory since 0.6.0); data.seed set (null = unseeded since
                   0.6.1); every seed key of the release = the run seed; the reward function under the
                   key this release reads (reward.custom_reward_function from 0.7.1; the old top-level
                   custom_reward_function is rejected: silently ignored from 0.9.0)
  batch-rules      verl's batch-size divisibility rules for the profile's GPUs
  reward-function  genbench_tasks.rewards.compute_score is reachable
  verl-native      that release's own validate_config + dataclass configs, in a subprocess importing the
                   unzipped wheel (needs torch; skipped when the release cannot be imported here, e.g.
                   0.6.x with transformers>=5; model loading is stubbed without the model files).
                   Slow (~15 s CPU per version): --no-native skips it.
  cpu-layer        profiles with cluster.device: cpu (the embedded default): every patch of genbench's
                   verl CPU layer finds the names it patches, with the shape it expects, in that release
                   (its wheel, in a subprocess, ~15-45 s); a failure names the verl version and the patch.

Paths default to placeholders; pass --data-dir/--output-dir/--model-path to check a real run.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check-config",
        help="compose + validate a profile's verl config for a verl version (offline, no GPU)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help=f"profile name or YAML path (default: {DEFAULT_PROFILE})"
    )
    parser.add_argument(
        "--verl-version",
        action="append",
        dest="versions",
        metavar="V",
        type=arguments.version,
        help="verl release to check against (repeatable; default: the profile's verl_versions)",
    )
    parser.add_argument(
        "--seed", type=arguments.seed, default=None, help="run seed (default: the profile's first)"
    )
    parser.add_argument("--data-dir", default=None, help="built data dir (rl/<family>/<split>.parquet)")
    parser.add_argument("--output-dir", default=None, help="run output dir on shared storage")
    parser.add_argument("--model-path", default=None, help="init model (default: the profile's model.path)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=arguments.key_value,
        help="extra Hydra override appended last (repeatable)",
    )
    parser.add_argument(
        "--print", action="store_true", help="print the composed config (YAML) instead of the summary"
    )
    parser.add_argument(
        "--no-native", action="store_true", help="skip verl's own validation (the slow subprocess step)"
    )
    parser.add_argument(
        "--cache-dir", default=None, help="cache root (default: $GENBENCH_CACHE or ~/.cache/genbench)"
    )
    parser.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from genbench_tasks.pipeline.cells import check_run_config
    from genbench_tasks.profiles import load_profile
    from genbench_tasks.verl import make_run

    profile = load_profile(args.profile)
    if args.cache_dir is not None:
        arguments.output_dir(args.cache_dir, "--cache-dir")
    for version in args.versions or profile.verl_versions:
        run = make_run(
            profile,
            version,
            seed=args.seed,
            data_dir=args.data_dir,
            output_dir=args.output_dir,
            model_path=args.model_path,
            extra_overrides=args.override,
        )
        report = check_run_config(profile, run, native=not args.no_native, cache_dir=args.cache_dir)
        if args.print:
            print(f"# genbench check-config: profile {profile.name}, verl {version}, seed {run.seed}")
            print(report.to_yaml())
            continue
        print(f"OK  {profile.name} @ verl {version} (seed {run.seed}): {len(report.overrides)} overrides")
        for check in report.checks:
            print(f"  {check.name:16s} {check.status}" + (f"  ({check.detail})" if check.detail else ""))
        for key, value in report.summary.items():
            print(f"  {key:22s} {value}")
    return 0
