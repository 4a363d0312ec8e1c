"""Training family: multi-step arithmetic and logic word problems with one verifiable answer."""

from __future__ import annotations

import re

from genbench_tasks.families.base import Example, Rng, Score, TaskFamily, content_id, generate_unique

NAMES = ["Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "June", "Kai", "Lea"]
ITEMS = ["apples", "books", "coins", "pens", "cards", "shells", "stamps", "marbles"]
ANSWER_RE = re.compile(r"answer\s*:\s*([A-Za-z]+|-?\d+)", re.IGNORECASE)


def _make(rng: Rng) -> Example:
    kind = rng.choice(["add_sub", "mul_sub", "chain", "order", "linear"])
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if kind == "add_sub":
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        c = rng.randint(1, a + b - 1)
        s, ans = a + b, a + b - c
        prompt = f"{name} has {a} {item}. {name} gets {b} more and then gives away {c}. How many {item} does {name} have now?"
        steps = f"{a} + {b} = {s}. {s} - {c} = {ans}."
    elif kind == "mul_sub":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        c = rng.randint(1, a * b - 1)
        s, ans = a * b, a * b - c
        prompt = f"{name} buys {a} boxes with {b} {item} in each box and loses {c}. How many {item} are left?"
        steps = f"{a} * {b} = {s}. {s} - {c} = {ans}."
    elif kind == "chain":
        a, b, c = rng.randint(1, 15), rng.randint(1, 15), rng.randint(1, 15)
        s, ans = a + b, a + b + c
        prompt = (
            f"A box holds {a} {item}. {name} puts in {b} more, then {c} more. How many {item} are in the box?"
        )
        steps = f"{a} + {b} = {s}. {s} + {c} = {ans}."
    elif kind == "order":
        people = rng.sample(NAMES, 3)
        adjective = rng.choice([("taller", "shortest"), ("older", "youngest"), ("faster", "slowest")])
        prompt = (
            f"{people[0]} is {adjective[0]} than {people[1]}. {people[1]} is {adjective[0]} than {people[2]}. "
            f"Who is the {adjective[1]}?"
        )
        ans = people[2]
        steps = f"{people[0]} > {people[1]} > {people[2]}."
    else:
        x, m, b = rng.randint(1, 12), rng.randint(2, 5), rng.randint(1, 20)
        ans = x * m + b
        prompt = f"If x = {x} and y = {m} * x + {b}, what is y?"
        steps = f"{m} * {x} = {m * x}. {m * x} + {b} = {ans}."
    reference = f"{steps} Answer: {ans}"
    return Example(
        id=content_id("rs", prompt),
        prompt=prompt,
        reference=reference,
        ground_truth=str(ans),
        extra={"kind": kind},
    )


def build(seed: int, size: int) -> list[Example]:
    return generate_unique(seed, size, _make)


def extract_answer(solution: str) -> str | None:
    matches = ANSWER_RE.findall(solution)
    return matches[-1] if matches else None


def score(solution: str, ground_truth: str, extra_info: dict | None = None) -> Score:
    answer = extract_answer(solution)
    if answer is None:
        return Score(reward=0.0, passed=False, reason="no 'Answer:' line")
    if answer.strip().lower() == ground_truth.strip().lower():
        return Score(reward=1.0, passed=True, reason="correct answer")
    return Score(reward=0.1, passed=False, reason=f"wrong answer {answer!r}")


FAMILY = TaskFamily(
    name="reasoning",
    role="train",
    data_source="genbench/reasoning",
    ability="reasoning",
    description="Multi-step arithmetic and ordering-logic word problems; final line 'Answer: X'.",
    system_prompt="Solve the problem step by step, then end with 'Answer: <answer>'.",
    metrics=("success_rate", "bleu", "consistency", "reward_mean"),
    builder=build,
    scorer=score,
)
