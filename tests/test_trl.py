"""Backend trl-ppo (TRL's PPOTrainer, trl==1.12.0): settings mapping and errors, the rule reward through TRL's
own `get_reward`, a short CPU run on the tiny model (seeded, bit-identical reruns), its outputs, and the
checkpoint evaluated by `genbench eval` unchanged. TRL is never mocked."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from genbench_tasks.artifacts.io import read_model
from genbench_tasks.artifacts.training import TrainManifest
from genbench_tasks.data.build import build_datasets, load_manifest
from genbench_tasks.errors import GenbenchError
from genbench_tasks.profiles import load_profile
from tests.test_training import MINI

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
# The verl-core test miniature, with a shorter SFT and 3 PPO steps of 8 prompts.
TRL_MINI = copy.deepcopy(MINI)
TRL_MINI["name"], TRL_MINI["sft"]["steps"], TRL_MINI["ppo"]["steps"] = "mini-trl", 100, STEPS


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Data, the profile as YAML and the tiny base model (tokenizer) for the module."""
    from genbench_tasks.training.tiny_model import build_tiny_from_data

    root = tmp_path_factory.mktemp("trl")
    profile = load_profile("local-cpu", TRL_MINI)
    build_datasets(profile, root / "data")
    (root / "mini-trl.yaml").write_text(yaml.safe_dump(profile.model_dump(mode="json")))
    base = build_tiny_from_data(profile.model.tiny, root / "data", profile.data.seed, root / "base")
    return {
        "root": root,
        "profile": profile,
        "yaml": root / "mini-trl.yaml",
        "data": root / "data",
        "base": base,
    }


@pytest.fixture(scope="module")
def sft(ws):
    from genbench_tasks.training.sft import ensure_sft

    return ensure_sft(ws["profile"], ws["data"], ws["root"] / "sft")


@pytest.fixture(scope="module")
def runs(ws, sft):
    """Lazily trained runs by name: (TrainResult, [(metrics row, scored samples)] per step)."""
    from genbench_tasks.training.trl_ppo import train_run

    cache: dict = {}

    def get(name: str, seed: int, overrides: dict | None = None):
        if name not in cache:
            steps: list = []
            result = train_run(
                load_profile(str(ws["yaml"]), overrides),
                seed,
                ws["data"],
                ws["root"] / "runs" / name,
                sft_dir=sft.sft_dir,
                printer=lambda line: None,
                on_step=lambda row, samples: steps.append((row, samples)),
            )
            cache[name] = (result, steps)
        return cache[name]

    return get


def _metrics(run_dir) -> list[dict]:
    from genbench_tasks.training.outputs import deterministic_metrics, read_metrics

    return deterministic_metrics(read_metrics(Path(run_dir) / "metrics.jsonl"))


# ---- settings -------------------------------------------------------------------------------------------


def test_ppo_config_maps_the_profile(ws, tmp_path):
    from genbench_tasks.training.trl_ppo import ppo_config

    profile = load_profile(str(ws["yaml"]), {"extra": {"verl_core": {"kl_penalty": "low_var_kl"}}})
    ppo = profile.ppo
    cfg = ppo_config(profile, 7, tmp_path)
    assert (cfg.seed, cfg.use_cpu, cfg.bf16, cfg.gradient_checkpointing) == (7, True, False, False)
    assert cfg.learning_rate == ppo.actor_lr and cfg.num_ppo_epochs == ppo.ppo_epochs
    assert cfg.per_device_train_batch_size == ppo.rollout_batch_size and cfg.gradient_accumulation_steps == 1
    assert cfg.num_mini_batches == ppo.rollout_batch_size // ppo.mini_batch_size == 2
    assert cfg.total_episodes == ppo.steps * ppo.rollout_batch_size
    assert (cfg.gamma, cfg.lam, cfg.cliprange, cfg.kl_coef) == (
        ppo.gamma,
        ppo.lam,
        ppo.clip_ratio,
        ppo.kl_coef,
    )
    assert (cfg.response_length, cfg.temperature) == (ppo.max_response_length, ppo.temperature)
    assert cfg.cliprange_value == 0.5 and cfg.kl_estimator == "k3" and cfg.stop_token == "eos"
    assert cfg.vf_coef == 1.0 and not cfg.whiten_rewards and cfg.missing_eos_penalty is None
    assert cfg.local_rollout_forward_batch_size == ppo.rollout_batch_size


