"""The ``hf`` rollout: verl's rollout server contract served by a transformers model on CPU.

verl (>= 0.8) generates through *rollout replicas* (``RolloutReplicaRegistry``): Ray actors answering
``generate(prompt_ids, sampling_params, request_id) -> TokenOutput`` for the agent loop, plus a *server
adapter* inside each actor worker (``_ROLLOUT_REGISTRY``) that pushes the trained weights to them on every
``update_weights``. vLLM/SGLang need a GPU; this module provides both pieces for ``rollout.name=hf``:

* :class:`HFRolloutServer` (one Ray actor per replica, named ``hf_server_<replica>_0``): loads the model
  from ``actor_rollout_ref.model.path`` and samples with genbench's seeded decoder
  (:func:`genbench_tasks.modeling.decoding.sample_rows`), one request at a time, so a response depends
  only on the weights and its seed: ``row_seed(rollout seed, "<step>:<prompt hash>", k)`` for the k-th
  request of that prompt in that step. Returns the response ids (EOS included, as vLLM does) and their
  log-probs. Sleep/wake/abort/cache calls are no-ops (nothing to free on CPU).
* :class:`HFServerAdapter`: receives the actor's full state dict each step and loads it into the server.

The replica and adapter subclass verl's own bases and live in :mod:`.verl_rollout` (imported by verl
only); this module imports without verl.
"""

from __future__ import annotations

import logging
from typing import Any

from genbench_tasks.hashing import content_key

log = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"
SERVER_PREFIX = f"{ROLLOUT_NAME}_"


def rollout_seed(config: Any) -> int:
    """The rollout seed: ``rollout.seed`` (verl >= 0.9), else ``rollout.custom.seed`` (set by genbench)."""
    seed = getattr(config, "seed", None)
    if seed is None:
        custom = getattr(config, "custom", None) or {}
        seed = custom.get("seed")
    if seed is None:
        raise ValueError(
            "rollout.name=hf needs a rollout seed: actor_rollout_ref.rollout.seed (verl >= 0.9) or "
            "+actor_rollout_ref.rollout.custom.seed"
        )
    return int(seed)


def prompt_key(global_steps: int | None, prompt_ids: list[int]) -> str:
    return f"{global_steps}:{content_key(prompt_ids)}"


class HFRolloutServer:
    """A transformers causal LM behind verl's rollout-server methods (wrapped with ``ray.remote``)."""

    def __init__(self, config: Any, model_config: Any, replica_rank: int = 0, seed: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from genbench_tasks.modeling.decoding import eos_ids

        self.config = config
        self.replica_rank = replica_rank
        self.seed = seed
        path = _get(model_config, "local_path") or _get(model_config, "path")
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, attn_implementation="eager"
        )
        self.model.eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        self.eos_ids = eos_ids(self.model.config, getattr(self.model, "generation_config", None), tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        self.global_steps: int | None = None
        self._seen: dict[str, int] = {}
        self.requests = 0

    # ----------------------------------------------------------------------------------- generation

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Any = None,
        video_data: Any = None,
        audio_data: Any = None,
        mm_processor_kwargs: Any = None,
        priority: int = 0,
        **kwargs: Any,
    ):
        import torch

        from genbench_tasks.modeling.decoding import row_seed, sample_rows

        if image_data is not None or video_data is not None or audio_data is not None:
            raise NotImplementedError("rollout.name=hf is text-only")
        params = dict(sampling_params)
        prompt_ids = [int(t) for t in prompt_ids]
        budget = int(self.config.prompt_length) + int(self.config.response_length) - len(prompt_ids)
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        if max_tokens is None:
            max_tokens = min(int(self.config.response_length), budget)
        max_tokens = max(1, int(max_tokens))
        top_k = params.get("top_k")
        if top_k not in (None, -1, 0):
            raise NotImplementedError(f"rollout.name=hf supports top_k=-1 only (got {top_k})")
        if float(params.get("repetition_penalty", 1.0) or 1.0) != 1.0:
            raise NotImplementedError("rollout.name=hf supports repetition_penalty=1.0 only")
        key = prompt_key(self.global_steps, prompt_ids)
        index = self._seen.get(key, 0)
        self._seen[key] = index + 1
        with torch.inference_mode():
            [(tokens, _finish, logprobs)] = sample_rows(
                self.model,
                [prompt_ids],
                [row_seed(self.seed, key, index)],
                temperature=float(params.get("temperature", 1.0)),
                top_p=float(params.get("top_p", 1.0)),
                max_new_tokens=max_tokens,
                eos_ids=self.eos_ids,
                pad_id=self.pad_id,
                logprobs=True,
            )
        self.requests += 1
        return _token_output(
            token_ids=tokens,
            log_probs=logprobs if params.get("logprobs") else None,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    # -------------------------------------------------------------------------------------- weights

    async def load_weights(self, state: dict[str, Any], global_steps: int | None = None) -> int:
        """Load the actor's full (HF-named) state dict; returns how many tensors were loaded."""
        own = self.model.state_dict()
        unknown = sorted(set(state) - set(own))
        if unknown:
            raise KeyError(f"hf rollout: weights not in the rollout model: {unknown[:5]}")
        missing = sorted(set(own) - set(state) - _tied_names(self.model))
        if missing:
            raise KeyError(f"hf rollout: the update lacks weights: {missing[:5]}")
        self.model.load_state_dict(state, strict=False)
        self.model.tie_weights()
        if global_steps is not None:
            await self.set_global_steps(global_steps)
        return len(state)

    async def set_global_steps(self, global_steps: int) -> None:
        if global_steps != self.global_steps:
            self._seen.clear()
        self.global_steps = global_steps

    # ------------------------------------------------------- no-ops: nothing to free or pause on CPU

    def get_server_address(self) -> tuple[str, int]:
        return f"{SERVER_PREFIX}server_{self.replica_rank}", 0

    async def wake_up(self, tags: list[str] | None = None) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def wait_for_requests_to_drain(self) -> None:
        return None

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        return {"aborted_count": 0, "request_ids": []}

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True) -> dict:
        return {"aborted": False, "request_id": request_id}

    async def resume_generation(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


def _get(config: Any, key: str) -> Any:
    if isinstance(config, dict):
        return config.get(key)
    try:
        return config.get(key)  # DictConfig
    except AttributeError:
        return getattr(config, key, None)


def _tied_names(model: Any) -> set[str]:
    if getattr(model.config, "tie_word_embeddings", False):
        return {name for name in model.state_dict() if name.startswith("lm_head.")}
    return set()


def _token_output(**fields: Any) -> Any:
    from verl.workers.rollout.replica import TokenOutput

    return TokenOutput(**fields)
