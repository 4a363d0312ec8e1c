"""Training stage (backend verl-core): tiny model, SFT, PPO determinism/resume/reward, verl 0.8.0 adapter.

Everything runs on a miniature profile (tiny model, few steps) so the module stays within a few minutes
on 2 shared cores. verl is imported once in-process (0.9.1) and once in a subprocess (0.8.0).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from genbench_tasks.artifacts.io import read_model
from genbench_tasks.artifacts.layout import CellDir
from genbench_tasks.artifacts.training import TrainManifest
from genbench_tasks.data.build import build_datasets, load_manifest
from genbench_tasks.errors import GenbenchError
from genbench_tasks.profiles import load_profile
from tests.fixtures.small_profile import MINI as SHARED_MINI

ROOT = Path(__file__).resolve().parents[1]
VERL_OLD = "0.8.0"

# The in-process verl-core loop on the miniature local-cpu (4 PPO steps of 8 prompts).
MINI = {**SHARED_MINI, "backend": "verl-core"}


def _installed_verl() -> str:
    from importlib import metadata

    return metadata.version("verl")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Data + profile YAML + shared SFT checkpoint for the module."""
    from genbench_tasks.training.sft import ensure_sft

    root = tmp_path_factory.mktemp("training")
    profile = load_profile("local-cpu", MINI)
    build_datasets(profile, root / "data")
    profile_yaml = root / "mini-cpu.yaml"
    profile_yaml.write_text(yaml.safe_dump(profile.model_dump(mode="json")))
    sft = ensure_sft(profile, root / "data", root / "sft")
    return {"root": root, "profile": profile, "yaml": profile_yaml, "data": root / "data", "sft": sft}


@pytest.fixture(scope="module")
def runs(ws):
    """Lazily computed PPO runs keyed by name (so tests can share them)."""
    from genbench_tasks.training.ppo_core import train_run

    cache: dict = {}

    def get(name: str, seed: int, overrides: dict | None = None):
        if name not in cache:
            profile = load_profile(str(ws["yaml"]), overrides)
            cache[name] = train_run(
                profile,
                _installed_verl(),
                seed,
                ws["data"],
                ws["root"] / "runs" / name,
                sft_dir=ws["root"] / "sft",
                printer=lambda line: None,
            )
        return cache[name]

    return get


def _metrics(run_dir) -> list[dict]:
    from genbench_tasks.training.outputs import deterministic_metrics, read_metrics

    return deterministic_metrics(read_metrics(Path(run_dir) / "metrics.jsonl"))


# ---- tiny model -----------------------------------------------------------------------------------------


def test_tiny_model_round_trip_via_auto_classes(ws, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genbench_tasks.training.tiny_model import build_tiny_from_data

    settings = ws["profile"].model.tiny
    a = build_tiny_from_data(settings, ws["data"], 7, tmp_path / "a")
    b = build_tiny_from_data(settings, ws["data"], 7, tmp_path / "b")
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} is not deterministic"
    c = build_tiny_from_data(settings, ws["data"], 8, tmp_path / "c")
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()

    tok = AutoTokenizer.from_pretrained(a)
    model = AutoModelForCausalLM.from_pretrained(a)
    assert model.config.vocab_size == len(tok) <= settings.vocab_size
    assert {tok.pad_token, tok.bos_token, tok.eos_token} == {"<pad>", "<s>", "</s>"}
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 42"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<s><|system|>\nBe brief.</s>\n<|user|>\nHi 42</s>\n<|assistant|>\n"
    no_gen = tok.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert not no_gen.endswith("<|assistant|>\n")
    code = "def add_3(x):\n    return x + 3\n"  # held-out family text: encodable and lossless
    assert tok.decode(tok(code, add_special_tokens=False)["input_ids"]) == code
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert ids[0, 0].item() == tok.bos_token_id
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 3 or tok.eos_token_id in out[0].tolist()


