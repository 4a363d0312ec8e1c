"""User-supplied data: local or s3:// parquet / jsonl, or a Hugging Face `datasets` name, with a field mapping."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from genbench_tasks.errors import GenbenchError
from genbench_tasks.families import Example, get_family
from genbench_tasks.families.base import content_id
from genbench_tasks.profiles import CustomDataset


def read_records(uri: str) -> list[dict]:
    """Read rows from parquet/jsonl (local or s3://) or a `datasets` name (hf://name[:split])."""
    if uri.startswith("hf://"):
        import datasets

        name, _, split = uri.removeprefix("hf://").partition(":")
        try:
            return list(datasets.load_dataset(name, split=split or "train"))
        except Exception as exc:
            raise GenbenchError(f"cannot load dataset {name!r}: {exc}") from exc
    if uri.startswith("s3://"):
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(uri).name
            _download_s3(uri, local)
            return read_records(str(local))
    path = Path(uri)
    if not path.is_file():
        raise GenbenchError(f"cannot read {uri}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise GenbenchError(f"cannot read {uri}: not a valid parquet file ({first})") from exc
    if path.suffix in {".jsonl", ".json"}:
        rows = []
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise GenbenchError(f"{uri}:{lineno}: invalid JSON ({exc.msg})") from exc
        return rows
    raise GenbenchError(f"cannot read {uri}: expected .parquet or .jsonl")


def _download_s3(uri: str, local: Path) -> None:
    from genbench_tasks.s3_client import s3_client

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        s3_client().download_file(bucket, key, str(local))
    except Exception as exc:
        raise GenbenchError(f"cannot read {uri}: {exc}") from exc


def load_custom(spec: CustomDataset) -> list[Example]:
    family = get_family(spec.family)
    rows = read_records(spec.uri)
    if spec.limit is not None:
        rows = rows[: spec.limit]
    if not rows:
        raise GenbenchError(f"custom dataset {spec.name!r} ({spec.uri}) is empty")
    if "prompt" not in spec.field_map:
        raise GenbenchError(f"custom dataset {spec.name!r}: field_map must map 'prompt' to a column")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise GenbenchError(f"custom dataset {spec.name!r}: row {i} is not an object")
        try:
            fields = {k: row[col] for k, col in spec.field_map.items()}
        except KeyError as exc:
            raise GenbenchError(
                f"custom dataset {spec.name!r}: row {i} has no column {exc.args[0]!r}"
            ) from None
        # Nulls must not become the strings "None" / "null".
        fields = {k: v for k, v in fields.items() if v is not None}
        if not str(fields.get("prompt", "")).strip():
            raise GenbenchError(f"custom dataset {spec.name!r}: row {i} has an empty or null prompt")
        gt = fields.get("ground_truth", fields.get("reference"))
        if gt is None:
            raise GenbenchError(f"custom dataset {spec.name!r}: row {i} has no ground truth or reference")
        if not isinstance(gt, str):
            gt = json.dumps(gt, sort_keys=True)
        out.append(
            Example(
                id=str(fields.get("id") or content_id(family.name[:2], spec.name, str(fields["prompt"]))),
                prompt=str(fields["prompt"]),
                reference=str(fields.get("reference", gt)),
                ground_truth=gt,
                extra={"custom_dataset": spec.name},
            )
        )
    return out
