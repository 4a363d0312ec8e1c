"""Held-out family: write a Python function, checked by executing unit tests in the sandbox.

Ground truth is HumanEval-style JSON: {"test": "def check(candidate): ...", "entry_point": name}
(optionally "prompt" for completion-style items), so any HumanEval-format data drops in.
"""

from __future__ import annotations

import json
import re

from genbench_tasks.families.base import Example, Rng, Score, TaskFamily, content_id, generate_unique

_FENCE_RE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)

# (name template, signature args, description template, body template, test-input generator)
_TEMPLATES = [
    (
        "add_{k}",
        "x",
        "returns x plus {k}",
        "return x + {k}",
        lambda r: [r.randint(-50, 50) for _ in range(4)],
        lambda x, k: x + k,
    ),
    (
        "times_{k}",
        "x",
        "returns x multiplied by {k}",
        "return x * {k}",
        lambda r: [r.randint(-20, 20) for _ in range(4)],
        lambda x, k: x * k,
    ),
    (
        "minus_{k}",
        "x",
        "returns x minus {k}",
        "return x - {k}",
        lambda r: [r.randint(-50, 50) for _ in range(4)],
        lambda x, k: x - k,
    ),
    (
        "is_multiple_of_{k}",
        "x",
        "returns True if x is divisible by {k}, else False",
        "return x % {k} == 0",
        lambda r: [r.randint(0, 60) for _ in range(5)],
        lambda x, k: x % k == 0,
    ),
    (
        "repeat_{k}",
        "s",
        "returns the string s repeated {k} times",
        "return s * {k}",
        lambda r: [r.choice(["ab", "x", "hi", "cat", ""]) for _ in range(3)],
        lambda s, k: s * k,
    ),
    (
        "first_{k}_chars",
        "s",
        "returns the first {k} characters of the string s",
        "return s[:{k}]",
        lambda r: [r.choice(["python", "abcdefgh", "hi", "genbench"]) for _ in range(3)],
        lambda s, k: s[:k],
    ),
    (
        "sum_plus_{k}",
        "xs",
        "returns the sum of the list xs plus {k}",
        "return sum(xs) + {k}",
        lambda r: [[r.randint(0, 9) for _ in range(r.randint(0, 4))] for _ in range(3)],
        lambda xs, k: sum(xs) + k,
    ),
    (
        "count_above_{k}",
        "xs",
        "returns how many numbers in the list xs are greater than {k}",
        "return sum(1 for v in xs if v > {k})",
        lambda r: [[r.randint(0, 20) for _ in range(r.randint(1, 5))] for _ in range(3)],
        lambda xs, k: sum(1 for v in xs if v > k),
    ),
]


def _make(rng: Rng) -> Example:
    name_t, arg, desc_t, body_t, inputs, oracle = rng.choice(_TEMPLATES)
    k = rng.randint(2, 19)
    name = name_t.format(k=k)
    reference = f"def {name}({arg}):\n    {body_t.format(k=k)}\n"
    asserts = "\n".join(f"    assert candidate({v!r}) == {oracle(v, k)!r}" for v in inputs(rng))
    test = f"def check(candidate):\n{asserts}\n"
    prompt = f"Write a Python function `{name}({arg})` that {desc_t.format(k=k)}."
    ground_truth = json.dumps({"test": test, "entry_point": name}, sort_keys=True)
    return Example(
        id=content_id("cg", prompt),
        prompt=prompt,
        reference=reference,
        ground_truth=ground_truth,
        extra={"entry_point": name},
    )


def build(seed: int, size: int) -> list[Example]:
    return generate_unique(seed, size, _make)


def extract_program(solution: str, ground_truth: dict) -> str:
    """The program to test: fenced code if present; completion-style answers get the item's prompt prepended."""
    fenced = _FENCE_RE.findall(solution)
    code = "\n".join(fenced) if fenced else solution
    entry_point = ground_truth["entry_point"]
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is None:
        code = ground_truth.get("prompt", "") + code
    return code


def parse_ground_truth(ground_truth: str | dict) -> dict:
    """The JSON object {"test", "entry_point"[, "prompt"]}, all strings; ValueError saying what is wrong."""
    if isinstance(ground_truth, str):
        try:
            data = json.loads(ground_truth)
        except json.JSONDecodeError as exc:
            raise ValueError(f"code ground truth is not valid JSON ({exc.msg} at char {exc.pos})") from None
    else:
        data = ground_truth
    if not isinstance(data, dict):
        raise ValueError(f"code ground truth must be a JSON object, not {type(data).__name__}")
    missing = [key for key in ("test", "entry_point") if key not in data]
    if missing:
        raise ValueError(
            f"code ground truth must be a JSON object with 'test' and 'entry_point' (no {missing})"
        )
    wrong = [
        key for key in ("test", "entry_point", "prompt") if key in data and not isinstance(data[key], str)
    ]
    if wrong:
        raise ValueError(f"code ground truth fields {wrong} must be strings")
    if not data["entry_point"].isidentifier():
        raise ValueError(f"code ground truth entry_point {data['entry_point']!r} is not a Python identifier")
    return dict(data)


def sandbox_job(solution: str, ground_truth: dict) -> tuple[str, str, str, str]:
    """(program, test, entry point, prompt) for the sandbox: the item's prompt runs on the test side, so the
    helpers its test calls are the item's own, never the candidate's."""
    prompt = ground_truth.get("prompt", "")
    return extract_program(solution, ground_truth), ground_truth["test"], ground_truth["entry_point"], prompt


def score(solution: str, ground_truth: str, extra_info: dict | None = None) -> Score:
    from genbench_tasks.scoring.sandbox import run_tests

    try:
        gt = parse_ground_truth(ground_truth)
    except ValueError as exc:
        return Score(reward=0.0, passed=False, reason=f"bad ground truth: {exc}")
    program, test, entry_point, prompt = sandbox_job(solution, gt)
    result = run_tests(program, test, entry_point, prelude=prompt)
    return Score(
        reward=1.0 if result.passed else 0.0, passed=result.passed, reason=f"{result.status}: {result.reason}"
    )


FAMILY = TaskFamily(
    name="code_generation",
    role="heldout",
    data_source="genbench/code_generation",
    ability="code",
    description="Write a small Python function from a one-line spec; scored by running unit tests in a sandbox.",
    system_prompt="Write Python code only. Reply with the complete function definition.",
    metrics=("success_rate", "bleu", "consistency", "reward_mean", "pass@k"),
    builder=build,
    scorer=score,
    splits=("test",),
)
