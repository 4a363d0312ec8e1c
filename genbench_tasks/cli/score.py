"""`genbench score`: score a JSONL of responses with the reward function verl calls."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from genbench_tasks.cli.arguments import input_file, output_file, positive_int
from genbench_tasks.errors import GenbenchError

log = logging.getLogger("genbench.score")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score",
        help="score responses (JSONL in, JSONL out)",
        description=(
            "Score model responses with genbench's compute_score. Each input line holds data_source, "
            "solution_str, ground_truth (strings; a code family's ground truth may be its JSON object) and "
            "optionally extra_info (an object); each output line is the input plus reward, passed and reason. "
            "An input file is checked line by line before anything is scored. Streams in chunks, keeps input "
            "order, and runs code families in parallel in the sandbox."
        ),
    )
    parser.add_argument(
        "--in", dest="inp", required=True, type=input_file, help="input JSONL ('-' for stdin)"
    )
    parser.add_argument("--out", required=True, help="output JSONL ('-' for stdout)")
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="sandbox processes (default: cores)"
    )
    parser.add_argument(
        "--chunk", type=positive_int, default=256, help="lines scored per batch (default: 256)"
    )
    parser.set_defaults(func=_score)


REQUIRED = ("data_source", "solution_str", "ground_truth")


def _parse(raw: bytes, lineno: int, source: str) -> dict | None:
    """One input line -> a checked record (None for a blank line); GenbenchError naming the line otherwise."""
    from genbench_tasks.families import family_for_data_source

    at = f"{source}:{lineno}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GenbenchError(f"{at}: not valid UTF-8 (byte {exc.start})") from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise GenbenchError(f"{at}: invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise GenbenchError(f"{at}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise GenbenchError(f"{at}: missing field(s) {', '.join(missing)}")
    for key in ("data_source", "solution_str"):
        if not isinstance(row[key], str):
            raise GenbenchError(f"{at}: field {key!r} must be a string, got {_kind(row[key])}")
    try:
        family = family_for_data_source(row["data_source"])
    except GenbenchError as exc:
        raise GenbenchError(f"{at}: field 'data_source': {exc}") from None
    truth = row["ground_truth"]
    if not isinstance(truth, str) and not (isinstance(truth, dict) and family.ability == "code"):
        raise GenbenchError(f"{at}: field 'ground_truth' must be a string, got {_kind(truth)}")
    if row.get("extra_info") is not None and not isinstance(row["extra_info"], dict):
        raise GenbenchError(
            f"{at}: field 'extra_info' must be an object or null, got {_kind(row['extra_info'])}"
        )
    return row


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _chunks(stream, size: int, source: str):
    chunk = []
    for lineno, raw in enumerate(stream, 1):
        row = _parse(raw, lineno, source)
        if row is None:
            continue
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _score(args: argparse.Namespace) -> int:
    from genbench_tasks.rewards import score_many

    source = "<stdin>" if args.inp == "-" else args.inp
    out_path = None if args.out == "-" else output_file(args.out, "--out")
    if args.inp != "-":  # every line is checked before any sample is scored
        with open(args.inp, "rb") as fin:
            for _ in _chunks(fin, args.chunk, source):
                pass
    fin = sys.stdin.buffer if args.inp == "-" else open(args.inp, "rb")  # noqa: SIM115
    tmp = None if out_path is None else out_path.with_name(out_path.name + ".partial")
    fout = sys.stdout if tmp is None else open(tmp, "w")  # noqa: SIM115
    done = passed = 0
    started = time.monotonic()
    try:
        for chunk in _chunks(fin, args.chunk, source):
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
        if fin is not sys.stdin.buffer:
            fin.close()
        if fout is not sys.stdout:
            fout.close()
    if tmp is not None:
        tmp.rename(out_path)  # a crash never leaves a truncated output that looks complete
    from genbench_tasks.scoring.sandbox import last_isolation

    where = f" (sandbox: {last_isolation()})" if last_isolation() else ""
    print(f"scored {done} samples, passed {passed}{where}", file=sys.stderr)
    return 0
