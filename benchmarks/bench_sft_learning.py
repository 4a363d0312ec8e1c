"""What the embedded default's model learns: in-domain success of the SFT warm start over sampling seeds.

    .venv/bin/python benchmarks/bench_sft_learning.py [--profile local-cpu] [--overrides JSON] [--seeds 5]
        [--threads 2] [--work DIR] [--rules N] [--losses]

Builds the profile's data, runs its SFT stage (the tiny model built from a config, then fine-tuned: the
"SFT only" row and the PPO init) and samples each training family's test split with the profile's evaluation
settings (temperature, top_p), once per seed. Prints success and reward per family as mean, seed sd and the
report's 95% CI (``scoring.stats.describe``), against the untrained base model measured the same way in the same
run. A ``--work`` dir that already holds this profile's SFT is reused (only the sampling runs again).
``--rules N``: the rewriting family's greedy success per rule on N fresh examples (which rules it learned).
``--losses``: the SFT checkpoint's per-token loss on the responses of each training family's train, val and
test splits (train far below val: it memorised; both high: it has not learned the family).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _sampled(model_dir: Path, data: Path, profile, seeds: int, threads: int) -> dict[str, list[float]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genbench_tasks.training.common import (
        deterministic_torch,
        load_rl_rows,
        sampled_reward,
        training_families,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = [r for f in training_families(profile, data) for r in load_rl_rows(data, f, "test")]
    per: dict[str, list[float]] = {}
    with deterministic_torch(threads):
        for seed in range(seeds):
            out = sampled_reward(
                model,
                tokenizer,
                rows,
                seed=seed,
                max_prompt_length=profile.ppo.max_prompt_length,
                max_new_tokens=profile.eval.max_new_tokens,
                temperature=profile.eval.temperature,
                top_p=profile.eval.top_p,
            )
            for key, value in out.items():
                if "/" in key:
                    per.setdefault(key, []).append(value)
    return per


def _rewriting_rules(model_dir: Path, n: int, threads: int) -> dict[str, list[bool]]:
    """Greedy exact-match success of the rewriting family per rule on ``n`` fresh examples (seed 98765, none
    from the profile's splits)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genbench_tasks.families import get_family
    from genbench_tasks.training.common import deterministic_torch, generator
    from genbench_tasks.training.sampling import decode_responses, encode_chat, left_pad, sample_responses

    family = get_family("rewriting")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    examples = family.build(98765, n)
    per: dict[str, list[bool]] = {}
    with deterministic_torch(threads):
        for start in range(0, n, 32):
            chunk = examples[start : start + 32]
            ids, mask = left_pad(
                [encode_chat(tokenizer, family.render_prompt(e)) for e in chunk], tokenizer.pad_token_id
            )
            out, out_mask = sample_responses(
                model,
                ids,
                mask,
                max_new_tokens=48,
                eos_id=tokenizer.eos_token_id,
                pad_id=tokenizer.pad_token_id,
                generator=generator(0, "rules"),
                temperature=0.0,
            )
            for example, text in zip(chunk, decode_responses(tokenizer, out, out_mask), strict=True):
                per.setdefault(example.extra["rule"], []).append(
                    family.score(text, example.ground_truth).passed
                )
    return per


def _response_losses(model_dir: Path, data: Path, profile, threads: int, rows: int) -> dict[str, float]:
    """Mean per-token cross-entropy of the SFT responses (EOS included) given their chat prompts, per
    ``family/split``, on the first ``rows`` rows of each split, encoded as the SFT stage encodes them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genbench_tasks.training.common import deterministic_torch, training_families
    from genbench_tasks.training.sft import IGNORE, sft_examples, sft_max_len

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    max_len = sft_max_len(profile)
    out: dict[str, float] = {}
    with deterministic_torch(threads), torch.no_grad():
        for name in training_families(profile, data):
            for split in ("train", "val", "test"):
                total, tokens = 0.0, 0
                for ids, labels in sft_examples(tokenizer, data, [name], max_len, split)[:rows]:
                    n = sum(label != IGNORE for label in labels)
                    loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
                    total += float(loss) * n
                    tokens += n
                out[f"{name}/{split}"] = total / tokens
    return out


def _interval(values: list[float]) -> str:
    from genbench_tasks.scoring.stats import describe

    summary = describe(values)
    if summary.std is None:
        return f"{summary.mean:.3f}"
    return f"{summary.mean:.3f} sd {summary.std:.3f} 95% CI [{summary.ci_low:.3f}, {summary.ci_high:.3f}]"


def main() -> None:
    from genbench_tasks.cli import arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="local-cpu")
    parser.add_argument(
        "--overrides", type=arguments.json_object, default=None, help="JSON deep-merged into the profile"
    )
    parser.add_argument("--seeds", type=int, default=5, help="sampling seeds (default 5, the nightly's)")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads for sampling (SFT: the profile's sft.threads)"
    )
    parser.add_argument("--work", default=None, help="work dir (default: a temp dir)")
    parser.add_argument(
        "--rules", type=int, default=0, help="also: greedy rewriting success per rule on N fresh examples"
    )
    parser.add_argument(
        "--losses",
        action="store_true",
        help="also: response loss per family on train/val/test (memorisation)",
    )
    args = parser.parse_args()

    from genbench_tasks.data.build import build_datasets
    from genbench_tasks.profiles import load_profile
    from genbench_tasks.training.sft import ensure_sft

    profile = load_profile(args.profile, args.overrides)
    work = Path(args.work or tempfile.mkdtemp(prefix="gb-bench-sft-"))
    data = work / "data"
    if not (data / "datasets.json").is_file():
        build_datasets(profile, data)
    started = time.time()
    result = ensure_sft(profile, data, work / "sft")
    sft_s = time.time() - started
    base = _sampled(Path(result.base_model), data, profile, args.seeds, args.threads)
    tuned = _sampled(Path(result.checkpoint), data, profile, args.seeds, args.threads)
    took = f"reused (trained in {result.wall_time_s:.0f} s)" if result.skipped else f"in {sft_s:.0f} s"
    print(
        f"profile {profile.name}: SFT {profile.sft.steps} steps {took} ({profile.sft.threads} threads), "
        f"loss {result.loss_first:.3f} -> {result.loss_last:.3f}; {args.seeds} sampling seeds, "
        f"T={profile.eval.temperature} top_p={profile.eval.top_p}, test split"
    )
    for key in sorted(tuned):
        print(f"{key:22s} base {_interval(base[key]):44s} SFT {_interval(tuned[key])}")
    if args.rules:
        per = _rewriting_rules(Path(result.checkpoint), args.rules, args.threads)
        passed = [x for v in per.values() for x in v]
        print(f"rewriting, greedy, {len(passed)} fresh examples: success {sum(passed) / len(passed):.3f}")
        for rule, results in sorted(per.items()):
            print(f"  {rule:12s} {sum(results) / len(results):.2f}  (n={len(results)})")
    if args.losses:
        rows = 64
        losses = _response_losses(Path(result.checkpoint), data, profile, args.threads, rows)
        print(f"response loss per token (first {rows} rows of each split):")
        for key, value in losses.items():
            print(f"  {key:22s} {value:.3f}")


if __name__ == "__main__":
    main()
