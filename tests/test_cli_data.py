"""`genbench data build|validate` and `genbench tasks list`: success paths and every error path.

Errors are one `genbench: error:` line on stderr, never a traceback: exit 2 for bad input (GenbenchError),
exit 1 when the data fails validation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from genbench_tasks.artifacts.io import read_model
from genbench_tasks.artifacts.layout import RunLayout
from genbench_tasks.artifacts.validation import ValidationReport
from genbench_tasks.cli import main
from genbench_tasks.data.build import MANIFEST_NAME, build_datasets, load_manifest
from genbench_tasks.hashing import file_sha256
from genbench_tasks.profiles import load_profile

_SCRIPT = Path(sys.executable).with_name("genbench")
GENBENCH = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "genbench_tasks.cli"]
TINY = {
    "name": "tiny",
    "data": {
        "families": ["rewriting", "code_generation"],
        "sizes": {"rewriting": {"train": 8, "val": 0, "test": 4}, "code_generation": {"test": 4}},
    },
}


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*GENBENCH, *map(str, args)], capture_output=True, text=True, timeout=300)


def assert_error(result: subprocess.CompletedProcess, needle: str, code: int = 2) -> str:
    """Exit code, no traceback, exactly one `genbench: error:` line containing `needle`."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("genbench: error:")]
    assert len(errors) == 1, result.stderr
    assert needle in errors[0], errors[0]
    assert result.returncode == code, (result.returncode, result.stderr)
    return errors[0]


def write_profile(path: Path, **data) -> Path:
    raw = json.loads(json.dumps(TINY))
    raw["data"].update(data)
    path.write_text(yaml.safe_dump(raw))
    return path


def replace_table(data_dir: Path, rel: str, table: pa.Table) -> None:
    """Rewrite one dataset and keep the manifest consistent (rows, sha256), as a buggy builder would."""
    pq.write_table(table, data_dir / rel)
    manifest = json.loads((data_dir / MANIFEST_NAME).read_text())
    for entry in manifest["datasets"]:
        if entry["path"] == rel:
            entry.update(rows=table.num_rows, sha256=file_sha256(data_dir / rel))
    (data_dir / MANIFEST_NAME).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    build_datasets(load_profile("local", {"data": TINY["data"]}), out)
    return out


@pytest.fixture
def data_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_dir, tmp_path / "data"))


# --- tasks list ------------------------------------------------------------------------------------------


def test_tasks_list() -> None:
    result = run("tasks", "list")
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == ["rewriting", "reasoning", "code_generation", "humaneval"]


def test_tasks_list_usage_error() -> None:
    assert_error(run("tasks", "list", "--bogus"), "unrecognized arguments: --bogus")


# --- data build ------------------------------------------------------------------------------------------


