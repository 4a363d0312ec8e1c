"""`genbench data validate` on the local profile's data: the checks, with data docs (the old default), and
unchanged data re-checked through the content-hash cache, in one run, each in a fresh process (imports
included, as a user runs it).

    python benchmarks/bench_validation.py
Targets: checks <= 15 s on 2 cores; unchanged data <= 2 s of validation work (plus process start).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENBENCH = [sys.executable, "-m", "genbench_tasks.cli"]


def timed(*args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([*GENBENCH, *args], check=True, capture_output=True)
    return time.monotonic() - t0


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="gb-bench-validate-"))
    data, cache = root / "data", root / "cache"
    subprocess.run(
        [*GENBENCH, "data", "build", "--profile", "local", "--out", str(data), "--no-validate"], check=True
    )
    startup = timed("tasks", "list")
    docs = timed("data", "validate", str(data), "--profile", "local", "--data-docs")
    checks = timed("data", "validate", str(data), "--profile", "local", "--cache-dir", str(cache))
    cached = timed("data", "validate", str(data), "--profile", "local", "--cache-dir", str(cache))
    print(f"process start + imports (genbench tasks list): {startup:5.1f} s")
    print(f"checks + data docs (the old default):          {docs:5.1f} s")
    print(
        f"checks (new default):                           {checks:5.1f} s   ratio {docs / checks:.2f}x faster"
    )
    print(
        f"unchanged data, cached:                         {cached:5.1f} s   ratio {checks / cached:.1f}x faster"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
