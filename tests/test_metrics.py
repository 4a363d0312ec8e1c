"""Tests of genbench_tasks.scoring.metrics (one real MiniLM load, a few seconds)."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sacrebleu

from genbench_tasks.errors import GenbenchError
from genbench_tasks.scoring.metrics import (
    METRIC_NAMES,
    RunMetrics,
    SampleRecord,
    compute_run_metrics,
    consistency,
    corpus_bleu,
    default_embedder,
    pass_at_k,
    pass_at_k_estimator,
)


def rec(
    prompt: str, idx: int, text: str = "x", reward: float = 0.0, passed: bool = False, ref: str | None = None
):
    return {
        "prompt_id": prompt,
        "sample_index": idx,
        "text": text,
        "reward": reward,
        "passed": passed,
        "reference": ref,
    }


class FakeEmbedder:
    """Fixed 2-D vectors; records every call."""

    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0], "z": [0.0, 0.0]}

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return np.array([self.vectors[t] for t in texts])


class ExplodingEmbedder:
    def embed(self, texts):
        raise AssertionError("embedder must not be called")


# ------------------------------------------------------------------------------------------------ BLEU
def test_bleu_sacrebleu_readme_example():
    # sacrebleu README: "The dog bit the man." with two reference streams.
    refs = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    res = corpus_bleu(hyps, refs)
    assert res.score == pytest.approx(48.530827009929865, abs=1e-9)
    assert round(res.score, 2) == 48.53
    assert res.score == pytest.approx(sacrebleu.corpus_bleu(hyps, refs).score, abs=1e-12)
    assert res.signature == f"nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert res.n_segments == 3


def test_bleu_in_run_metrics_uses_prompt_reference():
    refs = {"p1": "The dog bit the man.", "p2": "It was not unexpected."}
    samples = [
        rec("p1", 0, "The dog bit the man.", ref=refs["p1"]),
        rec("p1", 1, "A dog bit a man.", ref=None),  # reference taken from the prompt's other sample
        rec("p2", 0, "It wasn't surprising.", ref=refs["p2"]),
        rec("p3", 0, "no reference anywhere"),  # excluded from BLEU
    ]
    m = compute_run_metrics(samples, metrics={"bleu"})
    hyps = ["The dog bit the man.", "A dog bit a man.", "It wasn't surprising."]
    expected = sacrebleu.corpus_bleu(hyps, [[refs["p1"], refs["p1"], refs["p2"]]])
    assert m.bleu is not None
    assert m.bleu.score == pytest.approx(expected.score)
    assert m.bleu.signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert m.bleu.n_segments == 3
    assert compute_run_metrics([rec("p", 0)], metrics={"bleu"}).bleu is None


def test_bleu_conflicting_references_rejected():
    with pytest.raises(GenbenchError):
        compute_run_metrics([rec("p", 0, ref="a"), rec("p", 1, ref="b")], metrics={"bleu"})


# --------------------------------------------------------------------------------------------- pass@k
@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 0.4),
        (5, 2, 5, 1.0),
        (5, 1, 5, 1.0),
        (5, 0, 1, 0.0),
        (5, 0, 5, 0.0),
        (5, 5, 1, 1.0),
        (10, 3, 2, 1 - 21 / 45),
    ],
)
def test_pass_at_k_closed_forms(n, c, k, expected):
    assert pass_at_k_estimator(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_exact_combinatorics_and_is_stable():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k_estimator(n, c, k) == pytest.approx(float(exact), abs=1e-12)
    # large n: the binomial-coefficient form would overflow floats; the product form does not
    exact = 1 - Fraction(math.comb(1999, 1000), math.comb(2000, 1000))
    assert pass_at_k_estimator(2000, 1, 1000) == pytest.approx(float(exact), abs=1e-12)
    with pytest.raises(GenbenchError):
        pass_at_k_estimator(5, 6, 1)
    with pytest.raises(GenbenchError):
        pass_at_k_estimator(5, 1, 6)


def test_pass_at_k_averaged_over_prompts():
    samples = [rec("p1", i, passed=i < 2) for i in range(5)] + [rec("p2", i, passed=False) for i in range(5)]
    assert pass_at_k(samples) == {1: pytest.approx(0.2), 5: pytest.approx(0.5)}
    # K is the smallest per-prompt count; K == 1 gives pass@1 only
    assert set(pass_at_k(samples + [rec("p3", 0, passed=True)])) == {1}
    assert pass_at_k([]) == {}


# -------------------------------------------------------------------------------------- consistency
def test_consistency_hand_computed_with_fake_embedder():
    fake = FakeEmbedder()
    samples = [
        rec("p1", 0, "a"),
        rec("p1", 1, "b"),
        rec("p1", 2, "c"),
        rec("p2", 0, "a"),
        rec("p2", 1, "a"),
        rec("p3", 0, "b"),  # K=1: skipped
    ]
    # p1: cos(a,b)=0, cos(a,c)=cos(b,c)=1/sqrt2 -> sqrt2/3; p2: identical -> 1
    expected = (math.sqrt(2) / 3 + 1.0) / 2
    assert consistency(samples, fake) == pytest.approx(expected, abs=1e-12)
    # each distinct text embedded exactly once, in one batch call
    assert len(fake.calls) == 1
    assert sorted(fake.calls[0]) == ["a", "b", "c"]


def test_consistency_zero_vector_and_no_pairs():
    assert consistency([rec("p", 0, "a"), rec("p", 1, "z")], FakeEmbedder()) == 0.0
    assert consistency([rec("p", 0, "a"), rec("q", 0, "b")], ExplodingEmbedder()) is None
    assert (
        compute_run_metrics(
            [rec("p", 0, "a")], embedder=ExplodingEmbedder(), metrics={"consistency"}
        ).consistency
        is None
    )


def test_consistency_real_minilm():
    emb = default_embedder()
    assert default_embedder() is emb  # cached per process
    same = [rec("p", i, "The cat sat quietly on the warm windowsill.") for i in range(4)]
    mixed = [
        rec("q", 0, "The cat sat quietly on the warm windowsill."),
        rec("q", 1, "Quarterly revenue rose by four percent in Europe."),
        rec("q", 2, "def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)"),
        rec("q", 3, "Mount Everest is the highest mountain above sea level."),
    ]
    paraphrase = [
        rec("r", 0, "The cat sat quietly on the warm windowsill."),
        rec("r", 1, "A cat was sitting calmly on the sunny window ledge."),
    ]
    c_same = compute_run_metrics(same, metrics={"consistency"}).consistency
    c_mixed = compute_run_metrics(mixed, metrics={"consistency"}).consistency
    c_para = compute_run_metrics(paraphrase, metrics={"consistency"}).consistency
    assert c_same == pytest.approx(1.0, abs=1e-5)
    assert c_mixed < 0.3
    assert c_mixed < c_para < c_same
    vecs = emb.embed(["hello world", "goodbye"])
    assert vecs.shape == (2, 384)


# ----------------------------------------------------------------------------------- run metrics API
def test_success_and_reward():
    samples = [
        rec("p1", 0, reward=0.0, passed=True),
        rec("p1", 1, reward=1.0),
        rec("p2", 0, reward=1.0, passed=True),
        rec("p2", 1, reward=2.0),
    ]
    m = compute_run_metrics(samples, metrics={"success_rate", "reward_mean"})
    assert m.success_rate == 0.5
    assert m.reward_mean == 1.0
    assert m.reward_std == pytest.approx(math.sqrt(0.5))  # population std, ddof=0
    assert (m.n_prompts, m.n_samples) == (2, 4)
    assert m.bleu is None and m.consistency is None and m.pass_at_k == {}


def test_only_requested_metrics_and_validation():
    samples = [SampleRecord(**rec("p", i, "a", passed=True)) for i in range(3)]
    m = compute_run_metrics(samples, embedder=ExplodingEmbedder(), metrics={"success_rate", "pass@k"})
    assert m.success_rate == 1.0 and m.pass_at_k == {1: 1.0, 3: 1.0}
    assert m.reward_mean is None and m.consistency is None
    full = compute_run_metrics(samples, embedder=FakeEmbedder(), metrics=set(METRIC_NAMES))
    assert full.consistency == pytest.approx(1.0)
    assert set(full.flat()) == {
        "success_rate",
        "bleu",
        "consistency",
        "reward_mean",
        "reward_std",
        "pass@1",
        "pass@3",
    }
    assert RunMetrics.model_validate_json(full.model_dump_json()) == full
    empty = compute_run_metrics([], metrics=set(METRIC_NAMES))
    assert (empty.n_samples, empty.success_rate) == (0, None)
    with pytest.raises(GenbenchError, match="unknown metric"):
        compute_run_metrics(samples, metrics={"rouge"})
    with pytest.raises(GenbenchError, match="duplicate"):
        compute_run_metrics([rec("p", 0), rec("p", 0)], metrics={"success_rate"})


def test_import_is_light():
    code = (
        "import sys, genbench_tasks.scoring.metrics, genbench_tasks.scoring.stats; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