def test_build_with_validation(tmp_path: Path) -> None:
    """The real path: build, then GX validation in a fresh process (exit 0, JSON + HTML report)."""
    out = tmp_path / "out"
    result = run(
        "data", "build", "--profile", write_profile(tmp_path / "tiny.yaml"), "--out", out, "--data-docs"
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "validation: passed" in result.stdout
    assert read_model(RunLayout(out).validation_report, ValidationReport).success is True
    assert (out / "validation" / "html" / "index.html").is_file()
    assert len(load_manifest(out).datasets) == 6


def test_build_no_validate_and_seed_override(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "tiny.yaml")
    result = run(
        "data", "build", "--profile", profile, "--out", tmp_path / "a", "--seed", "7", "--no-validate"
    )
    assert result.returncode == 0, result.stderr
    assert "rewriting/train" in result.stdout and not (tmp_path / "a" / "validation").exists()
    assert load_manifest(tmp_path / "a").seed == 7


def test_build_unknown_profile(tmp_path: Path) -> None:
    assert_error(run("data", "build", "--profile", "nope", "--out", tmp_path), "unknown profile 'nope'")


def test_build_missing_profile_file(tmp_path: Path) -> None:
    result = run("data", "build", "--profile", tmp_path / "missing.yaml", "--out", tmp_path / "o")
    assert_error(result, "profile file not found")


def test_build_invalid_profile(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "bad.yaml", seeed=3)
    assert_error(run("data", "build", "--profile", profile, "--out", tmp_path / "o"), "invalid profile")


def test_build_unknown_task_family_in_profile(tmp_path: Path) -> None:
    sizes = {"rewriting": {"train": 2, "test": 2}, "poetry": {"test": 2}}
    profile = write_profile(tmp_path / "bad.yaml", families=["rewriting", "poetry"], sizes=sizes)
    assert_error(
        run("data", "build", "--profile", profile, "--out", tmp_path / "o"), "unknown task family 'poetry'"
    )
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_build_unwritable_output(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    profile = write_profile(tmp_path / "tiny.yaml")
    assert_error(
        run("data", "build", "--profile", profile, "--out", tmp_path / "file" / "out"), "cannot write to"
    )


@pytest.mark.parametrize(
    ("filename", "content", "field_map", "needle"),
    [
        ("junk.parquet", b"definitely not parquet", None, "not a valid parquet file"),
        ("empty.parquet", b"", None, "not a valid parquet file"),
        (
            "cols.parquet",
            None,
            {"prompt": "question", "reference": "answer"},
            "row 0 has no column 'question'",
        ),
        ("missing.jsonl", None, None, "no such file"),
    ],
    ids=["malformed-parquet", "empty-parquet", "missing-columns", "unreadable-path"],
)
def test_build_bad_user_data(tmp_path: Path, filename: str, content, field_map, needle: str) -> None:
    path = tmp_path / filename
    if content is not None:
        path.write_bytes(content)
    elif filename.endswith(".parquet"):
        pq.write_table(pa.table({"prompt": ["Say hi."], "answer": ["hi"]}), path)
    spec = {"name": "mine", "family": "rewriting", "uri": str(path)}
    if field_map:
        spec["field_map"] = field_map
    profile = write_profile(tmp_path / "p.yaml", custom=[spec])
    assert_error(run("data", "build", "--profile", profile, "--out", tmp_path / "o", "--no-validate"), needle)


# --- data validate ---------------------------------------------------------------------------------------


def test_validate_unreadable_path(tmp_path: Path) -> None:
    assert_error(run("data", "validate", tmp_path / "nope"), "not a directory")


def test_validate_missing_manifest(tmp_path: Path) -> None:
    assert_error(run("data", "validate", tmp_path), "has no datasets.json")


def test_validate_unknown_profile(data_copy: Path) -> None:
    assert_error(run("data", "validate", data_copy, "--profile", "nope"), "unknown profile 'nope'")


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda p: p.write_bytes(b"PAR1 not really"), "not a valid parquet file"),
        (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        (lambda p: p.unlink(), "does not exist"),
        (lambda p: pq.write_table(pq.read_table(p).slice(2), p), "does not match datasets.json"),
    ],
    ids=["malformed-parquet", "empty-parquet", "missing-file", "sha256-mismatch"],
)
def test_validate_damaged_files(data_copy: Path, damage, needle: str) -> None:
    damage(data_copy / "rl/rewriting/train.parquet")
    line = assert_error(run("data", "validate", data_copy), needle)
    assert "rewriting/train.parquet" in line


def test_validate_missing_columns(data_copy: Path) -> None:
    rel = "sft/rewriting/test.parquet"
    replace_table(
        data_copy, rel, pq.read_table(data_copy / rel).rename_columns(["id", "data_source", "q", "a"])
    )
    line = assert_error(run("data", "validate", data_copy), "missing columns ['prompt', 'response']")
    assert rel in line