@pytest.mark.parametrize("spaces", ["own_token", "word_prefix"])
def test_tiny_tokenizer_spaces_decide_how_a_copied_word_is_tokenized(ws, tmp_path, spaces):
    """``own_token``: a word is one token in the prompt and in the answer, spaces are tokens; ``word_prefix``:
    a word after a space is one token carrying it (" rain"), so an answer's words after the first are the
    prompt's tokens. Both lossless, digits single tokens in both."""
    from transformers import AutoTokenizer

    from genbench_tasks.training.tiny_model import build_tiny_from_data

    settings = ws["profile"].model.tiny.model_copy(update={"spaces": spaces, "vocab_size": 1024})
    tok = AutoTokenizer.from_pretrained(build_tiny_from_data(settings, ws["data"], 7, tmp_path / spaces))

    def pieces(text: str) -> list[str]:
        return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])

    text = "Text: fish 12 rain, river"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert [p for p in pieces(text) if p.lstrip("Ġ").isdigit()] == ["1", "2"]
    prompt, answer = pieces("Text: fish rain"), pieces("fish rain")
    if spaces == "own_token":
        assert prompt[-3:] == answer == ["fish", "Ġ", "rain"]
    else:
        assert prompt[-2:] == ["Ġfish", "Ġrain"] and answer == ["fish", "Ġrain"]


def test_sft_is_shared_and_skipped_when_complete(ws):
    from transformers import AutoModelForCausalLM

    from genbench_tasks.training.sft import default_sft_dir, ensure_sft, sft_key

    first = ws["sft"]
    assert first.loss_last < first.loss_first
    assert {"reward_mean", "acc_mean"} <= set(first.val_sampled)
    again = ensure_sft(ws["profile"], ws["data"], first.sft_dir)
    assert again.skipped and again.key == first.key
    AutoModelForCausalLM.from_pretrained(first.checkpoint)
    # seeded by the data seed only: the key ignores PPO settings and seeds
    other = load_profile(str(ws["yaml"]), {"ppo": {"steps": 99}, "seeds": [7]})
    assert sft_key(other, ws["data"]) == first.key
    assert default_sft_dir(other, ws["data"], ws["root"] / "runs" / "x").name == f"sft-{first.key}"
    with pytest.raises(GenbenchError, match="other settings"):
        ensure_sft(load_profile(str(ws["yaml"]), {"sft": {"steps": 151}}), ws["data"], first.sft_dir)


