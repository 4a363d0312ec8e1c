"""compute_score dispatch, verl's own reward loader, and the `genbench score` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import genbench_tasks.rewards as rewards
from genbench_tasks.errors import GenbenchError
from genbench_tasks.families import get_family

GENBENCH = [sys.executable, "-m", "genbench_tasks.cli"]


def _example(family: str, index: int = 0):
    return get_family(family).build(7, index + 1)[index]


@pytest.mark.parametrize("family", ["rewriting", "reasoning", "code_generation"])
def test_compute_score_rewards_reference_and_rejects_garbage(family):
    fam, ex = get_family(family), _example(family)
    good = rewards.compute_score(fam.data_source, ex.reference, ex.ground_truth, {"split": "test"})
    bad = rewards.compute_score(fam.data_source, "I do not know.", ex.ground_truth)
    assert good == {"score": 1.0, "acc": 1.0}
    assert bad["acc"] == 0.0 and bad["score"] < 0.5


def test_reasoning_partial_credit_for_format_only():
    ex = _example("reasoning")
    assert rewards.compute_score("genbench/reasoning", "Answer: -999", ex.ground_truth)[
        "score"
    ] == pytest.approx(0.1)


def test_unknown_data_source_is_a_clear_error():
    with pytest.raises(GenbenchError, match="no task family scores data_source 'nope/x'"):
        rewards.compute_score("nope/x", "a", "b")


def test_verl_reward_loader_loads_and_calls_our_function():
    """The installed verl's own mechanism: reward.custom_reward_function.{path,name} -> get_custom_reward_fn."""
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(
            config_name="ppo_trainer",
            overrides=[
                f"reward.custom_reward_function.path={rewards.__file__}",
                "reward.custom_reward_function.name=compute_score",
            ],
        )
    GlobalHydra.instance().clear()
    fn = get_custom_reward_fn(cfg)
    ex = _example("rewriting")
    assert fn("genbench/rewriting", ex.reference, ex.ground_truth, {"index": 0}) == {"score": 1.0, "acc": 1.0}
    assert fn("genbench/rewriting", "zzz", ex.ground_truth, None)["acc"] == 0.0


def _run(*args, stdin: str | None = None):
    return subprocess.run([*GENBENCH, *args], capture_output=True, text=True, input=stdin, timeout=300)


def test_score_cli_keeps_order_and_scores_code_in_the_sandbox(tmp_path):
    rows = []
    for i in range(6):
        fam = ["rewriting", "code_generation", "reasoning"][i % 3]
        ex = _example(fam, i)
        solution = ex.reference if i % 2 == 0 else "while True: pass" if fam == "code_generation" else "no"
        rows.append(
            {
                "data_source": get_family(fam).data_source,
                "solution_str": solution,
                "ground_truth": ex.ground_truth,
                "extra_info": {"i": i},
            }
        )
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    result = _run("score", "--in", str(src), "--out", str(out), "--chunk", "4", "--workers", "2")
    assert result.returncode == 0, result.stderr
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["extra_info"]["i"] for r in scored] == list(range(6))
    assert [r["passed"] for r in scored] == [i % 2 == 0 for i in range(6)]
    assert all({"reward", "passed", "reason"} <= r.keys() for r in scored)
    assert "timeout" in scored[1]["reason"] or "failed" in scored[1]["reason"]
    assert "scored 6 samples, passed 3" in result.stderr
    assert not (tmp_path / "out.jsonl.partial").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "in.jsonl:1: invalid JSON"),
        ('{"data_source": "genbench/rewriting"}\n', "missing field(s) solution_str, ground_truth"),
        ('{"data_source": "x/y", "solution_str": "a", "ground_truth": "b"}\n', "no task family scores"),
        ("[1, 2]\n", "expected a JSON object"),
    ],
)
def test_score_cli_bad_input_is_one_line(tmp_path, content, message):
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    result = _run("score", "--in", str(src), "--out", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_score_cli_missing_input(tmp_path):
    result = _run("score", "--in", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr
