"""What produced an artifact: package versions recorded in every manifest."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path

from genbench_tasks.hashing import content_key


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Python's version plus each installed package's (packages not installed are left out)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@cache
def code_version() -> str:
    """Hash of the installed genbench_tasks sources (works without git, identical on every worker)."""
    root = Path(__file__).resolve().parent
    files = [
        p for p in sorted(root.rglob("*")) if p.suffix in {".py", ".yaml"} and "__pycache__" not in p.parts
    ]
    return content_key(*(part for p in files for part in (str(p.relative_to(root)), p.read_bytes())))
