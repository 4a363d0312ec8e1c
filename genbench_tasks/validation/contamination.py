"""Cross-split checks: exact held-out prompt leaks and GPT-3-style n-gram contamination.

Pure Python (no Great Expectations), linear in the total text size.

N-gram check (Brown et al. 2020, appendix C): texts are lower-cased and split into word tokens (`\\w+`,
punctuation dropped); a held-out item is flagged when any of its n-grams (default n = 13) also occurs in a
training text. A text with fewer than n words has no n-gram and so can never be flagged: most of our
generated prompts are short (a code_generation prompt is about 11 words), so the check only bites on longer
items; the report counts the unflaggable ones (`too_short`) so this stays visible. Exact leaks of short
prompts are caught by the exact-match check instead.

Efficiency: the hash set is built from the smaller side (held-out n-grams, mapped to their items) and the
training texts are streamed through it, so memory is O(held-out) and time O(total words); flagging is the
same as with a set of training n-grams.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from genbench_tasks.validation.report import MAX_SAMPLE_ROWS, CrossCheckResult

WORD_RE = re.compile(r"\w+")


class TextItem(NamedTuple):
    """One row's texts. `texts[0]` is the prompt (used for the exact check); all texts feed the n-gram check."""

    dataset: str
    id: str
    texts: tuple[str, ...]


def normalize_prompt(text: str) -> str:
    """Case- and whitespace-insensitive form used for exact matching."""
    return " ".join(text.casefold().split())


def word_tokens(text: str) -> list[str]:
    return WORD_RE.findall(text.casefold())


def word_ngrams(tokens: list[str], n: int) -> Iterator[tuple[str, ...]]:
    for i in range(len(tokens) - n + 1):
        yield tuple(tokens[i : i + n])


def heldout_leak_check(training: Iterable[TextItem], heldout: Iterable[TextItem]) -> CrossCheckResult:
    """Fail when a held-out prompt (normalised) is also a prompt in a training split."""
    seen: dict[str, TextItem] = {}
    n_train = 0
    for item in training:
        n_train += 1
        seen.setdefault(normalize_prompt(item.texts[0]), item)
    leaks: list[dict] = []
    n_heldout = 0
    for item in heldout:
        n_heldout += 1
        match = seen.get(normalize_prompt(item.texts[0]))
        if match is not None:
            leaks.append(
                {
                    "heldout_dataset": item.dataset,
                    "heldout_id": item.id,
                    "training_dataset": match.dataset,
                    "training_id": match.id,
                    "prompt": item.texts[0],
                }
            )
    datasets = sorted({row["heldout_dataset"] for row in leaks})
    details = (
        f"{len(leaks)} held-out prompts also appear in training splits ({', '.join(datasets)})"
        if leaks
        else f"none of {n_heldout} held-out prompts appears among {n_train} training prompts"
    )
    return CrossCheckResult(
        name="heldout_prompt_leak",
        success=not leaks,
        details=details,
        stats={"training_prompts": n_train, "heldout_prompts": n_heldout, "leaks": len(leaks)},
        sample_offending_rows=leaks[:MAX_SAMPLE_ROWS],
    )


def ngram_contamination_check(
    training: Iterable[TextItem], heldout: Iterable[TextItem], n: int = 13, max_fraction: float = 0.0
) -> CrossCheckResult:
    """Fail when, for some held-out dataset, more than `max_fraction` of its items share an n-gram with training."""
    if n < 1:
        raise ValueError("n-gram size must be >= 1")
    items = list(heldout)
    index: dict[tuple[str, ...], list[int]] = {}
    per_ds: dict[str, dict[str, float]] = {}
    for i, item in enumerate(items):
        stats = per_ds.setdefault(item.dataset, {"items": 0, "too_short": 0, "flagged": 0, "fraction": 0.0})
        stats["items"] += 1
        grams = {g for text in item.texts for g in word_ngrams(word_tokens(text), n)}
        if not grams:
            stats["too_short"] += 1
        for gram in grams:
            index.setdefault(gram, []).append(i)

    flagged: dict[int, tuple[TextItem, tuple[str, ...]]] = {}
    n_train = 0
    for train_item in training:
        n_train += 1
        if not index:
            continue  # nothing can match: still count the training items
        for text in train_item.texts:
            tokens = word_tokens(text)
            if len(tokens) < n:
                continue
            for gram in word_ngrams(tokens, n):
                for i in index.get(gram, ()):
                    flagged.setdefault(i, (train_item, gram))

    for i in flagged:
        per_ds[items[i].dataset]["flagged"] += 1
    for stats in per_ds.values():
        stats["fraction"] = round(stats["flagged"] / stats["items"], 6) if stats["items"] else 0.0
    bad = sorted(ds for ds, s in per_ds.items() if s["fraction"] > max_fraction)
    too_short = sum(int(s["too_short"]) for s in per_ds.values())
    rows = [
        {
            "heldout_dataset": items[i].dataset,
            "heldout_id": items[i].id,
            "training_dataset": train_item.dataset,
            "training_id": train_item.id,
            "ngram": " ".join(gram),
        }
        for i, (train_item, gram) in sorted(flagged.items())
        if items[i].dataset in bad
    ]
    if bad:
        worst = ", ".join(f"{ds} {per_ds[ds]['flagged']:.0f}/{per_ds[ds]['items']:.0f}" for ds in bad)
        details = f"held-out items sharing a {n}-gram with training text exceed {max_fraction:.2%}: {worst}"
    else:
        details = (
            f"{len(flagged)} of {len(items)} held-out items share a {n}-gram with {n_train} training items "
            f"(max fraction {max_fraction:.2%})"
        )
    if too_short:
        details += f"; {too_short} held-out items have fewer than {n} words and cannot be flagged"
    return CrossCheckResult(
        name="ngram_contamination",
        success=not bad,
        details=details,
        stats={
            "n": n,
            "max_fraction": max_fraction,
            "training_items": n_train,
            "heldout_items": len(items),
            "per_dataset": per_ds,
        },
        sample_offending_rows=rows[:MAX_SAMPLE_ROWS],
    )
