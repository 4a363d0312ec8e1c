"""The import direction (pyproject's [tool.importlinter]): config -> artifacts -> families/data -> scoring ->
modeling -> training / evaluation -> analysis -> report -> publish -> orchestration -> cli/dags.

Runs import-linter's own check (it sees imports inside functions too), and checks that every module of the
package sits in a layer, so a new package cannot slip past the contract unplaced."""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import tomllib

import genbench_tasks

ROOT = Path(__file__).resolve().parents[1]


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return [name.strip("() ") for layer in contract["layers"] for name in re.split(r"[|:]", layer)]


def test_lint_imports_passes():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_module_is_in_a_layer():
    layers = _layers()
    modules = [
        m.name
        for m in pkgutil.walk_packages(genbench_tasks.__path__, "genbench_tasks.")
        if not m.name.endswith("__main__")
    ]
    unplaced = [
        m
        for m in modules
        if not any(m == layer or m.startswith(layer + ".") for layer in layers)
        and not any(layer.startswith(m + ".") for layer in layers)  # a package split across layers
    ]
    assert unplaced == [], f"modules in no layer of [tool.importlinter]: {unplaced}"