def test_validate_failure_exits_1_with_summary(data_copy: Path, capsys) -> None:
    """In-process (GX is already imported by the validation tests): exit 1, summary, one error line."""
    rel = "rl/rewriting/test.parquet"
    table = pq.read_table(data_copy / rel)
    source = table["data_source"].to_pylist()
    source[1] = "genbench/other"
    replace_table(data_copy, rel, table.set_column(0, "data_source", pa.array(source)))
    code = main(["data", "validate", str(data_copy), "--report", str(data_copy / "rep")])
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out) == {"success": False, "report": str(data_copy / "rep" / "validation_report.json")}
    assert "validation FAILED: 5/6 datasets valid" in err
    assert "rewriting/test: expect_column_values_to_be_in_set [data_source]" in err
    errors = [line for line in err.splitlines() if line.startswith("genbench: error:")]
    assert len(errors) == 1 and "genbench/other" in errors[0] and "rewriting/test" in errors[0]


# --- exit codes: 1 = invalid data (with a report), 2 = unreadable or inconsistent input ---------------------


def _undecodable_prompt(table: pa.Table) -> pa.Table:
    """Row 1's user turn holds bytes that are not UTF-8 (the parquet string column is not validated)."""
    prompts = table["prompt"].combine_chunks()
    messages = prompts.flatten()
    raw = messages.field("content").cast(pa.binary()).to_pylist()
    raw[3] = b"Rewrite \xc3\x28 this"
    content = pa.array(raw, pa.binary()).view(pa.string())
    structs = pa.StructArray.from_arrays([messages.field("role"), content], ["role", "content"])
    return table.set_column(0 + 1, "prompt", pa.ListArray.from_arrays(prompts.offsets, structs))


def _plain_string_prompts(table: pa.Table) -> pa.Table:
    values = [[m["content"] for m in row] for row in table["prompt"].to_pylist()]
    return table.set_column(1, "prompt", pa.array(values, pa.list_(pa.string())))


def _manifest(data_dir: Path, edit) -> None:
    raw = json.loads((data_dir / MANIFEST_NAME).read_text())
    edit(raw)
    (data_dir / MANIFEST_NAME).write_text(json.dumps(raw))


def test_validate_invalid_utf8_exits_1_without_traceback(data_copy: Path) -> None:
    rel = "rl/rewriting/train.parquet"
    replace_table(data_copy, rel, _undecodable_prompt(pq.read_table(data_copy / rel)))
    result = run("data", "validate", data_copy)
    line = assert_error(result, "text_is_valid_utf8", code=1)
    assert "rewriting/train" in line and "prompt.content" in line and "row 1" in line


VALIDATE_CASES = {
    "prompt of plain strings": (
        lambda d: replace_table(d, "rl/rewriting/test.parquet", _plain_string_prompts(pq.read_table(d / "rl/rewriting/test.parquet"))),
        1, "rewriting/test: arrow_schema_matches: wrong types: prompt: list<element: string>"),
    "held-out family removed": (
        lambda d: _manifest(d, lambda m: m.update(
            families=["rewriting"], datasets=[e for e in m["datasets"] if e["family"] == "rewriting"])),
        1, "heldout_family_present"),
    "same entry twice": (lambda d: _manifest(d, lambda m: m["datasets"].append(m["datasets"][1])),
                         2, "datasets[6] (rewriting/train.sft): repeats the name of datasets[1]"),
    "path outside the directory": (
        lambda d: _manifest(d, lambda m: m["datasets"][0].update(path="../../etc/passwd")),
        2, "field 'path' '../../etc/passwd' points outside the data directory"),
    "manifest field of the wrong type": (
        lambda d: _manifest(d, lambda m: m["datasets"][2].update(rows=None)),
        2, "datasets[2] (rewriting/test): field 'rows': Input should be a valid integer"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(VALIDATE_CASES))
def test_validate_exit_codes(data_copy: Path, capsys, case: str) -> None:
    damage, code, needle = VALIDATE_CASES[case]
    damage(data_copy)
    assert main(["data", "validate", str(data_copy)]) == code
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("genbench: error:")]
    assert len(errors) == 1 and needle in errors[0], err
    if code == 1:  # the report is written and named
        assert json.loads(out) == {
            "success": False,
            "report": str(data_copy / "validation" / "validation_report.json"),
        }
    else:
        assert out == "" and not (data_copy / "validation").exists()
