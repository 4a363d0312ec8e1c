"""`genbench eval`: evaluate one checkpoint with one seed."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from genbench_tasks.evaluation.run import add_eval_arguments

    parser = sub.add_parser(
        "eval",
        help="evaluate a checkpoint with one seed",
        description=(
            "Sample K responses per test prompt of every family (temperature > 0, seeded per "
            "(seed, prompt, sample) so results do not depend on batch size or order), score them, and write "
            "samples.<family>.jsonl, metrics.json and manifest.json to --out. A complete run with the same "
            "inputs in --out is reused (use --force to redo)."
        ),
        epilog=(
            "example: genbench eval --checkpoint runs/r1/train/0.9.1/seed=0/checkpoint --data runs/r1/data "
            "--seed 0 --out runs/r1/eval/0.9.1/seed=0"
        ),
    )
    add_eval_arguments(parser, data_required=False)
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from genbench_tasks.evaluation.run import print_result, run_from_args

    print_result(run_from_args(args))
    return 0
