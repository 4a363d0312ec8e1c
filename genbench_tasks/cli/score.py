"""`genbench score`: score a JSONL of responses with the reward function verl calls."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from genbench_tasks.errors import GenbenchError

log = logging.getLogger("genbench.score")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score",
        help="score responses (JSONL in, JSONL out)",
        description=(
            "Score model responses with genbench's compute_score. Each input line holds data_source, "
            "solution_str, ground_truth and optionally extra_info; each output line is the input plus "
            "reward, passed and reason. Streams in chunks, keeps input order, and runs code families in "
            "parallel in the sandbox."
        ),
    )
    parser.add_argument("--in", dest="inp", required=True, help="input JSONL ('-' for stdin)")
    parser.add_argument("--out", required=True, help="output JSONL ('-' for stdout)")
    parser.add_argument("--workers", type=int, default=None, help="sandbox processes (default: cores)")
    parser.add_argument("--chunk", type=int, default=256, help="lines scored per batch (default: 256)")
    parser.set_defaults(func=_score)


REQUIRED = ("data_source", "solution_str", "ground_truth")


def _parse(line: str, lineno: int, source: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise GenbenchError(f"{source}:{lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise GenbenchError(f"{source}:{lineno}: expected a JSON object")
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise GenbenchError(f"{source}:{lineno}: missing field(s) {', '.join(missing)}")
    return row


def _chunks(stream, size: int, source: str):
    chunk = []
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        chunk.append(_parse(line, lineno, source))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _score(args: argparse.Namespace) -> int:
    from genbench_tasks.families import family_for_data_source
    from genbench_tasks.rewards import score_many

    if args.inp != "-" and not Path(args.inp).is_file():
        raise GenbenchError(f"cannot read {args.inp}: no such file")
    source = "<stdin>" if args.inp == "-" else args.inp
    fin = sys.stdin if args.inp == "-" else open(args.inp)  # noqa: SIM115
    out_path = Path(args.out)
    tmp = None if args.out == "-" else out_path.with_name(out_path.name + ".partial")
    fout = sys.stdout if tmp is None else open(tmp, "w")  # noqa: SIM115
    done = passed = 0
    started = time.monotonic()
    try:
        for chunk in _chunks(fin, args.chunk, source):
            for row in chunk:
                family_for_data_source(row["data_source"])  # unknown data_source: fail before scoring
            scores = score_many(
                [
                    (r["data_source"], r["solution_str"], r["ground_truth"], r.get("extra_info"))
                    for r in chunk
                ],
                workers=args.workers,
            )
            for row, score in zip(chunk, scores, strict=True):
                row.update(reward=score.reward, passed=score.passed, reason=score.reason)
                fout.write(json.dumps(row) + "\n")
            done += len(chunk)
            passed += sum(s.passed for s in scores)
            log.info(
                "scored %d (%.1f/s), passed %d", done, done / max(time.monotonic() - started, 1e-9), passed
            )
    finally:
        if fin is not sys.stdin:
            fin.close()
        if fout is not sys.stdout:
            fout.close()
    if tmp is not None:
        tmp.rename(out_path)  # a crash never leaves a truncated output that looks complete
    print(f"scored {done} samples, passed {passed}", file=sys.stderr)
    return 0
