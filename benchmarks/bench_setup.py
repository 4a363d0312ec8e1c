"""Fresh-clone setup time: `make install` (uv from the lock) against the pip baseline, in one run.

Each side gets its own fresh clone and venv; package caches are left as they are (warm after the first run on
a machine, which is the target's condition: <= 2 min with a warm cache). The baseline is the install before
the lock: pip resolving ``-e '.[all]'`` from the ranges in pyproject.toml.

    python benchmarks/bench_setup.py [--skip-pip]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIP_BASELINE = (
    "python3 -m venv .venv && .venv/bin/pip install --quiet torch==2.13.0 && "
    ".venv/bin/pip install --quiet -c constraints.txt -e '.[all]'"
)


def timed(label: str, command: str, root: Path) -> float:
    clone = root / label
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    t0 = time.monotonic()
    result = subprocess.run(["bash", "-c", command], cwd=clone, capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    if result.returncode != 0:
        sys.exit(f"{label} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    cuda = [p.name for p in (clone / ".venv" / "lib").glob("python3*/site-packages/nvidia*")]
    print(f"{label:>5}: {elapsed:6.1f} s  (CUDA packages in the venv: {cuda or 'none'})", flush=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-pip", action="store_true", help="time only `make install` (uv + lock)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gb-bench-setup-"))
    try:
        uv = timed("uv", "make install", root)
        if not args.skip_pip:
            pip = timed("pip", PIP_BASELINE, root)
            print(f"ratio pip/uv: {pip / uv:.2f}x (target: uv <= 120 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
