"""``train/<label>/seed=<n>/manifest.json``: what a PPO run (verl-core or trl-ppo) was and produced."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class DatasetsRecord(BaseModel):
    """Hashes of the dataset directory a run trained on."""

    manifest_sha256: str
    content_hash: str
    data_seed: int
    files: dict[str, str]


class SFTRecord(BaseModel):
    dir: str
    checkpoint: str
    key: str
    val_sampled: dict[str, Any]
    val_greedy: dict[str, Any]


class TrainManifest(BaseModel):
    """Written last by every PPO backend (its presence with a checkpoint marks a complete run)."""

    kind: Literal["genbench.train_run"] = "genbench.train_run"
    backend: str
    profile: str
    seed: int
    #: backend identity: ``verl`` (expected version + adapter description) or ``trl`` (version, trainer)
    verl: dict[str, Any] | None = None
    trl: dict[str, Any] | None = None
    config: dict[str, Any]
    config_sha256: str
    datasets: DatasetsRecord
    sft: SFTRecord
    packages: dict[str, str]
    git_revision: str | None
    threads: int
    started_at: str
    finished_at: str
    wall_time_s: float
    train_time_s: float
    peak_rss_mb: float
    steps: int
    resumed_from_step: int | None
    reward_first: float
    reward_last: float
    metrics_sha256: str
    outputs: dict[str, str]
    hostname: str
    #: the backend's TrainResult (trl-ppo: returned again when the run is found complete)
    result: dict[str, Any] | None = None


class TrainStep(BaseModel):
    """One line of ``train/<label>/seed=<n>/metrics.jsonl``: one PPO step, as every backend writes it.

    ``step`` and ``reward_mean`` are always there; verl's own file logger names them
    ``training/global_step`` and ``critic/rewards/mean`` (read under those names too). Backend-specific
    figures (``reward/<family>``, ``trl/...``, verl's ``actor/...``) stay as extra keys.
    """

    model_config = ConfigDict(extra="allow")

    step: int = Field(validation_alias=AliasChoices("step", "training/global_step"))
    reward_mean: float = Field(
        validation_alias=AliasChoices("reward_mean", "critic/rewards/mean", "critic/score/mean")
    )
    acc_mean: float | None = None
    kl: float | None = None
    kl_coef: float | None = None
    policy_loss: float | None = None
    value_loss: float | None = None
    entropy: float | None = None
    response_length: float | None = None
    #: wall-clock seconds of the step: the one field that differs between two runs with one seed
    step_time: float | None = Field(default=None, validation_alias=AliasChoices("step_time", "timing_s/step"))

    def deterministic(self) -> dict[str, Any]:
        """The row without its timing, throughput and memory figures (what must be bit-identical across
        reruns with one seed)."""
        row = self.model_dump(exclude={"step_time"}, exclude_none=True)
        return {k: v for k, v in row.items() if not any(part in k for part in VOLATILE_PARTS)}


#: verl's wall-clock, throughput and memory figures, anywhere in a key (``timing_s/gen``,
#: ``perf/throughput``, ``actor/perf/cpu_memory_used_gb``, ...)
VOLATILE_PARTS = ("timing_s/", "timing_per_token_ms/", "perf/")


class VerlLaunchRecord(BaseModel):
    """``verl_launch.json`` in a verl job's output: written by the preflight on the worker, read by the finish
    step (the run's wall time starts here)."""

    started: float  # epoch seconds
    verl: str
    vllm: str | None  # None on CPU (the hf rollout)
    device: str = "cuda"
    host: str


class PpoStateRecord(BaseModel):
    """``state/step_<n>/state.json`` of a verl-core run: what a resumed run must match and restore."""

    step: int
    kl_coef: float
    seed: int
    resume_key: str


class TinyModelRecord(BaseModel):
    """``genbench_tiny.json`` beside the tiny default model: the inputs it was built from (its cache key)."""

    key: str
    seed: int
    settings: dict[str, Any]
    vocab_size: int
    parameters: int
    corpus_texts: int
