"""Seeded sampling of K responses per prompt from a checkpoint.

Every sample is keyed by ``(seed, prompt_id, sample_index)``: its random stream is derived from that triple
alone (:func:`row_seed`), so a sample does not depend on the batch size, on the order of the prompts, on the
other prompts in the run, or on K (sample 0..K-1 are the same for any larger K).

Backends:

* ``hf`` (CPU or GPU): genbench's one decoding loop (:func:`genbench_tasks.modeling.decoding.sample_rows`,
  shared with PPO rollouts and the verl CPU rollout server) on a transformers causal LM with a KV cache:
  left padding with explicit position ids, one ``torch.Generator`` per row, temperature + top-p (nucleus)
  sampling by inverse CDF over a single uniform draw per row and step. transformers' own ``generate`` is not
  used because it draws from the process-global RNG for the whole batch.
* ``vllm`` (GPU only): ``vllm.LLM(...).generate`` with one request per (prompt, sample) and
  ``SamplingParams(n=1, seed=row_seed(...))``. Imported lazily; not installed in the CPU environment.

Batch invariance is exact for the sampling step; the model's logits under different padding / batch shapes
agree to float32 rounding (eager attention, masked positions contribute exact zeros), so a sample can only
change if a uniform draw falls within ~1e-6 of a CDF boundary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from genbench_tasks.errors import GenbenchError
from genbench_tasks.modeling.decoding import FinishReason, eos_ids, row_seed, sample_rows
from genbench_tasks.profiles import EvalSettings

log = logging.getLogger(__name__)

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


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]], where: Path) -> list[int]:
    """Chat-templated prompt ids, tokenized the way verl's RLHFDataset does (no extra special tokens)."""
    if not getattr(tokenizer, "chat_template", None):
        raise GenbenchError(f"tokenizer in {where} has no chat template")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


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
        self.eos_ids = eos_ids(
            self.model.config, getattr(self.model, "generation_config", None), self.tokenizer
        )
        if not self.eos_ids:
            raise GenbenchError(f"checkpoint {self.path} defines no eos token")
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        return prompt_ids(self.tokenizer, messages, self.path)

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
            ids = prompt_ids(self.tokenizer, r.messages, self.path)
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
