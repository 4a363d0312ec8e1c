"""Build every split of every family deterministically and export verl RL + SFT parquet with a manifest."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from genbench_tasks.artifacts.datasets import DatasetEntry, DatasetManifest
from genbench_tasks.artifacts.io import write_model
from genbench_tasks.artifacts.layout import DATASET_MANIFEST
from genbench_tasks.data.sources import load_custom
from genbench_tasks.errors import GenbenchError
from genbench_tasks.families import Example, TaskFamily, get_family
from genbench_tasks.hashing import file_sha256
from genbench_tasks.profiles import Profile

log = logging.getLogger(__name__)

MANIFEST_NAME = DATASET_MANIFEST
SPLITS = ("train", "val", "test")

# Explicit Arrow schemas: identical bytes for identical inputs, and the exact columns verl reads.
RL_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),
                    ("id", pa.string()),
                    ("family", pa.string()),
                    ("reference", pa.string()),
                ]
            ),
        ),
    ]
)
SFT_SCHEMA = pa.schema(
    [("id", pa.string()), ("data_source", pa.string()), ("prompt", pa.string()), ("response", pa.string())]
)


def split_examples(
    family: TaskFamily, examples: list[Example], sizes: dict[str, int]
) -> dict[str, list[Example]]:
    """Consecutive, disjoint slices in train/val/test order (examples are distinct by prompt)."""
    out, start = {}, 0
    for split in SPLITS:
        n = sizes.get(split, 0)
        if n and split not in family.splits:
            raise GenbenchError(f"family {family.name!r} has no {split!r} split (role {family.role})")
        out[split] = examples[start : start + n]
        start += n
    return out


def rl_rows(family: TaskFamily, split: str, examples: list[Example]) -> list[dict]:
    return [
        {
            "data_source": family.data_source,
            "prompt": family.render_prompt(ex),
            "ability": family.ability,
            "reward_model": {"style": "rule", "ground_truth": ex.ground_truth},
            "extra_info": {
                "split": split,
                "index": i,
                "id": ex.id,
                "family": family.name,
                "reference": ex.reference,
            },
        }
        for i, ex in enumerate(examples)
    ]


def sft_rows(family: TaskFamily, examples: list[Example]) -> list[dict]:
    return [
        {"id": ex.id, "data_source": family.data_source, "prompt": ex.prompt, "response": ex.reference}
        for ex in examples
    ]


def _write(rows: list[dict], schema: pa.Schema, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, compression="zstd", write_statistics=False)
    return file_sha256(path)


def build_datasets(profile: Profile, out_dir: str | Path) -> DatasetManifest:
    """Generate all configured families and custom datasets; write parquet files and `datasets.json`."""
    for name in profile.data.families:  # fail on configuration errors before writing anything
        get_family(name)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenbenchError(f"cannot write to {out}: {exc.strerror}") from exc
    entries: list[DatasetEntry] = []
    per_family: dict[str, dict[str, list[Example]]] = {}
    for name in profile.data.families:
        family = get_family(name)
        sizes = profile.data.sizes.get(name)
        if sizes is None:
            raise GenbenchError(f"profile {profile.name!r} gives no sizes for family {name!r}")
        size_map = sizes.model_dump()
        total = sum(size_map.values())
        log.info("building %s: %s (seed %d)", name, size_map, profile.data.seed)
        per_family[name] = split_examples(family, family.build(profile.data.seed, total), size_map)
    for spec in profile.data.custom:
        per_family.setdefault(spec.family, {}).setdefault(spec.split, []).extend(load_custom(spec))
    for name, splits in per_family.items():
        family = get_family(name)
        for split, examples in splits.items():
            if not examples:
                continue
            for fmt, rows, schema in (
                ("rl", rl_rows(family, split, examples), RL_SCHEMA),
                ("sft", sft_rows(family, examples), SFT_SCHEMA),
            ):
                rel = f"{fmt}/{name}/{split}.parquet"
                digest = _write(rows, schema, out / rel)
                entries.append(
                    DatasetEntry(
                        name=f"{name}/{split}" + ("" if fmt == "rl" else ".sft"),
                        family=name,
                        split=split,
                        role=family.role,
                        format=fmt,
                        data_source=family.data_source,
                        path=rel,
                        rows=len(rows),
                        sha256=digest,
                    )
                )
    manifest = DatasetManifest(
        profile=profile.name, seed=profile.data.seed, families=list(per_family), datasets=entries
    )
    write_model(out / MANIFEST_NAME, manifest)
    log.info("wrote %d files and %s to %s", len(entries), MANIFEST_NAME, out)
    return manifest


def load_manifest(data_dir: str | Path) -> DatasetManifest:
    path = Path(data_dir) / MANIFEST_NAME
    if not Path(data_dir).is_dir():
        raise GenbenchError(f"cannot read {data_dir}: not a directory")
    if not path.is_file():
        raise GenbenchError(f"{data_dir} has no {MANIFEST_NAME}; run `genbench data build` first")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:  # e.g. permission denied: not a "malformed manifest"
        raise GenbenchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise GenbenchError(f"{path}: malformed manifest (not UTF-8 text: byte {exc.start})") from None
    try:
        return DatasetManifest.model_validate_json(text)
    except ValidationError as exc:
        raise GenbenchError(f"{path}: malformed manifest ({_first_error(exc, text)})") from None


def _first_error(exc: ValidationError, text: str) -> str:
    """'datasets[2] (rewriting/train): field rows: Input should be a valid integer (got 'x')' and a count."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    if error["type"] == "json_invalid":
        return str(error["msg"])
    where = ""
    if loc[:1] == ["datasets"] and len(loc) > 1 and isinstance(loc[1], int):
        where = f"datasets[{loc[1]}]"
        with contextlib.suppress(ValueError, TypeError, IndexError, KeyError, AttributeError):
            name = json.loads(text)["datasets"][loc[1]].get("name")
            if isinstance(name, str):
                where += f" ({name if name.isprintable() else repr(name)})"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc)
    where = ": ".join(part for part in (where, f"field {field!r}" if field else "") if part)
    got = (
        f" (got {error['input']!r:.60})" if "input" in error and not isinstance(error["input"], dict) else ""
    )
    more = f"; {exc.error_count() - 1} more problems" if exc.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{error['msg']}{got}{more}"
