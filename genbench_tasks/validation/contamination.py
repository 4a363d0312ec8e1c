"""Cross-split checks: held-out prompt leaks, GPT-3-style n-gram contamination, MinHash near-duplicates.

Normalisation (all checks): Unicode NFKC (full-width letters, ligatures, compatibility digits fold to their
plain forms), case folding, and invisible format characters (zero-width space, soft hyphen) removed. The exact leak check also drops punctuation (Unicode category P, except the
operator characters ``* - / % & \\``, so "3 * 4" and "3 - 4" stay different) and other non-math symbols, and
makes spacing irrelevant: "f(x) ." and "f ( x )." compare equal. Every user turn of a held-out prompt is
compared with every turn (any role) and answer of a training item, not only its last user turn.

N-gram check (Brown et al. 2020, appendix C): normalised texts are split into word tokens (`\\w+`, punctuation
dropped); a held-out item is flagged when any of its n-grams (default n = 13) also occurs in a training text. A
text with fewer than n words has no n-gram and so can never be flagged: most of our generated prompts are short
(a code_generation prompt is about 11 words), so the check only bites on longer items; the report counts the
unflaggable ones (`too_short`) so this stays visible. Exact leaks of short prompts are caught by the exact-match
check, edited copies by the near-duplicate check.

Near-duplicate check: MinHash (datasketch) over word bigrams; held-out prompts go into an LSH index, every
training turn and answer is queried against it, and each candidate pair is confirmed exactly: a word-bigram
Jaccard similarity >= 0.5 (one word changed in an 11-word prompt is 0.67), or >= 80% of a held-out prompt's
bigrams inside the training text (an edited copy embedded in a longer prompt). Small edits (a word swapped,
inserted or dropped) therefore still match, where the exact check needs identity and the 13-gram check length.

Efficiency: the hash set is built from the smaller side (held-out n-grams / MinHashes, mapped to their items)
and the training texts are streamed through it, so memory is O(held-out) and time O(total words).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from genbench_tasks.artifacts.validation import MAX_SAMPLE_ROWS, CrossCheckResult

WORD_RE = re.compile(r"\w+")
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_KEPT_PUNCTUATION = set("*-/%&\\")
NEAR_DUPLICATE_JACCARD = 0.5
NEAR_DUPLICATE_CONTAINMENT = 0.8  # for held-out prompts of >= 5 bigrams, found by the LSH at Jaccard ~0.3
_LSH_JACCARD = 0.3
_MINHASH_PERMUTATIONS = 128


class TextItem(NamedTuple):
    """One row's texts. `prompts` are compared exactly (default: `texts[0]`); all texts feed the n-gram and
    near-duplicate checks."""

    dataset: str
    id: str
    texts: tuple[str, ...]
    prompts: tuple[str, ...] = ()

    def exact_texts(self) -> tuple[str, ...]:
        return self.prompts or self.texts[:1]


class _StripTable(dict):
    """str.translate table: punctuation and non-math symbols -> space, filled per character on first sight."""

    def __missing__(self, cp: int) -> int | str:
        char = chr(cp)
        category = unicodedata.category(char)
        strip = (category[0] == "P" and char not in _KEPT_PUNCTUATION) or category in ("Sk", "Sc", "So")
        self[cp] = " " if strip else cp
        return self[cp]


_STRIP = _StripTable()


class _FormatTable(dict):
    """str.translate table deleting format characters (zero-width space/joiners, soft hyphen, BOM, bidi)."""

    def __missing__(self, cp: int) -> int | None:
        self[cp] = None if unicodedata.category(chr(cp)) == "Cf" else cp
        return self[cp]


_FORMAT = _FormatTable()


def fold(text: str) -> str:
    """NFKC, case folding and no invisible format characters: the first step of every comparison."""
    return unicodedata.normalize("NFKC", text).translate(_FORMAT).casefold()


def normalize_prompt(text: str) -> str:
    """Form used for exact matching: NFKC, case-folded, punctuation stripped, spacing irrelevant."""
    return " ".join(_TOKEN_RE.findall(fold(text).translate(_STRIP)))


def word_tokens(text: str) -> list[str]:
    return WORD_RE.findall(fold(text))


def word_ngrams(tokens: list[str], n: int) -> Iterator[tuple[str, ...]]:
    for i in range(len(tokens) - n + 1):
        yield tuple(tokens[i : i + n])


def heldout_leak_check(training: Iterable[TextItem], heldout: Iterable[TextItem]) -> CrossCheckResult:
    """Fail when a user turn of a held-out prompt (normalised) is also a text of a training item (any turn of
    its prompt, or its answer)."""
    seen: dict[str, TextItem] = {}
    n_train = 0
    for item in training:
        n_train += 1
        for text in item.exact_texts():
            seen.setdefault(normalize_prompt(text), item)
    leaks: list[dict] = []
    n_heldout = 0
    for item in heldout:
        n_heldout += 1
        for text in item.exact_texts():
            match = seen.get(normalize_prompt(text))
            if match is not None:
                leaks.append(
                    {
                        "heldout_dataset": item.dataset,
                        "heldout_id": item.id,
                        "training_dataset": match.dataset,
                        "training_id": match.id,
                        "prompt": text,
                    }
                )
                break
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


def _shingles(text: str) -> set[str]:
    """Word bigrams of the normalised text (a single word for one-word texts)."""
    tokens = word_tokens(text)
    if len(tokens) < 2:
        return set(tokens)
    return {f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)}


def near_duplicate_check(
    training: Iterable[TextItem],
    heldout: Iterable[TextItem],
    threshold: float = NEAR_DUPLICATE_JACCARD,
    max_fraction: float = 0.0,
    batch: int = 2048,
) -> CrossCheckResult:
    """Fail when, for some held-out dataset, more than `max_fraction` of its prompts have a training text (a
    turn or an answer) whose word-bigram Jaccard similarity is >= `threshold`, or that holds >= 80% of the
    prompt's bigrams (MinHash LSH candidates, confirmed exactly)."""
    from datasketch import MinHash, MinHashLSH

    items = list(heldout)
    sets = [set().union(*(_shingles(t) for t in item.exact_texts())) for item in items]
    lsh = MinHashLSH(
        threshold=min(threshold, _LSH_JACCARD), num_perm=_MINHASH_PERMUTATIONS, weights=(0.2, 0.8)
    )
    per_ds: dict[str, dict[str, float]] = {}
    indexed = [i for i, shingles in enumerate(sets) if shingles]
    hashes = MinHash.bulk(
        [[s.encode() for s in sets[i]] for i in indexed], num_perm=_MINHASH_PERMUTATIONS, seed=1
    )
    for i, mh in zip(indexed, hashes, strict=True):
        lsh.insert(i, mh)
    for item in items:
        per_ds.setdefault(item.dataset, {"items": 0, "flagged": 0, "fraction": 0.0})["items"] += 1

    flagged: dict[int, tuple[TextItem, float]] = {}
    n_train = 0

    def query(chunk: list[tuple[TextItem, set[str]]]) -> None:
        found = MinHash.bulk(
            [[s.encode() for s in shingles] for _, shingles in chunk], num_perm=_MINHASH_PERMUTATIONS, seed=1
        )
        for (train_item, shingles), mh in zip(chunk, found, strict=True):
            for i in lsh.query(mh):
                shared = len(sets[i] & shingles)
                similarity = shared / len(sets[i] | shingles)
                contained = len(sets[i]) >= 5 and shared / len(sets[i]) >= NEAR_DUPLICATE_CONTAINMENT
                if (similarity >= threshold or contained) and similarity > flagged.get(i, (None, -1.0))[1]:
                    flagged[i] = (train_item, round(similarity, 3))

    chunk: list[tuple[TextItem, set[str]]] = []
    for train_item in training:
        n_train += 1
        if not indexed:
            continue
        for text in train_item.texts:
            shingles = _shingles(text)
            if shingles:
                chunk.append((train_item, shingles))
        if len(chunk) >= batch:
            query(chunk)
            chunk = []
    if chunk:
        query(chunk)

    for i in flagged:
        per_ds[items[i].dataset]["flagged"] += 1
    for stats in per_ds.values():
        stats["fraction"] = round(stats["flagged"] / stats["items"], 6) if stats["items"] else 0.0
    bad = sorted(ds for ds, s in per_ds.items() if s["fraction"] > max_fraction)
    rows = [
        {
            "heldout_dataset": items[i].dataset,
            "heldout_id": items[i].id,
            "training_dataset": train_item.dataset,
            "training_id": train_item.id,
            "jaccard": similarity,
            "prompt": items[i].exact_texts()[0],
        }
        for i, (train_item, similarity) in sorted(flagged.items())
        if items[i].dataset in bad
    ]
    if bad:
        worst = ", ".join(f"{ds} {per_ds[ds]['flagged']:.0f}/{per_ds[ds]['items']:.0f}" for ds in bad)
        details = (
            f"held-out prompts with a near-duplicate training text (word-bigram Jaccard >= {threshold}) "
            f"exceed {max_fraction:.2%}: {worst}"
        )
    else:
        details = (
            f"{len(flagged)} of {len(items)} held-out prompts have a near-duplicate among {n_train} training "
            f"items (word-bigram Jaccard >= {threshold}, max fraction {max_fraction:.2%})"
        )
    return CrossCheckResult(
        name="near_duplicates",
        success=not bad,
        details=details,
        stats={
            "jaccard_threshold": threshold,
            "max_fraction": max_fraction,
            "training_items": n_train,
            "heldout_items": len(items),
            "per_dataset": per_ds,
        },
        sample_offending_rows=rows[:MAX_SAMPLE_ROWS],
    )
