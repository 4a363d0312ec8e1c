"""`datasets.json` integrity: every entry against the family registry, the on-disk layout and the other entries.

Consumers find files through the manifest (`DatasetManifest.get`) and through the fixed layout
`<format>/<family>/<split>.parquet` (the verl launcher), so an entry must agree with both. Problems raise a
one-line GenbenchError naming the manifest, the entry (index and name), the field and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from genbench_tasks.data.build import MANIFEST_NAME, SPLITS, DatasetEntry, DatasetManifest
from genbench_tasks.errors import GenbenchError
from genbench_tasks.families import get_family

FORMATS = ("rl", "sft")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def canonical_path(entry: DatasetEntry) -> str:
    return f"{entry.format}/{entry.family}/{entry.split}.parquet"


def check_manifest(data_dir: Path, manifest: DatasetManifest) -> None:
    """Raise GenbenchError at the first entry that is inconsistent (see the module docstring)."""
    where = data_dir / MANIFEST_NAME
    root = data_dir.resolve()
    seen: dict[tuple[str, object], int] = {}
    for i, entry in enumerate(manifest.datasets):
        at = f"{where}: datasets[{i}] ({entry.name if entry.name.isprintable() else repr(entry.name)})"
        for what, key in (
            ("name", entry.name),
            ("path", entry.path),
            ("family/split/format", (entry.family, entry.split, entry.format)),
        ):
            if (what, key) in seen:
                raise GenbenchError(
                    f"{at}: repeats the {what} of datasets[{seen[(what, key)]}]; each dataset is listed once"
                )
            seen[(what, key)] = i
        try:
            family = get_family(entry.family)
        except GenbenchError as exc:
            raise GenbenchError(f"{at}: field 'family': {exc}") from None
        problems = []
        if entry.format not in FORMATS:
            problems.append(f"field 'format' is {entry.format!r}, expected one of {list(FORMATS)}")
        if entry.split not in SPLITS or entry.split not in family.splits:
            problems.append(f"field 'split' is {entry.split!r}, expected one of {list(family.splits)}")
        if entry.role != family.role:
            problems.append(f"field 'role' is {entry.role!r}, but family {family.name} is {family.role!r}")
        if entry.data_source != family.data_source:
            problems.append(
                f"field 'data_source' is {entry.data_source!r}, expected {family.data_source!r} "
                f"(the data_source of family {family.name})"
            )
        expected_name = f"{entry.family}/{entry.split}" + (".sft" if entry.format == "sft" else "")
        if entry.name != expected_name:
            problems.append(f"field 'name' is {entry.name!r}, expected {expected_name!r}")
        if entry.rows < 1:
            problems.append(f"field 'rows' is {entry.rows}, expected a positive row count")
        if not _SHA256_RE.fullmatch(entry.sha256):
            problems.append("field 'sha256' is not 64 lower-case hex digits")
        problems += _path_problems(entry, root)
        if problems:
            raise GenbenchError(f"{at}: {problems[0]}")
    _check_families(where, manifest)


def _path_problems(entry: DatasetEntry, root: Path) -> list[str]:
    if not entry.path.isprintable():
        return [f"field 'path' {entry.path!r} holds control characters"]
    path = PurePosixPath(entry.path)
    if path.is_absolute() or ".." in path.parts or "\\" in entry.path:
        return [f"field 'path' {entry.path!r} points outside the data directory"]
    try:
        resolved = (root / path).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        return [f"field 'path' {entry.path!r} cannot be resolved ({exc})"]
    if resolved != root and root not in resolved.parents:
        return [f"field 'path' {entry.path!r} resolves to {resolved}, outside the data directory"]
    if entry.path != canonical_path(entry):
        return [
            f"field 'path' is {entry.path!r}, expected {canonical_path(entry)!r} (the layout consumers read)"
        ]
    return []


def _check_families(where: Path, manifest: DatasetManifest) -> None:
    listed = manifest.families
    repeated = sorted({f for f in listed if listed.count(f) > 1})
    if repeated:
        raise GenbenchError(f"{where}: field 'families' lists {repeated} more than once")
    for name in listed:
        try:
            get_family(name)
        except GenbenchError as exc:
            raise GenbenchError(f"{where}: field 'families': {exc}") from None
    present = {e.family for e in manifest.datasets}  # a listed family may have no rows (all sizes 0)
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise GenbenchError(f"{where}: datasets of {unlisted} are not in field 'families' ({listed})")
