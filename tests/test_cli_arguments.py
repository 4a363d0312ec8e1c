"""Every command refuses bad arguments with one `genbench: error:` line (exit 2) before doing any work."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from genbench_tasks.cli import build_parser, main


def run_main(capsys, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(capsys, argv: list, needle: str) -> str:
    started = time.monotonic()
    code, _, err = run_main(capsys, *argv)
    lines = [line for line in err.splitlines() if line.startswith("genbench: error:")]
    assert code == 2, (code, err)
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err and "usage:" not in err
    assert time.monotonic() - started < 10  # refused up front, not after a minute of work
    return lines[0]


@pytest.fixture
def afile(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("x")
    return path


def bad_argument_cases(tmp: Path, afile: Path) -> dict[str, tuple[list, str]]:
    jsonl = tmp / "in.jsonl"
    jsonl.write_text("")
    out = tmp / "out"
    return {
        "train negative seed": (["train", "--verl-version", "0.9.1", "--seed", "-1", "--out", out], "--seed"),
        "train seed not a number": (["train", "--verl-version", "0.9.1", "--seed", "x", "--out", out], "integer"),
        "train version": (["train", "--verl-version", "latest", "--seed", "0", "--out", out], "--verl-version"),
        "train without version": (["train", "--seed", "0", "--out", out], "--verl-version is required"),
        "train trl-ppo with a verl version": (
            ["train", "--backend", "trl-ppo", "--verl-version", "0.9.1", "--seed", "0", "--out", out],
            "verl/verl-core only",
        ),
        "train verl with --resume": (
            ["train", "--backend", "verl", "--verl-version", "0.9.1", "--seed", "0", "--out", out, "--resume"],
            "always resumes",
        ),
        "train unknown backend": (["train", "--backend", "openrlhf", "--seed", "0", "--out", out], "--backend"),
        "train overrides not json": (
            ["train", "--verl-version", "0.9.1", "--seed", "0", "--out", out, "--overrides", "{ppo"],
            "not valid JSON",
        ),
        "train overrides bad profile": (
            ["train", "--verl-version", "0.9.1", "--seed", "0", "--out", out, "--overrides", '{"ppo": {"steps": "x"}}'],
            "invalid profile",
        ),
        "train no ray launch path": (
            ["train", "--verl-version", "0.9.1", "--seed", "0", "--out", out, "--ray-address", "x"],
            "unrecognized arguments: --ray-address",
        ),
        "score workers 0": (["score", "--in", jsonl, "--out", out, "--workers", "0"], "--workers"),
        "score chunk -5": (["score", "--in", jsonl, "--out", out, "--chunk", "-5"], "--chunk"),
        "score missing input": (["score", "--in", tmp / "nope.jsonl", "--out", out], "no such file"),
        "score input is a directory": (["score", "--in", tmp, "--out", out], "not a file"),
        "data build seed": (["data", "build", "--out", out, "--seed", "-2"], "--seed"),
        "check-config seed": (["check-config", "--seed", "-3"], "--seed"),
        "check-config version": (["check-config", "--verl-version", "0.9.x"], "--verl-version"),
        "check-config override": (["check-config", "--override", "no-equals"], "KEY=VALUE"),
        "eval seed": (["eval", "--checkpoint", tmp, "--seed", "-1", "--out", out], "--seed"),
        "eval samples": (["eval", "--checkpoint", tmp, "--seed", "0", "--out", out, "-k", "0"], "-k"),
        "eval top-p": (["eval", "--checkpoint", tmp, "--seed", "0", "--out", out, "--top-p", "1.5"], "--top-p"),
        "eval temperature": (
            ["eval", "--checkpoint", tmp, "--seed", "0", "--out", out, "--temperature", "nan"],
            "--temperature",
        ),
        "eval threads": (["eval", "--checkpoint", tmp, "--seed", "0", "--out", out, "--threads", "0"], "--threads"),
        "aggregate missing rundir": (["aggregate", tmp / "nope"], "does not exist"),
        "aggregate seeds": (["aggregate", tmp, "--seeds", "0", "-1"], "--seeds"),
        "compare alpha": (["compare", tmp, "--alpha", "1"], "--alpha"),
        "compare rundir is a file": (["compare", afile], "is not a directory"),
        "publish endpoint": (["publish", tmp, "s3://bucket/x", "--endpoint-url", "not a url"], "--endpoint-url"),
        "publish endpoint scheme": (
            ["publish", tmp, "s3://bucket/x", "--endpoint-url", "ftp://host"],
            "http(s)://host",
        ),
        "publish endpoint port": (
            ["publish", tmp, "s3://bucket/x", "--endpoint-url", "http://host:99999"],
            "--endpoint-url",
        ),
        "publish workers": (["publish", tmp, "s3://bucket/x", "--workers", "0"], "--workers"),
        "publish part size": (["publish", tmp, "s3://bucket/x", "--multipart-threshold-mb", "1"], "between 5"),
        "presign expires": (["presign", "s3://bucket/x", "--expires", "0"], "between 1 and 604800"),
        "presign empty connection": (["presign", "s3://bucket/x", "--aws-conn-id", ""], "--aws-conn-id"),
        "detect endpoint": (["detect", "--history", tmp, "--endpoint-url", "not a url"], "--endpoint-url"),
        "detect baseline": (["detect", "--history", tmp, "--baseline", " "], "--baseline"),
        "history rebuild endpoint": (
            ["history", "rebuild", tmp, "--out", out, "--endpoint-url", "ftp://host"],
            "http(s)://host",
        ),
        "worker run missing cell dir": (["worker", "run", tmp / "nope"], "does not exist"),
        "worker step": (["worker", "bogus"], "invalid choice"),
        "unknown option": (["tasks", "list", "--bogus"], "unrecognized arguments: --bogus"),
        "unknown command": (["bogus"], "invalid choice"),
    }  # fmt: skip


CASE_NAMES = sorted(bad_argument_cases(Path("/"), Path("/")))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_arguments_are_one_line(capsys, tmp_path: Path, afile: Path, case: str) -> None:
    argv, needle = bad_argument_cases(tmp_path, afile)[case]
    assert_refused(capsys, argv, needle)
    assert not (tmp_path / "out").exists()  # nothing was created


def test_every_subcommand_has_a_case() -> None:
    """New commands (demo, an engineer's `up`) aside, each subcommand with options is covered above."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    covered = {name.split()[0] for name in CASE_NAMES} | {"tasks", "data", "demo", "up", "presign"}
    assert set(sub.choices) <= covered, sorted(set(sub.choices) - covered)


# --- output paths: created and checked up front ---------------------------------------------------------


def test_unwritable_outputs_fail_before_work(capsys, tmp_path: Path, afile: Path) -> None:
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(
        json.dumps({"data_source": "genbench/rewriting", "solution_str": "a", "ground_truth": "a"})
    )
    under_file = afile / "sub"
    cases = [
        (["train", "--verl-version", "0.9.1", "--seed", "0", "--out", under_file], "is a file, not a directory"),
        (["train", "--verl-version", "0.9.1", "--seed", "0", "--out", tmp_path / "ok", "--sft-dir", under_file],
         "--sft-dir"),
        (["train", "--verl-version", "0.9.1", "--seed", "0", "--out", tmp_path / "t", "--data", tmp_path / "none"],
         "cannot read"),
        (["score", "--in", jsonl, "--out", under_file / "o.jsonl"], "is a file, not a directory"),
        (["score", "--in", jsonl, "--out", tmp_path], "is a directory, expected a file path"),
        (["data", "validate", tmp_path, "--report", under_file], "--report"),
        (["check-config", "--cache-dir", under_file], "--cache-dir"),
        (["eval", "--checkpoint", tmp_path, "--seed", "0", "--out", under_file, "--data", tmp_path], "--out"),
        (["compare", tmp_path, "--out", tmp_path], "is a directory"),
    ]  # fmt: skip
    for argv, needle in cases:
        line = assert_refused(capsys, argv, needle)
        assert "cannot write to" in line or "cannot read" in line, line
    assert not (tmp_path / "t").exists()  # --data checked before --out is created


def test_train_configuration_errors_come_before_any_output(capsys, tmp_path: Path) -> None:
    bad_profile = tmp_path / "p.yaml"
    bad_profile.write_text("name: p\ndata: {families: [poetry], sizes: {poetry: {train: 1}}}\n")
    out = tmp_path / "run"
    argv = ["train", "--profile", bad_profile, "--verl-version", "0.9.1", "--seed", "0", "--out", out]
    assert_refused(capsys, argv, "unknown task family 'poetry'")
    assert not out.exists()


# --- score: every input line is checked before scoring ----------------------------------------------------

GOOD = {"data_source": "genbench/rewriting", "solution_str": "a b", "ground_truth": "a b"}
BAD_LINES = {
    "null solution_str": ({**GOOD, "solution_str": None}, "field 'solution_str' must be a string, got null"),
    "null ground_truth": ({**GOOD, "ground_truth": None}, "field 'ground_truth' must be a string, got null"),
    "list ground_truth": ({**GOOD, "ground_truth": [1]}, "field 'ground_truth' must be a string, got list"),
    "numeric data_source": ({**GOOD, "data_source": 3}, "field 'data_source' must be a string, got int"),
    "unknown data_source": ({**GOOD, "data_source": "x/y"}, "no task family scores data_source 'x/y'"),
    "extra_info a string": ({**GOOD, "extra_info": "s"}, "field 'extra_info' must be an object or null"),
    "not an object": ([1, 2], "expected a JSON object, got list"),
    "missing field": ({"data_source": "genbench/rewriting"}, "missing field(s) solution_str, ground_truth"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_score_refuses_bad_lines_before_scoring(capsys, tmp_path: Path, case: str) -> None:
    row, needle = BAD_LINES[case]
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(row) + "\n")
    line = assert_refused(capsys, ["score", "--in", path, "--out", tmp_path / "o.jsonl"], needle)
    assert f"{path}:2:" in line
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.partial").exists()


def test_score_refuses_invalid_utf8(capsys, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"data_source": "\xff"}\n')
    assert_refused(
        capsys, ["score", "--in", path, "--out", tmp_path / "o.jsonl"], f"{path}:2: not valid UTF-8"
    )


def test_score_code_ground_truth_object_and_sandbox_report(capsys, tmp_path: Path) -> None:
    truth = {"test": "def check(candidate):\n    assert candidate(2) == 3\n", "entry_point": "inc"}
    rows = [
        {"data_source": "genbench/code_generation", "solution_str": "def inc(x):\n    return x + 1\n",
         "ground_truth": truth},
        GOOD,
    ]  # fmt: skip
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run_main(capsys, "score", "--in", path, "--out", tmp_path / "o.jsonl")
    assert code == 0, err
    scored = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in scored] == [True, True]
    assert "scored 2 samples, passed 2 (sandbox: " in err  # which isolation ran


def test_endpoint_from_the_environment_is_checked(capsys, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "not a url")
    line = assert_refused(capsys, ["presign", "s3://bucket/key"], "S3 endpoint 'not a url'")
    assert "AWS_ENDPOINT_URL_S3" in line
