"""verl-compatible reward entry point.

verl loads this file through `reward.custom_reward_function.path` (0.7.1+; top-level
`custom_reward_function.*` before) and calls `compute_score` once per response.
"""

from __future__ import annotations

from genbench_tasks.families import Score, family_for_data_source


def score_sample(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None
) -> Score:
    """Full scoring result (reward, passed, reason) for one response."""
    return family_for_data_source(data_source).score(solution_str, ground_truth, extra_info)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """The signature verl's custom_reward_function calls. Returns {"score", "acc"} (numeric only:
    verl averages every returned key into its validation metrics)."""
    result = score_sample(data_source, solution_str, ground_truth, extra_info)
    return {"score": float(result.reward), "acc": float(result.passed)}
