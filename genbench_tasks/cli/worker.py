"""`genbench worker`: the one entry point of every Ray job the nightly submits (run on the Ray worker).

* `run CELL_DIR`: compute the cell described by CELL_DIR/cell.json (SFT, PPO or evaluation), skipping a
  finished one; per-step progress on stdout, the last line `GENBENCH_RESULT {json result}`.
* `verl-preflight`, `verl-main-ppo`, `verl-finish`: the steps of a verl train job (GPU or CPU) around
  verl's model merger, see `genbench_tasks.verl.job`: check the environment and stage inputs; run
  `python -m verl.trainer.main_ppo` (its metrics to the file logger, on CPU in a private Ray cluster); check
  the merged model, write `metrics.jsonl`, mark the cell done.

Ray jobs start it as `python -m genbench_tasks.cli worker ...` (the image's own genbench). Errors: one line
on stderr, exit 2 (configuration, inputs, a verl version mismatch); a killed job resumes from the cell's
own state when re-run (Ray retries append `--resume`, accepted and implied).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from genbench_tasks.cli.arguments import existing_dir

RESULT_PREFIX = "GENBENCH_RESULT "


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "worker",
        help="Ray job entry point: compute one pipeline cell",
        description="What every Ray job of the nightly runs (on the worker; not needed by hand).",
    )
    steps = parser.add_subparsers(dest="worker_command", metavar="STEP", required=True)
    run = steps.add_parser("run", help="compute the cell in CELL_DIR (skipped when already complete)")
    run.add_argument("cell_dir", type=existing_dir, metavar="CELL_DIR", help="directory holding cell.json")
    _resume_flag(run)
    run.set_defaults(func=_run)
    pre = steps.add_parser(
        "verl-preflight", help="verl job: check the image (verl/vLLM/reward), stage S3 inputs"
    )
    pre.add_argument("--verl-version", required=True)
    pre.add_argument("--output-dir", required=True)
    pre.add_argument("--stage", action="append", nargs=2, default=[], metavar=("S3_URI", "PATH"))
    pre.add_argument("--require", action="append", default=[], metavar="PATH", help="must exist")
    pre.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: checks the CPU layer")
    pre.set_defaults(func=_verl_preflight)
    ppo = steps.add_parser(
        "verl-main-ppo",
        help="verl job: run python -m verl.trainer.main_ppo OVERRIDES (metrics to OUTPUT_DIR/verl-metrics)",
    )
    ppo.add_argument("--output-dir", required=True)
    ppo.add_argument(
        "--private-ray", action="store_true", help="CPU: verl starts its own private single-node Ray cluster"
    )
    ppo.add_argument("overrides", nargs=argparse.REMAINDER, help="-- then main_ppo's Hydra overrides")
    ppo.set_defaults(func=_verl_main_ppo)
    fin = steps.add_parser("verl-finish", help="verl job: check the merged model, mark the cell done")
    fin.add_argument("--output-dir", required=True)
    _resume_flag(fin)
    fin.set_defaults(func=_verl_finish)


def _resume_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume", action="store_true", help="appended on Ray retries; a cell always resumes from its state"
    )


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from genbench_tasks.pipeline.cells import run_cell

    result = run_cell(args.cell_dir, printer=lambda line: print(line, flush=True))
    if result is not None:
        print(RESULT_PREFIX + json.dumps(result.model_dump(mode="json"), default=str), flush=True)
    return 0


def _verl_preflight(args: argparse.Namespace) -> int:
    from genbench_tasks.verl import preflight

    if args.device == "cpu":
        from genbench_tasks import verl_cpu

        verl_cpu.preflight(args.verl_version)
    pairs = [(src, dst) for src, dst in args.stage]
    print(json.dumps(preflight(args.verl_version, args.output_dir, pairs, args.require, args.device)))
    return 0


def _verl_main_ppo(args: argparse.Namespace) -> int:
    from genbench_tasks.verl import run_main_ppo

    overrides = args.overrides[1:] if args.overrides[:1] == ["--"] else args.overrides
    return run_main_ppo(args.output_dir, overrides, private_ray=args.private_ray)


def _verl_finish(args: argparse.Namespace) -> int:
    import time

    from genbench_tasks.pipeline.cells import SPEC_NAME, mark_done, read_spec
    from genbench_tasks.verl import check_merged_model, collect_metrics

    model_dir, started = check_merged_model(args.output_dir)
    collect_metrics(args.output_dir)
    if (Path(args.output_dir) / SPEC_NAME).is_file():  # a pipeline cell: mark it done
        mark_done(read_spec(args.output_dir), time.time() - started)
    print(model_dir)
    return 0
