"""The one seeded decoder: evaluation samples, PPO rollouts (verl-core) and the verl CPU rollout server.

:func:`sample_rows` decodes left-padded prompts with a KV cache and one ``torch.Generator`` per row;
:func:`sample_next` draws one token per row (temperature, then top-p, then inverse CDF at one uniform draw),
row-local in float64, so a row's tokens depend only on its prompt, the weights and its seed
(:func:`row_seed` for evaluation). torch is imported lazily: this module imports without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

FinishReason = Literal["stop", "length"]


def row_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    """The 63-bit seed of one (run seed, prompt, sample) row: a hash of the triple, nothing else."""
    digest = hashlib.sha256(f"genbench-eval\x1f{seed}\x1f{prompt_id}\x1f{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) with sequences right-aligned (verl's prompt layout)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        if seq:
            ids[i, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[i, width - len(seq) :] = 1
    return ids, mask


def position_ids(attention_mask: Any) -> Any:
    """Position ids of a left-padded batch (0 on the padding)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def eos_ids(model_config: Any, generation_config: Any, tokenizer: Any) -> set[int]:
    """Every end-of-sequence id the generation config, model config or tokenizer declares."""
    ids: set[int] = set()
    for source in (generation_config, model_config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids


def sample_rows(
    model: Any,
    prompts: Sequence[Sequence[int]],
    seeds: Sequence[int],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    eos_ids: set[int],
    pad_id: int,
    device: Any = "cpu",
    logprobs: bool = False,
) -> list[tuple[list[int], FinishReason, list[float] | None]]:
    """The seeded decoding loop: left-padded prompts, a KV cache, one generator per row (``seeds[i]``),
    :func:`sample_next` per step. Per row: the sampled ids (ending with the EOS that stopped it, if any), the
    finish reason, and (``logprobs``) each sampled token's log-probability under the temperature-scaled
    distribution (before top-p; temperature 0 = greedy, scored at temperature 1)."""
    import torch

    n = len(prompts)
    input_ids, mask = left_pad(prompts, pad_id)
    positions = position_ids(mask)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    input_ids, mask, positions = (t.to(device) for t in (input_ids, mask, positions))

    result = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, logits = result.past_key_values, result.logits[:, -1, :]
    next_pos = positions[:, -1:] + 1
    tokens: list[list[int]] = [[] for _ in range(n)]
    scores: list[list[float]] = [[] for _ in range(n)]
    finish: list[FinishReason | None] = [None] * n
    for step in range(max_new_tokens):
        chosen_t = sample_next(logits, generators, temperature, top_p)
        chosen = chosen_t.tolist()
        chosen_lp = token_logprobs(logits, chosen_t, temperature).tolist() if logprobs else None
        for i, tok in enumerate(chosen):
            if finish[i] is None:
                tokens[i].append(tok)
                if chosen_lp is not None:
                    scores[i].append(chosen_lp[i])
                if tok in eos_ids:
                    finish[i] = "stop"
        if all(f is not None for f in finish) or step == max_new_tokens - 1:
            break
        feed = torch.tensor(
            [[tok if finish[i] is None else pad_id] for i, tok in enumerate(chosen)],
            dtype=torch.long,
            device=device,
        )
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
        result = model(
            input_ids=feed, attention_mask=mask, position_ids=next_pos, past_key_values=cache, use_cache=True
        )
        cache, logits = result.past_key_values, result.logits[:, -1, :]
        next_pos = next_pos + 1
    return [(tokens[i], finish[i] or "length", scores[i] if logprobs else None) for i in range(n)]


def token_logprobs(logits: Any, tokens: Any, temperature: float) -> Any:
    """log p(token) per row under ``softmax(logits / temperature)`` (temperature <= 0: 1), in float64."""
    import torch

    scale = temperature if temperature > 0 else 1.0
    logp = torch.log_softmax(logits.detach().to("cpu", torch.float64) / scale, dim=-1)
    return logp.gather(-1, tokens.to("cpu").unsqueeze(-1)).squeeze(-1)


def sample_next(logits: Any, generators: Sequence[Any], temperature: float, top_p: float) -> Any:
    """One token per row: temperature, then top-p (smallest prefix of the sorted distribution whose mass
    reaches top_p, at least one token), then inverse CDF at one uniform draw from that row's generator.

    Row-local in float64: a row's token depends only on its own logits and generator. ``temperature <= 0``
    is greedy (argmax; no draw).
    """
    import torch

    if temperature <= 0:
        return logits.detach().to("cpu").argmax(dim=-1)
    uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    probs = torch.softmax(logits.detach().to("cpu", torch.float64) / temperature, dim=-1)
    sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    keep = (torch.cumsum(sorted_p, dim=-1) - sorted_p) < top_p
    keep[:, 0] = True
    cdf = torch.cumsum(sorted_p * keep, dim=-1)
    targets = uniforms.unsqueeze(-1) * cdf[:, -1:]
    rank = torch.searchsorted(cdf, targets, right=True).clamp(max=cdf.shape[-1] - 1)
    # Never land on a token removed by top-p (possible only through rounding at the very end of the CDF).
    rank = torch.minimum(rank, keep.sum(dim=-1, keepdim=True) - 1)
    return order.gather(-1, rank).squeeze(-1)
