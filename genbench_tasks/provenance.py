"""What produced an artifact: package versions recorded in every manifest."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Python's version plus each installed package's (packages not installed are left out)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
