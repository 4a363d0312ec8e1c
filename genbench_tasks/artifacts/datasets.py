"""``data/datasets.json``: the dataset manifest (every parquet file of a build, with its hash)."""

from __future__ import annotations

from pydantic import BaseModel

from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key


class DatasetEntry(BaseModel):
    name: str  # "<family>/<split>" (+ ".sft")
    family: str
    split: str
    role: str
    format: str  # "rl" | "sft"
    data_source: str
    path: str  # relative to the manifest
    rows: int
    sha256: str


class DatasetManifest(BaseModel):
    """``datasets.json``: what ``genbench data build`` wrote."""

    profile: str
    seed: int
    families: list[str]
    datasets: list[DatasetEntry]

    def get(self, family: str, split: str, fmt: str = "rl") -> DatasetEntry:
        for entry in self.datasets:
            if entry.family == family and entry.split == split and entry.format == fmt:
                return entry
        raise GenbenchError(f"dataset {family}/{split} ({fmt}) is not in the manifest")

    def test_families(self) -> dict[str, str]:
        """family -> role of every RL test split."""
        return {e.family: e.role for e in self.datasets if e.format == "rl" and e.split == "test"}

    def content_hash(self) -> str:
        return content_key(*sorted(f"{d.path}:{d.sha256}" for d in self.datasets))
