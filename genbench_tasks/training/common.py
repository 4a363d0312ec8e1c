"""Shared plumbing for the training stages: determinism, dataset rows, atomic directories, locks,
and a sampled reward evaluation."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel

from genbench_tasks.artifacts.io import file_lock
from genbench_tasks.errors import GenbenchError

log = logging.getLogger(__name__)


class RLRow(BaseModel):
    """One verl RL parquet row, reduced to what the CPU trainer needs."""

    data_source: str
    messages: list[dict[str, str]]
    ground_truth: str
    extra_info: dict[str, Any]


@contextlib.contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Fixed intra-op threads and deterministic kernels (bit-identical reruns on one machine); the
    caller's torch settings are restored on exit."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from arbitrary parts (e.g. (run seed, "rollout", step)); stable across platforms."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(derived_seed(*parts))
    return gen


def load_rl_rows(data_dir: str | Path, family: str, split: str) -> list[RLRow]:
    from genbench_tasks.data.build import load_manifest

    entry = load_manifest(data_dir).get(family, split, "rl")
    table = pq.read_table(Path(data_dir) / entry.path)
    rows = []
    for row in table.to_pylist():
        rows.append(
            RLRow(
                data_source=row["data_source"],
                messages=[dict(m) for m in row["prompt"]],
                ground_truth=row["reward_model"]["ground_truth"],
                extra_info=dict(row["extra_info"] or {}),
            )
        )
    return rows


def training_families(profile, data_dir: str | Path) -> list[str]:
    """Training-role families of the profile that have a train split in `data_dir`."""
    from genbench_tasks.data.build import load_manifest
    from genbench_tasks.families import training_families as train_role

    manifest = load_manifest(data_dir)
    names = [
        e.family
        for e in manifest.datasets
        if e.format == "rl" and e.split == "train" and e.role == "train" and e.rows > 0
    ]
    families = [f for f in train_role(profile.data.families) if f in names]
    if not families:
        raise GenbenchError(f"{data_dir}: no training family with a train split")
    return families


def training_prompts(
    profile, data_dir: str | Path, tokenizer, max_samples: int | None = None
) -> list[tuple[RLRow, list[int]]]:
    """The PPO prompt pool: (row, chat-templated prompt ids) of every training family's train split that
    fits `ppo.max_prompt_length`; `max_samples` caps it with a pick seeded by the *data* seed (the same
    pool for every PPO seed and backend)."""
    from genbench_tasks.training.sampling import encode_chat

    limit = profile.ppo.max_prompt_length
    rows = [r for f in training_families(profile, data_dir) for r in load_rl_rows(data_dir, f, "train")]
    encoded = [(r, encode_chat(tokenizer, r.messages)) for r in rows]
    pool = [(r, ids) for r, ids in encoded if len(ids) <= limit]
    if len(pool) < len(encoded):
        log.warning("dropped %d prompts longer than max_prompt_length=%d", len(encoded) - len(pool), limit)
    if not pool:
        raise GenbenchError("no training prompt fits max_prompt_length")
    if max_samples is not None and max_samples < len(pool):
        keep = torch.randperm(len(pool), generator=generator(profile.data.seed, "train-pool"))[:max_samples]
        pool = [pool[i] for i in sorted(keep.tolist())]
    return pool


def commit_dir(tmp: Path, final: Path) -> None:
    """Atomically publish a fully written temp dir (same filesystem) as `final`."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


#: Exclusive lock on a lock file, so parallel seeds build shared stages once.
dir_lock = file_lock


@torch.no_grad()
def sampled_reward(
    model,
    tokenizer,
    rows: list[RLRow],
    *,
    seed: int,
    max_prompt_length: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    batch_size: int = 32,
) -> dict[str, float]:
    """Mean reward and accuracy of one sampled response per row, overall and per data source."""
    from genbench_tasks.rewards import compute_score
    from genbench_tasks.training.sampling import decode_responses, encode_chat, left_pad, sample_responses

    was_training = model.training
    model.eval()
    gen = generator(seed, "eval")
    scores: dict[str, list[tuple[float, float]]] = {}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids = [encode_chat(tokenizer, r.messages)[-max_prompt_length:] for r in chunk]
        prompt_ids, prompt_mask = left_pad(ids, tokenizer.pad_token_id)
        responses, mask = sample_responses(
            model,
            prompt_ids,
            prompt_mask,
            max_new_tokens=max_new_tokens,
            eos_id=tokenizer.eos_token_id,
            pad_id=tokenizer.pad_token_id,
            generator=gen,
            temperature=temperature,
            top_p=top_p,
        )
        for row, text in zip(chunk, decode_responses(tokenizer, responses, mask), strict=True):
            result = compute_score(row.data_source, text, row.ground_truth, row.extra_info)
            scores.setdefault(row.data_source, []).append((result["score"], result["acc"]))
    model.train(was_training)
    out: dict[str, float] = {}
    all_scores = [s for v in scores.values() for s in v]
    out["reward_mean"] = float(np.mean([s for s, _ in all_scores])) if all_scores else 0.0
    out["acc_mean"] = float(np.mean([a for _, a in all_scores])) if all_scores else 0.0
    for source, vals in sorted(scores.items()):
        name = source.rsplit("/", 1)[-1]
        out[f"reward/{name}"] = float(np.mean([s for s, _ in vals]))
        out[f"acc/{name}"] = float(np.mean([a for _, a in vals]))
    return out
