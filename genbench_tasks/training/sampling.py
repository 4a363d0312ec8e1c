"""Torch-only helpers shared by SFT and PPO: chat encoding, rollouts through genbench's one seeded decoder
(:mod:`genbench_tasks.modeling.decoding`), the logits of a response given its prompt. No verl import here."""

from __future__ import annotations

import torch

from genbench_tasks.modeling.decoding import left_pad, position_ids, sample_rows

__all__ = [
    "decode_responses",
    "encode_chat",
    "left_pad",
    "position_ids",
    "response_logits",
    "sample_responses",
]


def encode_chat(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` rendered by the chat template with the assistant generation prompt."""
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = enc["input_ids"] if hasattr(enc, "keys") else enc
    return [int(i) for i in ids]


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
    """Sample up to `max_new_tokens` per row (greedy when temperature == 0) from left-padded prompts: one seed
    per row drawn from `generator`, decoded by :func:`genbench_tasks.modeling.decoding.sample_rows`.

    Returns (responses, response_mask), both (B, max_new_tokens): tokens after the first EOS are `pad_id`
    with mask 0; the EOS itself has mask 1 (verl's response_mask convention).
    """
    batch = prompt_ids.shape[0]
    prompts = [row[m.bool()].tolist() for row, m in zip(prompt_ids, prompt_mask, strict=True)]
    seeds = torch.randint(0, 2**62, (batch,), generator=generator).tolist()
    rows = sample_rows(
        model,
        prompts,
        seeds,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        eos_ids={eos_id},
        pad_id=pad_id,
        device=prompt_ids.device,
    )
    responses = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, max_new_tokens), dtype=torch.long)
    for i, (tokens, _, _) in enumerate(rows):
        responses[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[i, : len(tokens)] = 1
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
