"""`genbench tasks ...`: inspect the task-family registry."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "tasks", help="inspect task families", description="Inspect the registered task families."
    )
    tasks_sub = parser.add_subparsers(dest="tasks_command", metavar="SUBCOMMAND", required=True)
    ls = tasks_sub.add_parser(
        "list", help="list task families", description="List task families: name, role, data_source, metrics."
    )
    ls.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    from genbench_tasks.families import all_families

    rows = [("NAME", "ROLE", "DATA_SOURCE", "METRICS", "DESCRIPTION")]
    rows += [(f.name, f.role, f.data_source, ",".join(f.metrics), f.description) for f in all_families()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(col.ljust(w) for col, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0
