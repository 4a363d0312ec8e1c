"""Supervised warm start: the "SFT only" baseline row and the PPO init.

Trains on the training families' SFT train split with the chat template applied and the loss on
response tokens (+ EOS) only. Seeded by the *data* seed, so one SFT checkpoint is shared by every PPO
seed and verl version; `ensure_sft` builds it once (file lock + atomic rename) and skips when complete.

Layout of an SFT dir:  base/ (tiny model before SFT)  checkpoint/ (HF)  sft.json (written last).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
from pydantic import BaseModel

from genbench_tasks.artifacts.io import read_model, write_model
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key
from genbench_tasks.profiles import Profile
from genbench_tasks.training.common import (
    commit_dir,
    deterministic_torch,
    dir_lock,
    generator,
    load_rl_rows,
    sampled_reward,
    training_families,
)

log = logging.getLogger(__name__)

SFT_FORMAT = 1  # bump when the SFT recipe changes (invalidates shared SFT dirs)
SFT_MARKER = "sft.json"
IGNORE = -100


class SFTResult(BaseModel):
    sft_dir: str
    checkpoint: str
    base_model: str
    key: str
    skipped: bool
    steps: int
    examples: int
    loss_first: float
    loss_last: float
    val_sampled: dict[str, float]
    val_greedy: dict[str, float]
    wall_time_s: float


def sft_key(profile: Profile, data_dir: str | Path) -> str:
    """Cache key of the SFT stage: model + SFT settings, data seed and dataset content."""
    from genbench_tasks.data.build import load_manifest
    from genbench_tasks.training.tiny_model import TINY_FORMAT

    blob = {
        "format": [SFT_FORMAT, TINY_FORMAT],
        "model": profile.model.model_dump(mode="json"),
        "sft": profile.sft.model_dump(mode="json"),
        "data_seed": profile.data.seed,
        "datasets": load_manifest(data_dir).content_hash(),
    }
    return content_key(blob)


def default_sft_dir(profile: Profile, data_dir: str | Path, run_out_dir: str | Path) -> Path:
    """The shared SFT dir: a sibling of the PPO run dir, named by the SFT cache key."""
    return Path(run_out_dir).resolve().parent / f"sft-{sft_key(profile, data_dir)}"


def load_sft_result(sft_dir: str | Path) -> SFTResult | None:
    marker = Path(sft_dir) / SFT_MARKER
    if not marker.is_file() or not (Path(sft_dir) / "checkpoint" / "config.json").is_file():
        return None
    return read_model(marker, SFTResult)


def ensure_sft(profile: Profile, data_dir: str | Path, out_dir: str | Path) -> SFTResult:
    """Return the SFT checkpoint in `out_dir`, training it first unless a complete one exists."""
    out = Path(out_dir)
    key = sft_key(profile, data_dir)
    with dir_lock(out.parent / f".{out.name}.lock"):
        done = load_sft_result(out)
        if done is not None:
            if done.key != key:
                raise GenbenchError(
                    f"{out} holds an SFT checkpoint for other settings (key {done.key}, expected {key})"
                )
            log.info("SFT checkpoint complete in %s: skipping", out)
            return done.model_copy(update={"skipped": True})
        return run_sft(profile, data_dir, out)


def sft_max_len(profile: Profile) -> int:
    """Tokens an SFT example is truncated to: the tiny model's context, else a PPO prompt plus response."""
    if profile.model.source == "tiny":
        return profile.model.tiny.max_position_embeddings
    return profile.ppo.max_prompt_length + profile.ppo.max_response_length


def sft_examples(
    tokenizer, data_dir: str | Path, families: list[str], max_len: int, split: str = "train"
) -> list[tuple]:
    """``(ids, labels)`` per row of the families' SFT files for ``split``: the chat prompt (labels ignored) then
    the response and EOS, truncated to ``max_len``."""
    from genbench_tasks.data.build import load_manifest
    from genbench_tasks.families import Example, get_family
    from genbench_tasks.training.sampling import encode_chat

    manifest = load_manifest(data_dir)
    examples = []
    for name in families:
        family = get_family(name)
        entry = manifest.get(name, split, "sft")
        for row in pq.read_table(Path(data_dir) / entry.path).to_pylist():
            ex = Example(id=row["id"], prompt=row["prompt"], reference=row["response"], ground_truth="")
            prompt = encode_chat(tokenizer, family.render_prompt(ex))
            response = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
            response = [*response, tokenizer.eos_token_id]
            ids = (prompt + response)[:max_len]
            labels = ([IGNORE] * len(prompt) + response)[:max_len]
            examples.append((ids, labels))
    return examples


