"""``python -m genbench_tasks.verl_cpu check [--expect V] [--json]``: check the CPU layer against the
importable verl (exit 0: every patch applies; 2: one does not, each named with the verl version)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from genbench_tasks.verl_cpu import _MARK, check
from genbench_tasks.verl_cpu.patches import VerlCPULayerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genbench_tasks.verl_cpu", description=__doc__)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("--expect", default=None, help="the verl version that must be imported")
    parser.add_argument("--json", action="store_true", help="one machine-readable result line")
    args = parser.parse_args(argv)
    try:
        results = check(args.expect)
    except VerlCPULayerError as exc:
        if args.json:
            print(_MARK + json.dumps({"error": str(exc), "results": []}))
        else:
            print(f"genbench: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(_MARK + json.dumps({"results": [asdict(r) for r in results]}))
    else:
        for r in results:
            print(f"{'ok    ' if r.ok else 'FAILED'} {r.name}: {r.detail}")
    return 0 if all(r.ok for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
