"""Argument checks shared by the commands: a bad argument is one line on stderr, before any work starts.

`argparse` types reject malformed values while parsing (exit 2); `output_dir` / `output_file` create and
probe output locations at the start of a command, so an unwritable path fails in a second, not after the work.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

from genbench_tasks.errors import GenbenchError

MAX_SEED = 2**32 - 1  # numpy and verl seeds are 32-bit
_VERSION_RE = re.compile(r"\d+(\.\d+)*([a-z]+\d*)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9.]+)?")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a single `genbench: error: <command>: <problem>` line instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("genbench").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"genbench: error: {where}{message} (see `{self.prog} --help`)\n")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def int_between(low: int, high: int):
    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer between {low} and {high}, got {text!r}")
        return value

    parse.__name__ = f"int_{low}_{high}"
    return parse


def temperature(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"temperature must be > 0 (sampling), got {text!r}")
    return value


def open_unit_interval(text: str) -> float:
    """A probability strictly between 0 and 1 (a significance level)."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A probability in (0, 1] (nucleus top-p)."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def version(text: str) -> str:
    """A release version such as 0.9.1 (PEP 440 public versions, optional local part)."""
    if not _VERSION_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a version such as 0.9.1, got {text!r}")
    return text


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a non-empty value")
    return text


def key_value(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return text


def http_url(text: str) -> str:
    """An http(s) endpoint URL with a host (an S3 endpoint: MinIO, moto, AWS)."""
    from genbench_tasks.s3_client import endpoint_problem

    problem = endpoint_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
    return text


def existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        what = "is not a directory" if Path(text).exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}")
    return text


def input_file(text: str) -> str:
    """A readable regular file, or '-' for stdin."""
    if text == "-":
        return text
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: {'not a file' if path.exists() else 'no such file'}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable")
    return text


def output_dir(path: str | Path, option: str) -> Path:
    """Create `path` (and parents) and prove it is writable; GenbenchError naming `option` otherwise."""
    target = Path(path)
    blocking = next((p for p in (target, *target.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise GenbenchError(f"cannot write to {path} ({option}): {blocking} is a file, not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        raise GenbenchError(f"cannot write to {path} ({option}): {exc.strerror or exc}") from None
    return target


def output_file(path: str | Path, option: str) -> Path:
    """A file `path` can be written: not a directory, its parent created and writable."""
    target = Path(path)
    if target.is_dir():
        raise GenbenchError(f"cannot write to {path} ({option}): is a directory, expected a file path")
    output_dir(target.parent if str(target.parent) else ".", option)
    if target.exists() and not os.access(target, os.W_OK):
        raise GenbenchError(f"cannot write to {path} ({option}): permission denied")
    return target


def json_object(text: str) -> dict:
    """A JSON object (e.g. profile overrides)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg} (at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. \'{"ppo": {"steps": 4}}\'')
    return value


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM raise ``KeyboardInterrupt``, so a command's ``finally`` stops what it
    started: also when it was started with SIGINT ignored (nohup, ``cmd &`` in a script) or is terminated
    (``kill``, a CI timeout)."""
    import signal

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
