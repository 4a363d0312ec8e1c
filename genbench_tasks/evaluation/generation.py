"""Seeded sampling of K responses per prompt from a checkpoint.

Every sample is keyed by ``(seed, prompt_id, sample_index)``: its random stream is derived from that triple
alone (:func:`row_seed`), so a sample does not depend on the batch size, on the order of the prompts, on the
other prompts in the run, or on K (sample 0..K-1 are the same for any larger K).

Backends:

* ``hf`` (CPU or GPU): the decoding loop is written here on top of a transformers causal LM with a KV
  cache: left padding with explicit position ids, one ``torch.Generator`` per row, temperature + top-p
  (nucleus) sampling by inverse CDF over a single uniform draw per row and step. transformers' own
  ``generate`` is not used because it draws from the process-global RNG for the whole batch.
* ``vllm`` (GPU only): ``vllm.LLM(...).generate`` with one request per (prompt, sample) and
  ``SamplingParams(n=1, seed=row_seed(...))``. Imported lazily; not installed in the CPU environment.

Batch invariance is exact for the sampling step; the model's logits under different padding / batch shapes
agree to float32 rounding (eager attention, masked positions contribute exact zeros), so a sample can only
change if a uniform draw falls within ~1e-6 of a CDF boundary.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from genbench_tasks.errors import GenbenchError
from genbench_tasks.profiles import EvalSettings

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]
Progress = Callable[[int, int], None]  # (rows done, rows total)


class PromptRequest(BaseModel):
    """One prompt to sample from: a stable id and the chat messages (system/user) to template."""

    model_config = ConfigDict(frozen=True)

    prompt_id: str
    messages: list[dict[str, str]]


class Generation(BaseModel):
    """One sampled response."""

    prompt_id: str
    sample_index: int
    text: str
    n_tokens: int
    finish_reason: FinishReason


class Generator(Protocol):
    """A loaded model that samples K responses per prompt."""

    backend: str

    def generate(
        self,
        requests: Sequence[PromptRequest],
        *,
        seed: int,
        settings: EvalSettings,
        progress: Progress | None = None,
    ) -> list[Generation]: ...


def row_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    """The 63-bit seed of one (run seed, prompt, sample) row: a hash of the triple, nothing else."""
    digest = hashlib.sha256(f"genbench-eval\x1f{seed}\x1f{prompt_id}\x1f{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def check_sampling(settings: EvalSettings) -> None:
    """Evaluation samples: greedy decoding would make every seed identical."""
    if not settings.temperature > 0:
        raise GenbenchError(f"eval temperature must be > 0 (got {settings.temperature}); seeds need sampling")
    if not 0 < settings.top_p <= 1:
        raise GenbenchError(f"eval top_p must be in (0, 1] (got {settings.top_p})")
    if settings.samples_per_prompt < 1:
        raise GenbenchError(f"samples_per_prompt must be >= 1 (got {settings.samples_per_prompt})")
    if settings.max_new_tokens < 1:
        raise GenbenchError(f"max_new_tokens must be >= 1 (got {settings.max_new_tokens})")
    if settings.batch_size < 1:
        raise GenbenchError(f"batch_size must be >= 1 (got {settings.batch_size})")


def _check_unique(requests: Sequence[PromptRequest]) -> None:
    seen: set[str] = set()
    for r in requests:
        if r.prompt_id in seen:
            raise GenbenchError(f"duplicate prompt id {r.prompt_id!r}")
        seen.add(r.prompt_id)


def load_generator(checkpoint_dir: str | Path, backend: str = "hf", **kwargs: Any) -> Generator:
    """Load a checkpoint directory (HF format: config, weights, tokenizer with a chat template)."""
    path = Path(checkpoint_dir)
    if not path.is_dir():
        raise GenbenchError(f"checkpoint {path} is not a directory")
    if not (path / "config.json").is_file():
        raise GenbenchError(f"checkpoint {path} has no config.json (expected a Hugging Face model directory)")
    if backend == "hf":
        return HFGenerator(path, **kwargs)
    if backend == "vllm":
        return VLLMGenerator(path, **kwargs)
    raise GenbenchError(f"unknown generation backend {backend!r}; use 'hf' or 'vllm'")


def _chat_text(tokenizer: Any, messages: list[dict[str, str]], where: Path) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise GenbenchError(f"tokenizer in {where} has no chat template")
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _eos_ids(model_config: Any, generation_config: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (generation_config, model_config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids


class HFGenerator:
    """transformers causal LM with a hand-written, per-row seeded sampling loop (see module docstring)."""

    backend = "hf"

    def __init__(
        self, checkpoint_dir: str | Path, *, device: str = "cpu", attn_implementation: str = "eager"
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(checkpoint_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            self.model = AutoModelForCausalLM.from_pretrained(
                str(self.path), dtype=torch.float32, attn_implementation=attn_implementation
            )
        except (OSError, ValueError) as exc:
            raise GenbenchError(f"cannot load checkpoint {self.path}: {str(exc).splitlines()[0]}") from exc
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.eos_ids = _eos_ids(
            self.model.config, getattr(self.model, "generation_config", None), self.tokenizer
        )
        if not self.eos_ids:
            raise GenbenchError(f"checkpoint {self.path} defines no eos token")
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """Chat-templated prompt ids, tokenized the way verl's RLHFDataset does (no extra special tokens)."""
        text = _chat_text(self.tokenizer, messages, self.path)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        requests: Sequence[PromptRequest],
        *,
        seed: int,
        settings: EvalSettings,
        progress: Progress | None = None,
    ) -> list[Generation]:
        """K samples per request, in request order then sample index."""
        import torch

        check_sampling(settings)
        _check_unique(requests)
        k = settings.samples_per_prompt
        encoded = {r.prompt_id: self.encode(r.messages) for r in requests}
        too_long = [
            p
            for p, ids in encoded.items()
            if self.max_positions and len(ids) + settings.max_new_tokens > self.max_positions
        ]
        if too_long:
            log.warning(
                "%d prompt(s) + max_new_tokens exceed the model's %d positions (e.g. %s)",
                len(too_long),
                self.max_positions,
                too_long[0],
            )
        # Rows sorted by prompt length so batches pad little; the order cannot change any sample.
        rows = sorted(
            ((pid, j) for pid in encoded for j in range(k)), key=lambda row: (len(encoded[row[0]]), row)
        )
        out: dict[tuple[str, int], Generation] = {}
        with torch.inference_mode():
            for start in range(0, len(rows), settings.batch_size):
                batch = rows[start : start + settings.batch_size]
                results = self._sample_batch(
                    [encoded[pid] for pid, _ in batch], [row_seed(seed, pid, j) for pid, j in batch], settings
                )
                for (pid, j), (tokens, finish) in zip(batch, results, strict=True):
                    text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                    out[(pid, j)] = Generation(
                        prompt_id=pid, sample_index=j, text=text, n_tokens=len(tokens), finish_reason=finish
                    )
                if progress is not None:
                    progress(min(start + len(batch), len(rows)), len(rows))
        return [out[(r.prompt_id, j)] for r in requests for j in range(k)]

    def _sample_batch(
        self, prompts: list[list[int]], seeds: list[int], settings: EvalSettings
    ) -> list[tuple[list[int], FinishReason]]:
        rows = sample_rows(
            self.model,
            prompts,
            seeds,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            device=self.device,
        )
        return [(tokens[:-1] if finish == "stop" else tokens, finish) for tokens, finish, _ in rows]


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

    n, width = len(prompts), max(len(p) for p in prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, ids in enumerate(prompts):
        input_ids[i, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
        mask[i, width - len(ids) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
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


class VLLMGenerator:
    """vLLM backend: **GPU only**. One request per (prompt, sample) with ``n=1`` and ``seed=row_seed(...)``,
    so each sample's seed is the same as the hf backend's; prompts are passed as token ids (chat template
    applied here, no extra special tokens), like verl's rollout. Uses vLLM's documented offline API:
    ``LLM(model=...)``, ``LLM.generate(prompts, sampling_params=[...])``, ``SamplingParams``,
    ``TokensPrompt``; output ``RequestOutput.outputs[0]`` (``text``, ``token_ids``, ``finish_reason``).
    """

    backend = "vllm"

    def __init__(self, checkpoint_dir: str | Path, **llm_kwargs: Any):
        try:
            import vllm
        except ImportError as exc:
            raise GenbenchError(
                "backend 'vllm' needs the vllm package (GPU worker image); use --backend hf on CPU"
            ) from exc
        from transformers import AutoTokenizer

        self.path = Path(checkpoint_dir)
        self._vllm = vllm
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.llm = vllm.LLM(model=str(self.path), **llm_kwargs)

    def generate(
        self,
        requests: Sequence[PromptRequest],
        *,
        seed: int,
        settings: EvalSettings,
        progress: Progress | None = None,
    ) -> list[Generation]:
        check_sampling(settings)
        _check_unique(requests)
        k = settings.samples_per_prompt
        prompts, params, keys = [], [], []
        for r in requests:
            text = _chat_text(self.tokenizer, r.messages, self.path)
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            for j in range(k):
                prompts.append({"prompt_token_ids": ids})
                params.append(
                    self._vllm.SamplingParams(
                        n=1,
                        temperature=settings.temperature,
                        top_p=settings.top_p,
                        max_tokens=settings.max_new_tokens,
                        seed=row_seed(seed, r.prompt_id, j),
                    )
                )
                keys.append((r.prompt_id, j))
        started = time.monotonic()
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        log.info("vllm generated %d samples in %.1fs", len(keys), time.monotonic() - started)
        gens = []
        for (pid, j), output in zip(keys, outputs, strict=True):
            completion = output.outputs[0]
            gens.append(
                Generation(
                    prompt_id=pid,
                    sample_index=j,
                    text=completion.text,
                    n_tokens=len(completion.token_ids),
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                )
            )
        if progress is not None:
            progress(len(gens), len(gens))
        return gens
