"""What every PPO backend writes into its run dir, and how (one way for `verl-core` and `trl-ppo`).

Layout of a run dir:  checkpoint/ (HF: policy + tokenizer)  metrics.jsonl (one row per step)
manifest.json (written last: config, data and SFT hashes, package versions, timings, reward summary).
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from genbench_tasks.artifacts.io import read_jsonl
from genbench_tasks.artifacts.layout import CELL_MANIFEST, CHECKPOINT_DIR, TRAIN_METRICS
from genbench_tasks.artifacts.training import TrainStep
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import file_sha256
from genbench_tasks.training.common import commit_dir

METRICS_FILE = TRAIN_METRICS
MANIFEST_FILE = CELL_MANIFEST  # TrainManifest (genbench_tasks.artifacts.training)

VERSIONED_PACKAGES = (
    "genbench",
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "pyarrow",
    "pydantic",
    "tensordict",
)


class TrainResult(BaseModel):
    """Summary of one PPO run (returned by every backend's `train_run`, printed by `genbench worker run` and `genbench train`)."""

    run_dir: str
    checkpoint: str
    metrics_path: str
    manifest_path: str
    sft_checkpoint: str
    backend: str = "verl-core"
    verl_version: str | None = None  # None for baselines (their cell is (profile, data, seed))
    seed: int
    steps: int
    resumed_from_step: int | None
    reward_first: float
    reward_last: float
    wall_time_s: float
    peak_rss_mb: float


def read_metrics(path: Path, upto: int | None = None) -> list[TrainStep]:
    """A run's metrics rows, steps <= ``upto`` (a torn last line from a killed process is dropped)."""
    if not path.is_file():
        return []
    return [r for r in read_jsonl(path, TrainStep, torn_tail=True) if upto is None or r.step <= upto]


def deterministic_metrics(rows: list[TrainStep]) -> list[dict[str, Any]]:
    """Metrics rows without timing fields (what must be bit-identical across reruns)."""
    return [r.deterministic() for r in rows]


def train_time_s(rows: list[TrainStep]) -> float:
    return round(sum(r.step_time or 0.0 for r in rows), 3)


def reward_first_last(rows: list[TrainStep]) -> tuple[float, float]:
    """Mean ``reward_mean`` of the first and of the last quarter of the steps."""
    k = max(1, len(rows) // 4)
    return (
        float(np.mean([r.reward_mean for r in rows[:k]])),
        float(np.mean([r.reward_mean for r in rows[-k:]])),
    )


def save_checkpoint(model, tokenizer, out: Path) -> Path:
    """Publish `out/checkpoint` (HF policy + tokenizer) atomically: temp dir, then rename."""
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=out))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    final = out / CHECKPOINT_DIR
    commit_dir(tmp, final)
    return final


def datasets_record(data_dir: str | Path) -> dict[str, Any]:
    """The manifest's `datasets` entry: hashes of the dataset dir a run trained on."""
    from genbench_tasks.data.build import MANIFEST_NAME, load_manifest

    datasets = load_manifest(data_dir)
    return {
        "manifest_sha256": file_sha256(Path(data_dir) / MANIFEST_NAME),
        "content_hash": datasets.content_hash(),
        "data_seed": datasets.seed,
        "files": {d.name: d.sha256 for d in datasets.datasets},
    }


def sft_record(sft) -> dict[str, Any]:
    """The manifest's `sft` entry (an SFTResult)."""
    return {
        "dir": sft.sft_dir,
        "checkpoint": sft.checkpoint,
        "key": sft.key,
        "val_sampled": sft.val_sampled,
        "val_greedy": sft.val_greedy,
    }


def resolve_init(
    profile,
    data_dir: str | Path,
    out: Path,
    *,
    init_checkpoint: str | Path | None,
    sft_dir: str | Path | None,
):
    """The PPO init as an SFTResult: `init_checkpoint` (an HF dir) if given, else the shared SFT stage in
    `sft_dir` (default: the sibling `sft-<key>` of `out`), built once by `ensure_sft`."""
    from genbench_tasks.training.sft import default_sft_dir, ensure_sft

    if init_checkpoint is not None:
        return external_init(Path(init_checkpoint))
    sft_path = Path(sft_dir) if sft_dir else default_sft_dir(profile, data_dir, out)
    return ensure_sft(profile, data_dir, sft_path)


def external_init(checkpoint: Path):
    """SFTResult-like record for a given init checkpoint (its SFT dir's sft.json when present)."""
    from genbench_tasks.training.sft import SFTResult, load_sft_result

    if not (checkpoint / "config.json").is_file():
        raise GenbenchError(f"init checkpoint {checkpoint} is not an HF model directory")
    done = load_sft_result(checkpoint.parent)
    if done is not None and Path(done.checkpoint).resolve() == checkpoint.resolve():
        return done
    return SFTResult(
        sft_dir=str(checkpoint.parent),
        checkpoint=str(checkpoint),
        base_model=str(checkpoint),
        key="external",
        skipped=True,
        steps=0,
        examples=0,
        loss_first=0.0,
        loss_last=0.0,
        val_sampled={},
        val_greedy={},
        wall_time_s=0.0,
    )


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024.0, 1)  # Linux reports KiB


def hostname() -> str:
    return os.uname().nodename