def test_gpu_sizing_changes_memory_knobs_only(ws, tmp_path):
    """GPU profiles size TRL with bf16, checkpointing and chunked rollouts; the PPO batch math stays."""
    from genbench_tasks.training.trl_ppo import ppo_config_arguments

    sized = {"use_cpu": False, "bf16": True, "gradient_checkpointing": True, "rollout_forward_batch_size": 4}
    base = ppo_config_arguments(load_profile(str(ws["yaml"])), 7, tmp_path)
    cfg = ppo_config_arguments(load_profile(str(ws["yaml"]), {"extra": {"trl_ppo": sized}}), 7, tmp_path)
    knobs = ("use_cpu", "bf16", "gradient_checkpointing", "local_rollout_forward_batch_size")
    assert [cfg[k] for k in knobs] == [False, True, True, 4]
    assert {k: v for k, v in cfg.items() if k not in knobs} == {
        k: v for k, v in base.items() if k not in knobs
    }


def test_gpu_profile_settings_are_valid_for_trl():
    from genbench_tasks.profiles import load_profile as load
    from genbench_tasks.training.trl_ppo import check_settings, trl_settings

    profile = load("gpu-small")
    check_settings(profile)
    assert trl_settings(profile).bf16 and "trl-ppo" in profile.baselines


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ppo": {"kl_ctrl": "adaptive"}}, "ppo.kl_ctrl='adaptive'"),
        ({"ppo": {"entropy_coeff": 0.01}}, "no entropy bonus"),
        ({"ppo": {"mini_batch_size": 3}}, "not a multiple of ppo.mini_batch_size=3"),
        ({"extra": {"verl_core": {"top_p": 0.9}}}, "verl_core.top_p=0.9"),
        ({"extra": {"verl_core": {"kl_penalty": "abs"}}}, "k1 and k3 only"),
        ({"extra": {"verl_core": {"loss_agg_mode": "seq-mean-token-sum"}}}, "token mean"),
        ({"extra": {"verl_core": {"critic_warmup": 2}}}, "critic_warmup=2"),
        ({"extra": {"trl_ppo": {"vf_coeff": 1.0}}}, "extra.trl_ppo"),
        ({"extra": {"verl_core": {"train_max_samples": 4}}}, "fewer than ppo.rollout_batch_size=8"),
        ({"extra": {"trl_ppo": {"bf16": True}}}, "bf16 is for GPU runs"),
        ({"extra": {"trl_ppo": {"rollout_forward_batch_size": 3}}}, "must divide ppo.rollout_batch_size=8"),
    ],
)
def test_bad_settings_fail_with_one_line_error(ws, tmp_path, overrides, message):
    from genbench_tasks.training.trl_ppo import train_run

    profile = load_profile(str(ws["yaml"]), overrides)
    with pytest.raises(GenbenchError) as err:
        train_run(
            profile, 0, ws["data"], tmp_path / "run", init_checkpoint=ws["base"], printer=lambda _: None
        )
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_pad_token_equal_to_eos_is_refused(ws, tmp_path):
    from transformers import AutoTokenizer

    from genbench_tasks.training.trl_ppo import train_run

    ckpt = tmp_path / "pad-is-eos"
    shutil.copytree(ws["base"], ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(ckpt)
    with pytest.raises(GenbenchError, match="pad token distinct from EOS") as err:
        train_run(
            ws["profile"], 0, ws["data"], tmp_path / "run", init_checkpoint=ckpt, printer=lambda _: None
        )
    assert "\n" not in str(err.value)


# ---- the rule reward as TRL's reward model ----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:You are importing from 'trl.experimental'")
def test_rule_reward_through_trl_get_reward_equals_compute_score(ws):
    """TRL's own get_reward() on left-padded prompt + response + right padding: scores are compute_score
    of the decoded responses, whatever the padding."""
    from transformers import AutoTokenizer
    from trl.experimental.utils import get_reward

    from genbench_tasks.rewards import compute_score
    from genbench_tasks.training.common import training_prompts
    from genbench_tasks.training.sampling import left_pad
    from genbench_tasks.training.trl_ppo import RuleReward

    tok = AutoTokenizer.from_pretrained(ws["base"])
    pool = training_prompts(ws["profile"], ws["data"], tok)
    picked = [pool[0], pool[1], pool[-1]]  # both training families
    reward = RuleReward(tok, pool)
    texts = [picked[0][0].ground_truth, "no idea", picked[2][0].ground_truth * 5]  # the last is cut
    queries, _ = left_pad([ids for _, ids in picked], tok.pad_token_id)
    width = 12
    responses = torch.full((len(picked), width), tok.pad_token_id)
    expected_texts, lengths = [], []
    for i, text in enumerate(texts):
        ids = [*tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id][:width]
        responses[i, : len(ids)] = torch.tensor(ids)
        expected_texts.append(tok.decode(ids, skip_special_tokens=True))
        lengths.append(len(ids))
    _, scores, _ = get_reward(reward, torch.cat([queries, responses], 1), tok.pad_token_id, queries.shape[1])
    samples = reward.drain()
    expected = [
        compute_score(row.data_source, s["text"], row.ground_truth, row.extra_info)["score"]
        for (row, _), s in zip(picked, samples, strict=True)
    ]
    assert scores.dtype == torch.float32 and scores.tolist() == pytest.approx(expected)
    assert [s["text"] for s in samples] == expected_texts and [s["length"] for s in samples] == lengths
    assert len({row.data_source for row, _ in picked}) == 2 and reward.drain() == []
    with pytest.raises(GenbenchError, match="does not start with a training prompt"):
        get_reward(reward, torch.tensor([[5, 6, 7, 8]]), tok.pad_token_id, 2)


# ---- training runs ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_run_is_rewarded_by_our_rule(runs):
    from genbench_tasks.rewards import compute_score

    result, steps = runs("a", 0)
    assert result.steps == STEPS == len(steps) and result.backend == "trl-ppo" and result.verl_version is None
    for row, samples in steps:
        assert len(samples) == 8
        for s in samples:  # the adapter's scores are our rule on the decoded texts
            assert (
                s["score"]
                == compute_score(s["data_source"], s["text"], s["ground_truth"], s["extra_info"])["score"]
            )
        # ...and they are what TRL trained on (its objective/scores is their mean, in float32)
        assert row["trl/objective/scores"] == pytest.approx(row["reward_mean"], abs=1e-6)
        assert row["reward_mean"] == pytest.approx(sum(s["score"] for s in samples) / len(samples))
        assert {k for k in row if k.startswith("reward/")} == {"reward/reasoning", "reward/rewriting"}
        for key in (
            "policy_loss",
            "value_loss",
            "pg_clipfrac",
            "vf_clipfrac",
            "actor_grad_norm",
            "response_length",
        ):
            assert row[key] == row[key]  # finite numbers, not NaN
    first, last = steps[0][0], steps[-1][0]
    assert first["trl/objective/kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference at step 1
    assert last["trl/objective/kl"] != first["trl/objective/kl"]  # ...then it moved


@pytest.mark.slow
def test_same_seed_gives_identical_metrics_and_checkpoint(runs):
    (a, _), (b, _) = runs("a", 0), runs("b", 0)
    ma, mb = _metrics(a.run_dir), _metrics(b.run_dir)
    assert len(ma) == STEPS and ma == mb
    weights = [(Path(r.checkpoint) / "model.safetensors").read_bytes() for r in (a, b)]
    assert weights[0] == weights[1]
    manifests = [read_model(r.manifest_path, TrainManifest) for r in (a, b)]
    assert manifests[0].metrics_sha256 == manifests[1].metrics_sha256
    raw = json.loads((Path(a.run_dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert raw["step_time"] > 0
    c, _ = runs("c", 1, {"ppo": {"steps": 1}})
    assert _metrics(c.run_dir)[0] != ma[0]


@pytest.mark.slow
def test_outputs_and_manifest(runs, ws, sft):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, _ = runs("a", 0)
    run = Path(result.run_dir)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "manifest.json", "metrics.jsonl"]
    model = AutoModelForCausalLM.from_pretrained(run / "checkpoint")
    tok = AutoTokenizer.from_pretrained(run / "checkpoint")
    assert tok.pad_token_id != tok.eos_token_id == model.generation_config.eos_token_id
    m = read_model(result.manifest_path, TrainManifest)
    assert m.kind == "genbench.train_run" and m.backend == "trl-ppo" and m.seed == 0
    assert m.trl["version"] == "1.12.0" == m.packages["trl"]
    assert m.trl["trainer"] == "trl.experimental.ppo.PPOTrainer"
    assert m.trl["ppo_config"]["num_total_batches"] == STEPS
    assert "verl_version" not in m.config and "verl_versions" not in m.config["profile"]
    assert m.sft.key == sft.key and m.steps == STEPS and len(m.config_sha256) == 64
    files = load_manifest(ws["data"]).datasets
    assert m.datasets.files == {d.name: d.sha256 for d in files}
    assert m.result == result.model_dump()


@pytest.mark.slow
def test_resume_keeps_a_complete_run_and_the_worker_entry_point(runs, ws, sft):
    """The Ray jobs' one entry point (`genbench worker run CELL_DIR`) on a trl-ppo train cell: a complete run
    is kept as is; a directory that is not a cell is a one-line error (exit 2)."""
    from genbench_tasks.labels import TRL_PPO
    from genbench_tasks.pipeline.cells import CellSpec, write_spec

    result, _ = runs("a", 0)
    manifest = Path(result.manifest_path)
    before = manifest.stat().st_mtime_ns
    write_spec(
        CellSpec(
            kind="train",
            key="t" * 24,
            label=TRL_PPO,
            seed=0,
            profile=load_profile(str(ws["yaml"])).model_dump(mode="json"),
            data_dir=str(ws["data"]),
            cell_dir=result.run_dir,
            checkpoint_dir=str(Path(sft.sft_dir) / "checkpoint"),
        )
    )
    base = [sys.executable, "-m", "genbench_tasks.cli", "worker", "run"]
    proc = subprocess.run(
        [*base, result.run_dir, "--resume"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "complete: nothing to do" in proc.stdout
    done = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("GENBENCH_RESULT "))
    assert done == result.model_dump() and manifest.stat().st_mtime_ns == before
    assert (Path(result.run_dir) / "_SUCCESS").is_file()
    proc = subprocess.run([*base, str(ws["data"])], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("genbench: error: ")
    assert "not a cell directory" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_checkpoint_evaluates_with_genbench_eval(runs, ws, tmp_path):
    from genbench_tasks.artifacts.evaluation import EvalMetrics
    from genbench_tasks.cli import main

    result, _ = runs("a", 0)
    out = tmp_path / "eval" / "trl-ppo" / "seed=0"
    argv = ["eval", "--checkpoint", result.checkpoint, "--data", str(ws["data"]), "--seed", "0"]
    argv += ["--out", str(out), "--max-prompts", "2", "-k", "1", "--max-new-tokens", "16"]
    assert main(argv) == 0
    metrics = EvalMetrics.model_validate_json((out / "metrics.json").read_text())
    assert metrics.model_label == "trl-ppo" and metrics.seed == 0
    assert set(metrics.families) == {"rewriting", "reasoning", "code_generation"}
    for fam in metrics.families.values():
        assert fam.metrics.n_prompts == 2


def test_genbench_train_backend_trl_ppo_gives_the_same_run(runs, ws, sft, tmp_path, capsys):
    """`genbench train --backend trl-ppo` is the cell's training, same seed -> the same metrics."""
    from genbench_tasks.cli import main

    result, _ = runs("a", 0)
    out = tmp_path / "cli-run"
    argv = ["train", "--backend", "trl-ppo", "--profile", str(ws["yaml"]), "--seed", "0"]
    argv += ["--data", str(ws["data"]), "--sft-dir", str(sft.sft_dir), "--out", str(out)]
    assert main(argv) == 0
    assert _metrics(out) == _metrics(result.run_dir)
    assert (out / "checkpoint").is_dir() and '"backend": "trl-ppo"' in capsys.readouterr().out
