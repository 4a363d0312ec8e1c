"""The venv is the lock: every locked package at its locked version, torch the CPU build, no CUDA package."""

from __future__ import annotations

import importlib.metadata as md
import re

from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCK = REPO / "requirements" / "all.lock"
#: Installed beside the lock by the Makefile: torch (pip, CPU build from disk), the installer, the project.
OUTSIDE_LOCK = {"torch", "uv", "genbench", "pip", "setuptools"}
CUDA = re.compile(r"^(nvidia-|cuda-|triton$)")


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", LOCK.read_text(), flags=re.M)
    return {canonicalize_name(name): version for name, version in pins}


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}


def test_lock_pins_hashes_and_leaves_out_torch_and_cuda():
    pins = locked()
    assert len(pins) > 100
    assert "torch" not in pins and not [n for n in pins if CUDA.match(n)]
    text = LOCK.read_text()
    assert text.count("==") == len(pins) and text.count("--hash=sha256:") >= len(pins)


def test_venv_holds_exactly_the_locked_versions():
    pins, have = locked(), installed()
    wrong = {n: (v, have.get(n)) for n, v in pins.items() if have.get(n) != v}
    assert wrong == {}, f"locked vs installed: {wrong}"
    extra = sorted(set(have) - set(pins) - OUTSIDE_LOCK)
    assert extra == [], f"installed but not locked: {extra}"


def test_torch_is_the_cpu_build_and_no_cuda_package_was_fetched():
    import torch

    assert torch.__version__.startswith("2.13.0") and torch.version.cuda is None
    assert [n for n in installed() if CUDA.match(n)] == []
