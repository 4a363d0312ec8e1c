"""Tiny model factory: a byte-level BPE tokenizer trained on the task corpus and a small Llama/Qwen2
built from a config with a seeded init, both saved as an ordinary offline HF checkpoint.

Deterministic for a given (seed, corpus, profile.model.tiny): the same inputs give byte-identical
`tokenizer.json` and `model.safetensors`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

from genbench_tasks.artifacts.io import read_model, write_model
from genbench_tasks.artifacts.training import TinyModelRecord
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key
from genbench_tasks.profiles import TinyModelSettings

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
CHAT_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = [PAD, BOS, EOS, *CHAT_MARKERS]

# Zephyr-style template: every turn is "<|role|>\n{content}</s>\n"; generation stops at </s>.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
TINY_MARKER = "genbench_tiny.json"
TINY_FORMAT = 2  # bump when the tokenizer/model recipe changes (part of the build key)


def corpus_from_data_dir(data_dir: str | Path) -> list[str]:
    """Every SFT prompt and response of every family and split in `data_dir` (training and held-out),
    in manifest order, plus each family's system prompt so chat text is covered."""
    from genbench_tasks.data.build import load_manifest
    from genbench_tasks.families import get_family

    manifest = load_manifest(data_dir)
    texts: list[str] = []
    for name in manifest.families:
        with contextlib.suppress(GenbenchError):
            texts.append(get_family(name).system_prompt)
    for entry in manifest.datasets:
        if entry.format != "sft":
            continue
        table = pq.read_table(Path(data_dir) / entry.path, columns=["prompt", "response"])
        for row in table.to_pylist():
            texts.append(row["prompt"])
            texts.append(row["response"])
    if not texts:
        raise GenbenchError(f"{data_dir}: no SFT texts to train a tokenizer on")
    return texts


#: Pre-tokenization per ``TinyModelSettings.spaces``: punctuation chars and digits are always pieces of their own.
PRE_TOKENIZE = {
    # every whitespace char alone: a word is the same token wherever it appears
    "own_token": r"\s|[^\w\s]|\d",
    # a word with the space before it (" rain"): the text "fish rain river" is 3 tokens, not 5
    "word_prefix": r" ?[^\W\d_]+|\d|[^\w\s]|\s",
}


def train_tokenizer(texts: Iterable[str], vocab_size: int, spaces: str):
    """Train a byte-level BPE (pieces split by ``PRE_TOKENIZE[spaces]``) and wrap it as a
    PreTrainedTokenizerFast."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRE_TOKENIZE[spaces]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(CHAT_MARKERS),
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )


def model_config(settings: TinyModelSettings, tokenizer):
    """A LlamaConfig / Qwen2Config from the profile's tiny settings and the tokenizer's special ids."""
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_heads,
        max_position_embeddings=settings.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.02,
    )
    if settings.architecture == "qwen2":
        return Qwen2Config(**common)
    return LlamaConfig(**common)


def build_tiny_model(settings: TinyModelSettings, texts: list[str], seed: int, out_dir: str | Path) -> Path:
    """Train the tokenizer, build the seeded model and save both to `out_dir` (HF format). Idempotent:
    returns early when `out_dir` already holds a model built from the same inputs."""
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    key = _build_key(settings, texts, seed)
    marker = out / TINY_MARKER
    if marker.is_file() and read_model(marker, TinyModelRecord).key == key:
        return out
    if settings.vocab_size < 256 + len(SPECIAL_TOKENS):
        raise GenbenchError(f"tiny vocab_size {settings.vocab_size} is below the 256 byte alphabet")
    tokenizer = train_tokenizer(texts, settings.vocab_size, settings.spaces)
    config = model_config(settings, tokenizer)
    fork_devices: list = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = TinyModelRecord(
        key=key,
        seed=seed,
        settings=settings.model_dump(),
        vocab_size=len(tokenizer),
        parameters=sum(p.numel() for p in model.parameters()),
        corpus_texts=len(texts),
    )
    write_model(marker, record)
    log.info(
        "tiny %s: %d params, vocab %d -> %s",
        settings.architecture,
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
        out,
    )
    return out


def build_tiny_from_data(
    settings: TinyModelSettings, data_dir: str | Path, seed: int, out_dir: str | Path
) -> Path:
    """`build_tiny_model` on the corpus of a built dataset directory."""
    return build_tiny_model(settings, corpus_from_data_dir(data_dir), seed, out_dir)


def _build_key(settings: TinyModelSettings, texts: list[str], seed: int) -> str:
    blob = {"format": TINY_FORMAT, "settings": settings.model_dump(), "seed": seed}
    return content_key(blob, *texts)
