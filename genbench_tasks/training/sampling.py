"""Torch-only helpers shared by SFT and PPO: chat encoding, padding, seeded sampling with a KV cache,
and per-token log-probs/entropy of a response given its prompt. No verl import here."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def encode_chat(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` rendered by the chat template with the assistant generation prompt."""
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = enc["input_ids"] if hasattr(enc, "keys") else enc
    return [int(i) for i in ids]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with sequences right-aligned (verl's prompt layout)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        if seq:
            ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq) :] = 1
    return ids, mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def _filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, sorted_idx, sorted_logits)


@torch.no_grad()
def sample_responses(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample up to `max_new_tokens` per row (greedy when temperature == 0) from left-padded prompts.

    Returns (responses, response_mask), both (B, max_new_tokens): tokens after the first EOS are `pad_id`
    with mask 0; the EOS itself has mask 1 (verl's response_mask convention).
    """
    batch = prompt_ids.shape[0]
    attn = prompt_mask.clone()
    out = model(input_ids=prompt_ids, attention_mask=attn, position_ids=position_ids(attn), use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1, :]
    next_pos = position_ids(attn)[:, -1:] + 1
    responses = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, max_new_tokens), dtype=torch.long)
    alive = torch.ones(batch, dtype=torch.bool)
    for t in range(max_new_tokens):
        logits = logits.float()
        if temperature <= 0:
            token = logits.argmax(-1)
        else:
            probs = _filter_top_p(logits / temperature, top_p).softmax(-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        token = torch.where(alive, token, torch.full_like(token, pad_id))
        responses[:, t] = token
        mask[:, t] = alive.long()
        alive = alive & (token != eos_id)
        if not bool(alive.any()) or t == max_new_tokens - 1:
            break
        attn = torch.cat([attn, torch.ones((batch, 1), dtype=attn.dtype)], dim=1)
        out = model(
            input_ids=token[:, None],
            attention_mask=attn,
            position_ids=next_pos,
            past_key_values=past,
            use_cache=True,
        )
        past, logits = out.past_key_values, out.logits[:, -1, :]
        next_pos = next_pos + 1
    return responses, mask


def response_logits(
    model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, responses: torch.Tensor, response_mask
) -> torch.Tensor:
    """Logits (B, R, V) predicting each response token, from one forward pass over prompt+response."""
    input_ids = torch.cat([prompt_ids, responses], dim=1)
    attn = torch.cat([prompt_mask, response_mask.to(prompt_mask.dtype)], dim=1)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=position_ids(attn), use_cache=False)
    width = responses.shape[1]
    return out.logits[:, -width - 1 : -1, :].float()


def decode_responses(tokenizer, responses: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Decoded response texts without special tokens (EOS/pad dropped)."""
    texts = []
    for row, m in zip(responses.tolist(), response_mask.tolist(), strict=True):
        ids = [tok for tok, keep in zip(row, m, strict=True) if keep]
        texts.append(tokenizer.decode(ids, skip_special_tokens=True))
    return texts
