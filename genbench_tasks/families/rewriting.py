"""Training family: instruction-following text rewriting with an exactly checkable target."""

from __future__ import annotations

from difflib import SequenceMatcher

from genbench_tasks.families.base import (
    Example,
    Rng,
    Score,
    TaskFamily,
    content_id,
    generate_unique,
    normalize_text,
)

WORDS = [
    "red",
    "blue",
    "green",
    "small",
    "big",
    "old",
    "new",
    "fast",
    "slow",
    "happy",
    "sad",
    "cat",
    "dog",
    "bird",
    "fish",
    "tree",
    "house",
    "car",
    "road",
    "river",
    "sun",
    "moon",
    "star",
    "cloud",
    "rain",
    "snow",
    "wind",
    "stone",
    "book",
    "pen",
    "cup",
    "door",
    "window",
    "apple",
    "bread",
    "milk",
    "water",
    "fire",
    "light",
    "dark",
    "city",
    "town",
    "park",
    "lake",
    "hill",
    "field",
    "garden",
    "friend",
    "child",
    "teacher",
    "doctor",
    "farmer",
    "runs",
    "jumps",
    "sings",
    "reads",
    "writes",
    "walks",
    "sleeps",
    "eats",
    "sees",
    "finds",
]


def _rule(rng: Rng, words: list[str]) -> tuple[str, str, str]:
    """Pick a rule; return (rule_name, instruction, target)."""
    kind = rng.choice(
        [
            "upper",
            "title",
            "reverse",
            "sort",
            "replace",
            "hyphen",
            "comma",
            "drop_first",
            "drop_last",
            "double_last",
        ]
    )
    if kind == "upper":
        return kind, "Convert the text to upper case.", " ".join(words).upper()
    if kind == "title":
        return kind, "Capitalize the first letter of every word.", " ".join(w.capitalize() for w in words)
    if kind == "reverse":
        return kind, "Reverse the order of the words.", " ".join(reversed(words))
    if kind == "sort":
        return kind, "Sort the words alphabetically.", " ".join(sorted(words))
    if kind == "replace":
        old = rng.choice(words)
        new = rng.choice([w for w in WORDS if w not in words])
        return kind, f"Replace every '{old}' with '{new}'.", " ".join(new if w == old else w for w in words)
    if kind == "hyphen":
        return kind, "Join the words with hyphens.", "-".join(words)
    if kind == "comma":
        return kind, "Separate the words with commas.", ", ".join(words)
    if kind == "drop_first":
        return kind, "Remove the first word.", " ".join(words[1:])
    if kind == "drop_last":
        return kind, "Remove the last word.", " ".join(words[:-1])
    return kind, "Repeat the last word twice at the end.", " ".join([*words, words[-1]])


def _make(rng: Rng) -> Example:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
    rule, instruction, target = _rule(rng, words)
    text = " ".join(words)
    prompt = f"Rewrite the text. Rule: {instruction}\nText: {text}"
    return Example(
        id=content_id("rw", prompt),
        prompt=prompt,
        reference=target,
        ground_truth=target,
        extra={"rule": rule},
    )


def build(seed: int, size: int) -> list[Example]:
    return generate_unique(seed, size, _make)


def score(solution: str, ground_truth: str, extra_info: dict | None = None) -> Score:
    got, want = normalize_text(solution), normalize_text(ground_truth)
    if got == want:
        return Score(reward=1.0, passed=True, reason="exact match")
    similarity = SequenceMatcher(None, got, want).ratio()
    return Score(
        reward=round(0.5 * similarity, 6), passed=False, reason=f"mismatch (similarity {similarity:.2f})"
    )


FAMILY = TaskFamily(
    name="rewriting",
    role="train",
    data_source="genbench/rewriting",
    ability="rewriting",
    description="Rewrite a short text by a stated rule (case, order, substitution, punctuation).",
    system_prompt="You rewrite text exactly as instructed. Reply with the rewritten text only.",
    metrics=("success_rate", "bleu", "consistency", "reward_mean"),
    builder=build,
    scorer=score,
)
