"""The `genbench` command line. Each command group lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from genbench_tasks.cli.arguments import ArgumentParser
from genbench_tasks.errors import DataValidationError, GenbenchError

# Modules under genbench_tasks.cli, each exposing register(subparsers). Order = order in --help.
COMMAND_MODULES = [
    "tasks",
    "data",
    "score",
    "train",
    "check_config",
    "eval",
    "aggregate",
    "detect",
    "publish",
    "demo",
    "up",
    "worker",
]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="genbench",
        description=(
            "genbench: nightly regression evaluation of verl PPO+GAE post-training on held-out task "
            "families, across seeds and verl versions."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"genbench_tasks.cli.{name}")
        except ModuleNotFoundError as exc:  # a command group not present in this install
            if exc.name == f"genbench_tasks.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code in (0, None):  # --help
            raise
        return 2  # a usage error, its one line already printed
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except DataValidationError as exc:  # exit 1: the data is invalid (a report says why)
        print(f"genbench: error: {exc}", file=sys.stderr)
        return 1
    except GenbenchError as exc:  # exit 2: usage, configuration or unreadable input
        print(f"genbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the command could not use; the traceback only with -v
        logging.getLogger("genbench").debug("", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"genbench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
