"""The task-family abstraction: dataset builder + prompt renderer + reference + scorer + metrics."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genbench_tasks.artifacts.summary import Role
from genbench_tasks.hashing import content_key

#: Names of the metric registry (genbench_tasks.artifacts.metrics) a family can compute.
MetricName = Literal["success_rate", "bleu", "consistency", "reward_mean", "pass@k"]


class Example(BaseModel):
    """One family-independent item: what the model sees, what it should say, what the scorer checks."""

    model_config = ConfigDict(frozen=True)

    id: str
    prompt: str
    reference: str  # reference answer text (SFT target, BLEU reference)
    ground_truth: str  # what the scorer checks; JSON {"test","entry_point"[,"prompt"]} for code
    extra: dict[str, Any] = Field(default_factory=dict)


class Score(BaseModel):
    reward: float
    passed: bool
    reason: str


class TaskFamily(BaseModel):
    """A typed task family. Builders are pure functions of (seed, size)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    role: Role
    data_source: str
    ability: str
    description: str
    system_prompt: str
    metrics: tuple[MetricName, ...]
    builder: Callable[[int, int], list[Example]] | None  # None: loaded, not generated (e.g. HumanEval)
    scorer: Callable[[str, str, dict | None], Score]
    splits: tuple[str, ...] = ("train", "val", "test")
    #: metric keys (``RunMetrics.flat()``) that regression detection tests; the others are descriptive
    primary_metrics: tuple[str, ...] = ("success_rate", "reward_mean")

    def build(self, seed: int, size: int) -> list[Example]:
        if self.builder is None:
            raise ValueError(f"family {self.name!r} has no generator; load its data instead")
        return self.builder(seed, size)

    def render_prompt(self, example: Example) -> list[dict[str, str]]:
        """Chat messages in the format verl's RLHFDataset applies the chat template to."""
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": example.prompt},
        ]

    def score(self, solution: str, ground_truth: str, extra_info: dict | None = None) -> Score:
        return self.scorer(solution, ground_truth, extra_info)


class Rng:
    """Deterministic RNG independent of Python version and platform (splitmix64)."""

    _MASK = (1 << 64) - 1

    def __init__(self, seed: int, stream: str = ""):
        digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
        self._state = int.from_bytes(digest[:8], "little")

    def next_u64(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & self._MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self._MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self._MASK
        return z ^ (z >> 31)

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]."""
        return low + self.next_u64() % (high - low + 1)

    def choice(self, seq: Sequence):
        return seq[self.randint(0, len(seq) - 1)]

    def sample(self, seq: Sequence, k: int) -> list:
        pool = list(seq)
        self.shuffle(pool)
        return pool[:k]

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.randint(0, i)
            items[i], items[j] = items[j], items[i]


def generate_unique(
    seed: int, size: int, make: Callable[[Rng], Example | None], max_tries_factor: int = 50
) -> list[Example]:
    """Draw examples until `size` distinct prompts exist; ids are stable content hashes."""
    rng = Rng(seed, "examples")
    seen: set[str] = set()
    out: list[Example] = []
    tries = 0
    while len(out) < size:
        tries += 1
        if tries > size * max_tries_factor + 100:
            raise ValueError(f"could only generate {len(out)} distinct examples of {size} requested")
        example = make(rng)
        if example is None or example.prompt in seen:
            continue
        seen.add(example.prompt)
        out.append(example)
    return out


def content_id(prefix: str, *parts: str) -> str:
    return f"{prefix}-{content_key(*parts, length=12)}"


def normalize_text(text: str) -> str:
    return " ".join(text.strip().split())