def _collate(batch: list[tuple], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (seq, lab) in enumerate(batch):
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(seq)] = 1
    return ids, mask, labels


def _lr_at(step: int, total: int, lr: float) -> float:
    warmup = max(1, min(20, total // 10))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def run_sft(profile: Profile, data_dir: str | Path, out_dir: str | Path) -> SFTResult:
    """Build the tiny base model (if `model.source == "tiny"`), fine-tune it and publish `out_dir`.
    Runs with `sft.threads` torch threads and deterministic kernels (settings restored afterwards)."""
    with deterministic_torch(profile.sft.threads):
        return _run_sft(profile, data_dir, out_dir)


def _run_sft(profile: Profile, data_dir: str | Path, out_dir: str | Path) -> SFTResult:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genbench_tasks.training.tiny_model import build_tiny_from_data

    started = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = sft_key(profile, data_dir)
    seed = profile.data.seed
    if profile.model.source == "tiny":
        base = build_tiny_from_data(profile.model.tiny, data_dir, seed, out / "base")
    else:
        base = _pretrained_base(profile)
    max_len = sft_max_len(profile)
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.train()
    families = training_families(profile, data_dir)
    examples = sft_examples(tokenizer, data_dir, families, max_len)
    cfg = profile.sft
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    order: list[int] = []
    epoch = 0
    losses: list[float] = []
    log_every = max(1, cfg.steps // 10)
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            perm = torch.randperm(len(examples), generator=generator(seed, "sft-order", epoch)).tolist()
            order.extend(perm)
            epoch += 1
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        ids, mask, labels = _collate([examples[i] for i in idx], tokenizer.pad_token_id)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg.steps, cfg.lr)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % log_every == 0 or step == cfg.steps - 1:
            log.info("sft step %d/%d loss %.4f", step + 1, cfg.steps, losses[-1])
    model.eval()
    val_rows = [r for f in families for r in _val_rows(data_dir, f)]
    eval_kw = dict(
        seed=seed,
        max_prompt_length=profile.ppo.max_prompt_length,
        max_new_tokens=profile.ppo.max_response_length,
    )
    val_sampled = sampled_reward(model, tokenizer, val_rows, temperature=profile.ppo.temperature, **eval_kw)
    val_greedy = sampled_reward(model, tokenizer, val_rows, temperature=0.0, **eval_kw)
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=out))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    commit_dir(tmp, out / "checkpoint")
    window = max(1, len(losses) // 10)
    result = SFTResult(
        sft_dir=str(out),
        checkpoint=str(out / "checkpoint"),
        base_model=str(base),
        key=key,
        skipped=False,
        steps=cfg.steps,
        examples=len(examples),
        loss_first=sum(losses[:window]) / window,
        loss_last=sum(losses[-window:]) / window,
        val_sampled=val_sampled,
        val_greedy=val_greedy,
        wall_time_s=round(time.time() - started, 3),
    )
    write_model(out / SFT_MARKER, result)
    log.info(
        "SFT done in %.1fs: loss %.3f -> %.3f; val reward sampled %.3f greedy %.3f (acc %.3f / %.3f)",
        result.wall_time_s,
        result.loss_first,
        result.loss_last,
        val_sampled["reward_mean"],
        val_greedy["reward_mean"],
        val_sampled["acc_mean"],
        val_greedy["acc_mean"],
    )
    return result


def _pretrained_base(profile: Profile) -> Path:
    """The pretrained model SFT starts from: ``model.path`` (source ``hf``) or the converted GGUF (``gguf``)."""
    if profile.model.source == "gguf":
        from genbench_tasks.training.pretrained import ensure_gguf_model

        return ensure_gguf_model(profile.model.gguf)
    if not profile.model.path:
        raise GenbenchError("model.source is 'hf' but model.path is empty")
    return Path(profile.model.path)


def _val_rows(data_dir: str | Path, family: str):
    try:
        return load_rl_rows(data_dir, family, "val")
    except GenbenchError:
        return []