def test_sft_runs_with_the_profiles_threads_which_are_part_of_its_key(ws, monkeypatch, tmp_path):
    """The thread count changes an SFT's floats, so it is a setting (``sft.threads``) in the cache key, and
    the SFT runs with exactly that many torch threads (restored afterwards)."""
    import torch

    from genbench_tasks.training import sft as sft_module

    two = load_profile(str(ws["yaml"]), {"sft": {"threads": 2}})
    one = load_profile(str(ws["yaml"]), {"sft": {"threads": 1}})
    assert sft_module.sft_key(two, ws["data"]) != sft_module.sft_key(one, ws["data"])
    seen = []
    monkeypatch.setattr(sft_module, "_run_sft", lambda *a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    for profile in (two, one):
        sft_module.run_sft(profile, ws["data"], tmp_path / "sft")
    assert seen == [2, 1] and torch.get_num_threads() == before
    with pytest.raises(GenbenchError, match=r"sft\.threads"):
        load_profile(str(ws["yaml"]), {"sft": {"threads": 0}})


# ---- PPO ------------------------------------------------------------------------------------------------


def test_same_seed_bit_identical_different_seed_differs(runs):
    a, b, c = runs("a", 0), runs("b", 0), runs("c", 1)
    ma, mb, mc = _metrics(a.run_dir), _metrics(b.run_dir), _metrics(c.run_dir)
    assert len(ma) == 4 and [m["step"] for m in ma] == [1, 2, 3, 4]
    assert ma == mb
    assert ma != mc
    for key in ("reward_mean", "kl", "policy_loss", "value_loss", "entropy", "response_length"):
        assert key in ma[0]
    raw = json.loads((Path(a.run_dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert raw["step_time"] > 0
    ma_manifest = read_model(a.manifest_path, TrainManifest)
    mb_manifest = read_model(b.manifest_path, TrainManifest)
    assert ma_manifest.metrics_sha256 == mb_manifest.metrics_sha256


def test_outputs_and_manifest_record_verl_functions(runs, ws):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a = runs("a", 0)
    run = Path(a.run_dir)
    AutoModelForCausalLM.from_pretrained(run / "checkpoint")
    AutoTokenizer.from_pretrained(run / "checkpoint")
    assert sorted(p.name for p in (run / "state").iterdir()) == ["step_2", "step_4"]
    for part in ("policy", "critic", "optim.pt", "rng.pt", "state.json"):
        assert (run / "state" / "step_4" / part).exists()
    m = read_model(a.manifest_path, TrainManifest)
    assert m.verl["version"] == _installed_verl() == m.config["verl_version"]
    names = {f["name"] for f in m.verl["functions"]}
    core = "verl.trainer.ppo.core_algos."
    for fn in (
        "compute_gae_advantage_return",
        "compute_policy_loss_vanilla",
        "compute_value_loss",
        "kl_penalty",
        "get_kl_controller",
        "FixedKLController.update",
        "agg_loss",
    ):
        assert core + fn in names, fn
    assert "verl.protocol.DataProto.from_dict" in names
    assert m.verl["actor_config"] == "verl.workers.config.actor.ActorConfig"
    assert all(f["calls"] > 0 for f in m.verl["functions"])
    assert len(m.config_sha256) == 64 and m.seed == 0
    assert m.datasets.files == {d.name: d.sha256 for d in load_manifest(ws["data"]).datasets}
    assert m.packages["torch"] and m.packages["transformers"]
    assert m.peak_rss_mb > 0 and m.wall_time_s > 0 and m.steps == 4
    assert m.sft.key == ws["sft"].key


def test_resume_continues_from_last_complete_state(runs, ws):
    from genbench_tasks.training.ppo_core import InterruptedRun, latest_state, train_run

    reference = runs("a", 0)
    out = ws["root"] / "runs" / "resumed"
    profile = load_profile(str(ws["yaml"]))
    kw = {"sft_dir": ws["root"] / "sft", "printer": lambda line: None}
    with pytest.raises(InterruptedRun):  # "killed" after step 3; last complete state is step_2
        train_run(profile, _installed_verl(), 0, ws["data"], out, stop_after_step=3, **kw)
    assert len(_metrics(out)) == 3
    (out / "state" / ".step_4-partial").mkdir()  # an interrupted write is never picked up
    assert latest_state(out).name == "step_2"
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "reward_me')  # torn line of a killed writer
    result = train_run(profile, _installed_verl(), 0, ws["data"], out, resume=True, **kw)
    assert not (out / "state" / ".step_4-partial").exists()
    changed = load_profile(str(ws["yaml"]), {"ppo": {"actor_lr": 1.0e-2}})
    with pytest.raises(GenbenchError, match="another config"):
        train_run(changed, _installed_verl(), 0, ws["data"], out, resume=True, **kw)
    assert result.resumed_from_step == 2
    assert _metrics(out) == _metrics(reference.run_dir)
    from safetensors.torch import load_file

    got = load_file(out / "checkpoint" / "model.safetensors")
    want = load_file(Path(reference.run_dir) / "checkpoint" / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


@pytest.mark.slow
def test_reward_rises_on_a_short_run(runs):
    """Mean training reward of the last quarter of steps beats the first quarter.

    PPO runs on a fixed pool of 16 training prompts (`train_max_samples`), so each prompt is revisited
    every step and what PPO learns shows up within 30 steps (seeds 0/1/2 gave +0.052/+0.023/+0.022 here).
    Runs are bit-reproducible, so this is a deterministic check with a 5x margin, not a flaky one.
    """
    result = runs(
        "rise",
        0,
        {
            "ppo": {
                "steps": 30,
                "rollout_batch_size": 16,
                "mini_batch_size": 8,
                "ppo_epochs": 2,
                "actor_lr": 1.0e-3,
                "critic_lr": 2.0e-3,
                "lam": 1.0,
                "save_freq": 100,
            },
            "extra": {"verl_core": {"train_max_samples": 16}},
        },
    )
    rewards = [m["reward_mean"] for m in _metrics(result.run_dir)]
    q = len(rewards) // 4
    first, last = sum(rewards[:q]) / q, sum(rewards[-q:]) / q
    assert last > first + 0.01, (first, last, rewards)


def _train_cell(ws, out: Path, verl_version: str, steps: int | None = None) -> list[str]:
    """Write OUT/cell.json for a verl-core train cell (init: the shared SFT checkpoint); returns the
    command the Ray job of that cell runs (the one worker entry point)."""
    from genbench_tasks.pipeline.cells import CellSpec, write_spec

    profile = load_profile(str(ws["yaml"]), {"ppo": {"steps": steps}} if steps else None)
    write_spec(
        CellSpec(
            kind="train",
            key="c" * 24,
            label=verl_version,
            seed=0,
            verl_version=verl_version,
            profile=profile.model_dump(mode="json"),
            data_dir=str(ws["data"]),
            cell_dir=str(out),
            checkpoint_dir=str(ws["root"] / "sft" / "checkpoint"),
        )
    )
    return [sys.executable, "-m", "genbench_tasks.cli", "worker", "run", str(out)]


@pytest.mark.slow
def test_worker_entry_point_killed_then_resumed(ws, runs):
    """SIGKILL the `genbench worker run CELL_DIR` process after its step-2 checkpoint, rerun it as a Ray retry
    would (`--resume`): it continues from state/step_N and ends with the uninterrupted run's metrics."""
    import signal
    import time

    out = ws["root"] / "runs" / "killed"
    cmd = _train_cell(ws, out, _installed_verl(), steps=40)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    deadline = time.time() + 600
    for line in proc.stdout:
        if line.startswith("[genbench] step 3/40") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done = sorted(int(p.name.split("_")[1]) for p in (out / "state").glob("step_*"))
    assert done and done[-1] < 40 and not (out / "_SUCCESS").exists()
    _train_cell(ws, out, _installed_verl(), steps=4)
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / 'state' / f'step_{done[-1]}'}" in resumed.stdout
    assert _metrics(out) == _metrics(runs("a", 0).run_dir)
    assert (out / "_SUCCESS").is_file()


# ---- verl versions --------------------------------------------------------------------------------------


def test_version_mismatch_fails_fast(ws, capsys):
    from genbench_tasks.cli import main

    out = ws["root"] / "runs" / "mismatch"
    _train_cell(ws, out, "0.0.1")
    assert main(["worker", "run", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "expects verl 0.0.1" in err and _installed_verl() in err and "\n" not in err
    assert not (out / "metrics.jsonl").exists()


def _verl_old_dir() -> Path:
    """verl 0.8.0 importable via PYTHONPATH: env override, an unpacked copy, or pip --target into a cache."""
    candidates = [os.environ.get("GENBENCH_VERL080_DIR"), "/tmp/verl080"]
    cache = Path(os.environ.get("GENBENCH_CACHE", Path.home() / ".cache" / "genbench")) / f"verl-{VERL_OLD}"
    candidates.append(str(cache))
    for cand in candidates:
        if cand and (Path(cand) / f"verl-{VERL_OLD}.dist-info").is_dir() and (Path(cand) / "verl").is_dir():
            return Path(cand)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(tmp),
            f"verl=={VERL_OLD}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot install verl=={VERL_OLD}: {proc.stderr.strip().splitlines()[-1:]}")
    os.replace(tmp, cache)
    return cache


@pytest.mark.slow
def test_adapter_runs_ppo_on_verl_080_in_subprocess(ws, runs):
    """The same run under verl 0.8.0 (the worker entry point, as a Ray job would start it)."""
    old = _verl_old_dir()
    out = ws["root"] / "runs" / "verl080"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(old), str(ROOT)])}
    proc = subprocess.run(
        _train_cell(ws, out, VERL_OLD),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[genbench] step 4/4" in proc.stdout  # per-step progress on stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("GENBENCH_RESULT "))
    assert result["verl_version"] == VERL_OLD
    m = read_model(CellDir(out).manifest, TrainManifest)
    assert m.verl["version"] == VERL_OLD and str(old) in m.verl["path"]
    assert m.verl["value_loss_kwargs"] == []  # 0.8.0: no dp_size/batch_num_tokens/...
    assert m.verl["actor_config"] == "verl.workers.config.actor.ActorConfig"
    names = {f["name"] for f in m.verl["functions"]}
    assert "verl.trainer.ppo.core_algos.compute_policy_loss_vanilla" in names
    new = runs("a", 0)
    new_manifest = read_model(new.manifest_path, TrainManifest)
    from verl.trainer.ppo import core_algos

    has_dp = "dp_size" in inspect.signature(core_algos.compute_value_loss).parameters
    assert new_manifest.verl["value_loss_kwargs"] == (["dp_size"] if has_dp else [])
    # The functions used have the same math in 0.8.0 and 0.9.1: identical training metrics.
    assert _metrics(out) == _metrics(new.run_dir)


# ---- CLI ------------------------------------------------------------------------------------------------


def test_cli_train_has_no_second_ray_launch_path(ws, capsys):
    """Ray jobs go through the DAG's launcher and `genbench worker run`; `genbench train` runs in-process."""
    from genbench_tasks.cli import main

    code = main(
        ["train", "--profile", str(ws["yaml"]), "--verl-version", "0.9.1", "--seed", "0"]
        + ["--out", str(ws["root"] / "runs" / "ray"), "--ray-address", "http://ray:8265"]
    )
    assert code == 2 and "--ray-address" in capsys.readouterr().err
