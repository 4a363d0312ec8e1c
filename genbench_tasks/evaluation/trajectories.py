"""Do two sides' trainers behave alike? Their PPO runs compared seed by seed, step by step.

Every training backend here is deterministic: one seed, the same data and the same SFT init give the same
``metrics.jsonl`` bit for bit (tested for verl's ``main_ppo`` on CPU). So, unlike the evaluation metrics, a
trajectory needs no statistics: any difference at a step is the trainer's (its code, its defaults, a
profile's ``verl_overrides``), and the first such step and the figures that moved say where. Runs that did
not start from the same inputs (another SFT init, other training settings) are ``not comparable``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from genbench_tasks.artifacts.cells import CellSpec
from genbench_tasks.artifacts.comparison import SeedTrajectory, TrainerComparison
from genbench_tasks.artifacts.io import ArtifactError, read_model
from genbench_tasks.artifacts.layout import CellDir, RunLayout
from genbench_tasks.training.outputs import read_metrics

#: Profile sections that shape a PPO run (``verl_overrides`` is left out: it is the deliberate change)
TRAINING_SECTIONS = ("backend", "data", "model", "sft", "ppo", "cluster", "extra")
MAX_LISTED = 12


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _inputs_differ(candidate: CellDir, baseline: CellDir) -> str | None:
    """Why two train cells did not start from the same inputs (None: they did, or no cell.json tells)."""
    if not (candidate.spec.is_file() and baseline.spec.is_file()):
        return None
    a, b = read_model(candidate.spec, CellSpec), read_model(baseline.spec, CellSpec)
    if a.checkpoint_dir != b.checkpoint_dir:
        return "different SFT inits"
    sections = [s for s in TRAINING_SECTIONS if a.profile.get(s) != b.profile.get(s)]
    return f"different training settings ({', '.join(sections)})" if sections else None


def _rows(cell: CellDir) -> dict[int, dict[str, Any]]:
    return {r.step: r.deterministic() for r in read_metrics(cell.train_metrics)}


def compare_seed(seed: int, candidate: CellDir, baseline: CellDir) -> SeedTrajectory:
    """One seed's two training runs (``train/<label>/seed=<n>`` cells)."""
    try:
        a, b = _rows(candidate), _rows(baseline)
    except (ArtifactError, OSError) as exc:
        return SeedTrajectory(
            seed=seed, steps_candidate=0, steps_baseline=0, verdict="insufficient data", note=str(exc)
        )
    result = SeedTrajectory(seed=seed, steps_candidate=len(a), steps_baseline=len(b), verdict="identical")
    keys_a = set().union(*a.values()) if a else set()
    keys_b = set().union(*b.values()) if b else set()
    result.only_candidate = sorted(keys_a - keys_b)[:MAX_LISTED]
    result.only_baseline = sorted(keys_b - keys_a)[:MAX_LISTED]
    if reason := _inputs_differ(candidate, baseline):
        return result.model_copy(update={"verdict": "not comparable", "note": reason})
    common = sorted(set(a) & set(b))
    if not common:
        return result.model_copy(update={"verdict": "insufficient data", "note": "no common step"})
    if len(a) != len(b):
        result.note = f"compared over the {len(common)} common steps"
    for step in common:
        differing = sorted(k for k in a[step].keys() & b[step].keys() if not _same(a[step][k], b[step][k]))
        if differing:
            return result.model_copy(
                update={
                    "verdict": "differs",
                    "first_differing_step": step,
                    "differing": differing[:MAX_LISTED],
                    "reward_mean_candidate": a[step].get("reward_mean"),
                    "reward_mean_baseline": b[step].get("reward_mean"),
                }
            )
    return result


def compare_trainers(candidate: dict[int, CellDir], baseline: dict[int, CellDir]) -> TrainerComparison | None:
    """Seed by seed over the seeds both sides trained; None when neither side has training runs."""
    if not candidate and not baseline:
        return None
    seeds = [compare_seed(s, candidate[s], baseline[s]) for s in sorted(candidate.keys() & baseline.keys())]
    verdicts = {s.verdict for s in seeds}
    if "differs" in verdicts:
        verdict = "differs"
    elif "identical" in verdicts:
        verdict = "identical"
    elif "not comparable" in verdicts:
        verdict = "not comparable"
    else:
        verdict = "insufficient data"
    return TrainerComparison(verdict=verdict, seeds=seeds)


def describe(trainer: TrainerComparison) -> str:
    """One line: the verdict, over how many seeds, and where the first difference shows."""
    compared = [s for s in trainer.seeds if s.verdict in ("identical", "differs")]
    differs = [s for s in compared if s.verdict == "differs"]
    text = f"trainer: {trainer.verdict}"
    if compared:
        text += f" ({len(differs)}/{len(compared)} seeds differ)" if differs else f" ({len(compared)} seeds)"
    if differs:
        first = min(differs, key=lambda s: s.first_differing_step or 0)
        shown = ", ".join(first.differing[:4]) + (", ..." if len(first.differing) > 4 else "")
        text += f"; seed {first.seed} from step {first.first_differing_step}: {shown}"
    other = [s for s in trainer.seeds if s.verdict not in ("identical", "differs")]
    if other:
        text += "; " + "; ".join(
            f"seed {s.seed}: {s.verdict}" + (f" ({s.note})" if s.note else "") for s in other
        )
    return text


def train_cells(rundir: str | Path, label: str) -> dict[int, CellDir]:
    """``RUNDIR/train/<label>/seed=<n>`` cells that hold a ``metrics.jsonl``."""
    cells = RunLayout(Path(rundir)).train_cells().get(label, {})
    return {seed: cell for seed, cell in cells.items() if cell.train_metrics.is_file()}
