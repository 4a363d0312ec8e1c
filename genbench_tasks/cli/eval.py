"""`genbench eval`: evaluate one checkpoint with one seed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench_tasks.cli import arguments
from genbench_tasks.profiles import DEFAULT_PROFILE

if TYPE_CHECKING:
    from genbench_tasks.evaluation.run import EvalResult
    from genbench_tasks.profiles import EvalSettings


def register(sub: argparse._SubParsersAction) -> None:
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
    print_result(run_from_args(args))
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser, *, data_required: bool) -> None:
    """``genbench eval``'s arguments (malformed values fail while parsing)."""
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="Hugging Face model directory")
    parser.add_argument(
        "--data",
        required=data_required,
        metavar="DIR",
        help="dataset directory with datasets.json"
        + ("" if data_required else " (default: the nearest data/datasets.json above the checkpoint)"),
    )
    parser.add_argument("--seed", required=True, type=arguments.seed, help="evaluation seed (sampling)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output directory (e.g. RUNDIR/eval/<label>/seed=<n>)"
    )
    parser.add_argument(
        "--families", nargs="+", metavar="FAMILY", help="families to evaluate (default: every test split)"
    )
    parser.add_argument("--backend", choices=["hf", "vllm"], help="generation backend (default: profile's)")
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help=f"profile whose eval settings apply (default: {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--model-label",
        metavar="LABEL",
        help="'sft' or the verl version (default: <label> of an .../<label>/seed=<n> --out, else checkpoint name)",
    )
    parser.add_argument(
        "--samples-per-prompt",
        "-k",
        type=arguments.positive_int,
        metavar="K",
        help="override samples per prompt",
    )
    parser.add_argument(
        "--temperature", type=arguments.temperature, help="override sampling temperature (> 0)"
    )
    parser.add_argument("--top-p", type=arguments.unit_interval, help="override nucleus top-p, in (0, 1]")
    parser.add_argument("--max-new-tokens", type=arguments.positive_int, help="override response length")
    parser.add_argument(
        "--max-prompts", type=arguments.positive_int, metavar="N", help="override prompts per family"
    )
    parser.add_argument(
        "--batch-size",
        type=arguments.positive_int,
        help="override generation batch size (does not change samples)",
    )
    parser.add_argument("--threads", type=arguments.positive_int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--force", action="store_true", help="re-run even if a complete run is cached")


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    from genbench_tasks.errors import GenbenchError
    from genbench_tasks.profiles import EvalSettings, load_profile

    settings = load_profile(args.profile).eval
    overrides = {
        "backend": args.backend,
        "samples_per_prompt": args.samples_per_prompt,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "max_prompts_per_family": args.max_prompts,
        "batch_size": args.batch_size,
    }
    merged = {**settings.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return EvalSettings.model_validate(merged)
    except Exception as exc:
        raise GenbenchError(f"invalid eval settings: {str(exc).splitlines()[-1].strip()}") from exc


def run_from_args(args: argparse.Namespace) -> EvalResult:
    from genbench_tasks.errors import GenbenchError
    from genbench_tasks.evaluation.run import evaluate_checkpoint, find_data_dir
    from genbench_tasks.profiles import load_profile

    settings = settings_from_args(args)
    if not Path(args.checkpoint).is_dir():
        raise GenbenchError(f"checkpoint {args.checkpoint} is not a directory")
    if args.data is not None and not Path(args.data).is_dir():
        raise GenbenchError(f"--data {args.data} is not a directory")
    arguments.output_dir(args.out, "--out")  # before the model loads
    generator_kwargs: dict[str, Any] = {}
    if settings.backend == "vllm":
        cluster = load_profile(args.profile).cluster
        generator_kwargs = {
            "tensor_parallel_size": cluster.tensor_parallel_size,
            "gpu_memory_utilization": cluster.gpu_memory_utilization,
            "seed": args.seed,
        }
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    data = Path(args.data) if args.data else find_data_dir(Path(args.checkpoint))
    return evaluate_checkpoint(
        args.checkpoint,
        data,
        args.seed,
        args.out,
        families=args.families,
        settings=settings,
        model_label=args.model_label,
        generator_kwargs=generator_kwargs,
        force=args.force,
    )


def print_result(result: EvalResult) -> None:
    status = "cached" if result.cached else "done"
    print(f"{status}: {result.out_dir}  (label {result.manifest.model_label}, seed {result.manifest.seed})")
    for name, fm in result.metrics.families.items():
        m = fm.metrics
        bleu = f"{m.bleu.score:6.2f}" if m.bleu is not None else "     -"

        def f(x: float | None) -> str:
            return f"{x:.3f}" if x is not None else "-"

        print(
            f"  {name:20s} success {f(m.success_rate)}  bleu {bleu}  consistency {f(m.consistency)}  "
            f"reward {f(m.reward_mean)}  (n={m.n_prompts}x{m.n_samples // max(m.n_prompts, 1)})"
        )
