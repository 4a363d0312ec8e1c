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


def score_many(records: list[tuple[str, str, str, dict | None]], workers: int | None = None) -> list[Score]:
    """Score (data_source, solution, ground_truth, extra_info) tuples, keeping order.

    Code families run in parallel in the sandbox (`workers` processes, default = cores); others inline.
    """
    from genbench_tasks.families import code_generation

    results: list[Score | None] = [None] * len(records)
    code_jobs: list[tuple[int, tuple[str, str, str, str]]] = []
    for i, (data_source, solution, ground_truth, extra_info) in enumerate(records):
        family = family_for_data_source(data_source)
        if family.scorer is not code_generation.score:
            results[i] = family.score(solution, ground_truth, extra_info)
            continue
        try:
            gt = code_generation.parse_ground_truth(ground_truth)
        except ValueError as exc:
            results[i] = Score(reward=0.0, passed=False, reason=f"bad ground truth: {exc}")
            continue
        code_jobs.append((i, code_generation.sandbox_job(solution, gt)))
    if code_jobs:
        from genbench_tasks.scoring.sandbox import run_many

        for (i, _), result in zip(
            code_jobs, run_many([job for _, job in code_jobs], workers=workers), strict=True
        ):
            results[i] = Score(
                reward=1.0 if result.passed else 0.0,
                passed=result.passed,
                reason=f"{result.status}: {result.reason}",
            )
    return [r for r in results if r is not None]
