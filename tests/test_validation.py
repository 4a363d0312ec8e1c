"""Validation: GX suites on good and bad data, cross-split checks, structural errors, reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genbench_tasks.artifacts.io import read_model
from genbench_tasks.data.build import (
    MANIFEST_NAME,
    DatasetManifest,
    build_datasets,
    load_manifest,
)
from genbench_tasks.errors import DataValidationError, GenbenchError
from genbench_tasks.hashing import file_sha256
from genbench_tasks.profiles import Profile, load_profile
from genbench_tasks.validation import (
    TextItem,
    ValidationReport,
    heldout_leak_check,
    ngram_contamination_check,
    validate_dataset_dir,
    word_tokens,
)

SIZES = {
    "rewriting": {"train": 24, "val": 4, "test": 4},
    "reasoning": {"train": 24, "val": 0, "test": 4},
    "code_generation": {"train": 0, "val": 0, "test": 6},
}


def small_profile(**sizes) -> Profile:
    return load_profile("local", {"data": {"sizes": {**SIZES, **sizes}}})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    build_datasets(small_profile(), out)
    return out


def subset(
    src: Path,
    dst: Path,
    names: list[str],
    edit: dict[str, Callable[[pa.Table], pa.Table]] | None = None,
) -> Path:
    """Copy some datasets of `src` into `dst` with a consistent manifest (rows, sha256), optionally editing
    tables first: this simulates a builder that wrote bad data, which must fail the suites, not the sha check."""
    manifest = load_manifest(src)
    entries = []
    for name in names:
        entry = next(e for e in manifest.datasets if e.name == name)
        target = dst / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if edit and name in edit:
            table = edit[name](pq.read_table(src / entry.path))
            pq.write_table(table, target)
            entry = entry.model_copy(update={"rows": table.num_rows, "sha256": file_sha256(target)})
        else:
            shutil.copyfile(src / entry.path, target)
        entries.append(entry)
    families = [f for f in manifest.families if any(e.family == f for e in entries)]
    out = DatasetManifest(profile=manifest.profile, seed=manifest.seed, families=families, datasets=entries)
    (dst / MANIFEST_NAME).write_text(out.model_dump_json(indent=2))
    return dst


def set_column(table: pa.Table, name: str, values: list) -> pa.Table:
    field = table.schema.field(name)
    return table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))


def edit_rows(table: pa.Table, column: str, fn: Callable[[int, dict | str], object]) -> pa.Table:
    return set_column(table, column, [fn(i, v) for i, v in enumerate(table[column].to_pylist())])


def with_user_text(i_target: int, text: str | None):
    def fn(i, messages):
        return [m if m["role"] != "user" or i != i_target else {**m, "content": text} for m in messages]

    return fn


def failed_report(exc: DataValidationError) -> ValidationReport:
    return ValidationReport.model_validate(exc.report)


# --- good data -------------------------------------------------------------------------------------------


def test_good_data_passes(built: Path) -> None:
    report = validate_dataset_dir(built, profile=small_profile(), raise_on_failure=True, build_html=False)
    assert report.success, report.summary()
    assert len(report.datasets) == 2 * 6 and report.html_dir is None
    assert all(d.success and d.expectations_evaluated > 10 for d in report.datasets)
    assert [c.name for c in report.cross_checks] == [
        "heldout_prompt_leak",
        "ngram_contamination",
        "near_duplicates",
        "ids_unique_across_splits",
        "heldout_family_present",
    ]
    assert report.sandbox  # the 6 code_generation reference solutions ran, and the report says where
    assert report.report_path == built / "validation" / "validation_report.json"
    on_disk = read_model(report.report_path, ValidationReport)
    assert on_disk.success is True and len(on_disk.datasets) == 12
    ngram = next(c for c in report.cross_checks if c.name == "ngram_contamination")
    assert ngram.stats["n"] == 13 and list(ngram.stats["per_dataset"]) == ["code_generation/test"]
    leak = next(c for c in report.cross_checks if c.name == "heldout_prompt_leak")
    assert leak.stats == {"training_prompts": 48, "heldout_prompts": 18, "leaks": 0}
    assert report.summary().startswith("validation PASSED: 12/12 datasets valid")


def test_json_report_and_html_data_docs(built: Path, tmp_path: Path) -> None:
    data = subset(built, tmp_path / "data", [TRAIN, "code_generation/test", "code_generation/test.sft"])
    report = validate_dataset_dir(data, report_dir=tmp_path / "report", build_html=True)
    assert report.success and report.report_path == tmp_path / "report" / "validation_report.json"
    assert ValidationReport.model_validate_json(report.report_path.read_text()) == report
    assert report.html_dir == tmp_path / "report" / "html"
    index = (report.html_dir / "index.html").read_text()
    assert "rewriting.train" in index and "code_generation.test.sft" in index
    pages = sorted(p.name for p in (report.html_dir / "validations").rglob("*.html"))
    assert pages == [
        "genbench-code_generation.test.html",
        "genbench-code_generation.test.sft.html",
        "genbench-rewriting.train.html",
    ]
    page = (report.html_dir / "expectations/rewriting/train.html").read_text()
    assert "prompt_text" in page and "ground_truth" in page
    assert f"data docs: {report.html_dir / 'index.html'}" in report.summary()


def test_package_import_does_not_import_great_expectations() -> None:
    code = "import sys, genbench_tasks.validation; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- bad data: one dataset per case, so each run is cheap ------------------------------------------------

TRAIN = "rewriting/train"


def _null_prompt(t: pa.Table) -> pa.Table:
    return edit_rows(t, "prompt", with_user_text(3, None))


def _duplicate_id(t: pa.Table) -> pa.Table:
    return edit_rows(t, "extra_info", lambda i, v: {**v, "id": "rw-duplicate"} if i in (1, 2) else v)


def _index_as_string(t: pa.Table) -> pa.Table:
    info = t["extra_info"].to_pylist()
    typ = pa.struct([(f.name, pa.string()) for f in t.schema.field("extra_info").type])
    values = [{k: str(v) for k, v in row.items()} for row in info]
    return t.set_column(t.schema.get_field_index("extra_info"), "extra_info", pa.array(values, typ))


def _extra_column(t: pa.Table) -> pa.Table:
    return t.append_column("notes", pa.array(["x"] * t.num_rows))


def _unknown_data_source(t: pa.Table) -> pa.Table:
    return edit_rows(t, "data_source", lambda i, v: "genbench/unknown" if i == 5 else v)


def _empty_answer(t: pa.Table) -> pa.Table:
    return edit_rows(t, "reward_model", lambda i, v: {**v, "ground_truth": ""} if i == 0 else v)


@pytest.mark.parametrize(
    ("edit", "expectation", "column", "needle"),
    [
        (_null_prompt, "expect_column_values_to_not_be_null", "prompt_text", "1 of 24 values unexpected"),
        (_duplicate_id, "expect_column_values_to_be_unique", "id", "rw-duplicate"),
        (_index_as_string, "arrow_schema_matches", None, "wrong types: extra_info"),
        (_index_as_string, "expect_column_values_to_be_of_type", "index", "expected type int64"),
        (_extra_column, "expect_table_columns_to_match_set", None, "unexpected ['notes']"),
        (_unknown_data_source, "expect_column_values_to_be_in_set", "data_source", "genbench/unknown"),
        (_empty_answer, "expect_column_value_lengths_to_be_between", "ground_truth", "length between 1"),
    ],
    ids=[
        "null-prompt",
        "duplicate-id",
        "wrong-type-arrow",
        "wrong-type-gx",
        "extra-column",
        "data-source",
        "empty-answer",
    ],
)
def test_bad_data_fails_with_a_precise_message(
    built: Path, tmp_path: Path, edit, expectation: str, column: str | None, needle: str
) -> None:
    data = subset(built, tmp_path, [TRAIN], edit={TRAIN: edit})
    with pytest.raises(DataValidationError) as info:
        validate_dataset_dir(data, raise_on_failure=True, build_html=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"validation failed: {TRAIN}: ")
    report = failed_report(info.value)
    assert not report.success and not report.datasets[0].success
    failures = {(f.expectation, f.column): f for f in report.datasets[0].failed_expectations}
    assert (expectation, column) in failures, report.summary()
    failure = failures[(expectation, column)]
    assert needle in failure.details + json.dumps(failure.sample_offending_rows), failure
    assert len(failure.sample_offending_rows) <= 5
    assert f"{TRAIN}: {expectation}" in report.summary()
    assert read_model(report.report_path, ValidationReport).success is False
    if edit is _null_prompt:  # offending rows point at the row number and the id
        original = pq.read_table(built / "rl/rewriting/train.parquet").to_pylist()[3]
        assert failure.sample_offending_rows == [
            {"row": 3, "id": original["extra_info"]["id"], "prompt_text": None}
        ]
        assert original["extra_info"]["id"] in message


def test_row_count_bounds_come_from_the_profile(built: Path, tmp_path: Path) -> None:
    data = subset(built, tmp_path, [TRAIN])
    too_many = small_profile(rewriting={"train": 10, "val": 4, "test": 4})
    report = validate_dataset_dir(data, profile=too_many, build_html=False)
    failure = report.datasets[0].failed_expectations
    assert [(f.expectation, f.details) for f in failure] == [
        ("expect_table_row_count_to_be_between", "observed 24, expected row count between 10 and 10")
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop_columns(["ability"]), r"missing columns \['ability'\]"),
        (
            lambda t: t.rename_columns(["data_source", "question", "ability", "reward_model", "extra_info"]),
            r"missing columns \['prompt'\] \(unexpected: \['question'\]\)",
        ),
    ],  # fmt: skip
    ids=["missing-column", "renamed-column"],
)
def test_missing_or_renamed_columns_are_errors(built: Path, tmp_path: Path, edit, message: str) -> None:
    data = subset(built, tmp_path, [TRAIN], edit={TRAIN: edit})
    with pytest.raises(GenbenchError, match=message) as info:
        validate_dataset_dir(data, build_html=False)
    assert "rl/rewriting/train.parquet" in str(info.value) and "\n" not in str(info.value)


# --- cross-split checks ----------------------------------------------------------------------------------


def test_heldout_prompt_leaked_into_training_is_caught(built: Path, tmp_path: Path) -> None:
    test_rows = pq.read_table(built / "rl/rewriting/test.parquet").to_pylist()
    leaked = test_rows[0]["prompt"][-1]["content"]
    disguised = "  " + leaked.upper().replace(" ", "   ")  # normalisation: case and whitespace
    data = subset(
        built,
        tmp_path,
        [TRAIN, "rewriting/test"],
        edit={TRAIN: lambda t: edit_rows(t, "prompt", with_user_text(7, disguised))},
    )
    report = validate_dataset_dir(data, build_html=False)
    assert all(d.success for d in report.datasets) and not report.success
    leak = next(c for c in report.cross_checks if c.name == "heldout_prompt_leak")
    assert not leak.success and leak.stats["leaks"] == 1
    assert leak.sample_offending_rows[0]["heldout_id"] == test_rows[0]["extra_info"]["id"]
    assert leak.sample_offending_rows[0]["training_dataset"] == TRAIN
    assert "heldout_prompt_leak" in report.one_line() and "rewriting/test" in report.one_line()


LONG_HELDOUT = (
    "Write a Python function `count_vowels(s)` that returns how many vowels the string s contains, "
    "counting both upper case and lower case letters"
)


def test_near_duplicate_only_the_ngram_check_catches(built: Path, tmp_path: Path) -> None:
    assert len(LONG_HELDOUT.split()) >= 20
    changed = LONG_HELDOUT.replace("letters", "characters")  # one word changed: no exact match
    embedded = f"Rewrite the text. Rule: Remove the first word.\nText: {changed}"
    data = subset(
        built,
        tmp_path,
        [TRAIN, "code_generation/test"],
        edit={
            TRAIN: lambda t: edit_rows(t, "prompt", with_user_text(2, embedded)),
            "code_generation/test": lambda t: edit_rows(t, "prompt", with_user_text(0, LONG_HELDOUT)),
        },
    )
    profile = small_profile()
    profile.data.contamination_max_fraction = 0.1  # 1 of 6 held-out items is more than that
    report = validate_dataset_dir(data, profile=profile, build_html=False)
    checks = {c.name: c for c in report.cross_checks}
    assert checks["heldout_prompt_leak"].success
    ngram = checks["ngram_contamination"]
    assert not ngram.success and not report.success
    assert ngram.stats["per_dataset"]["code_generation/test"]["flagged"] == 1
    assert (ngram.stats["n"], ngram.stats["max_fraction"]) == (13, 0.1)
    row = ngram.sample_offending_rows[0]
    assert row["heldout_dataset"] == "code_generation/test" and row["training_dataset"] == TRAIN
    assert len(row["ngram"].split()) == 13 and row["ngram"] in " ".join(word_tokens(LONG_HELDOUT))
    assert "ngram_contamination" in report.one_line()


# --- contamination functions (pure Python) ---------------------------------------------------------------


def _items(dataset: str, *texts: str) -> list[TextItem]:
    return [TextItem(dataset, f"{dataset}-{i}", (t,)) for i, t in enumerate(texts)]


def test_exact_leak_is_normalised() -> None:
    train = _items("t/train", "Hello   World", "other")
    assert not heldout_leak_check(train, _items("t/test", "hello world")).success
    assert heldout_leak_check(train, _items("t/test", "hello worlds")).success


def test_ngram_check_counts_texts_too_short_to_flag() -> None:
    words = [f"w{i}" for i in range(20)]
    train = _items("t/train", " ".join(["prefix", *words]))
    heldout = _items("h/test", " ".join(words[:12]), " ".join(words[:13]), " ".join(words[5:18]))
    result = ngram_contamination_check(train, heldout, n=13)
    stats = result.stats["per_dataset"]["h/test"]
    assert (stats["items"], stats["too_short"], stats["flagged"]) == (3, 1, 2)
    assert not result.success and "fewer than 13 words" in result.details
    assert ngram_contamination_check(train, heldout, n=13, max_fraction=0.7).success
    # A smaller n catches the 12-word text too; punctuation and case do not matter.
    assert (
        ngram_contamination_check(train, _items("h/test", "W0, w1! " + " ".join(words[2:12])), n=8).stats[
            "per_dataset"
        ]["h/test"]["flagged"]
        == 1
    )


def test_ngram_check_scales_linearly() -> None:
    vocab = [f"v{i}" for i in range(500)]
    train = [
        TextItem("t", str(i), (" ".join(vocab[(i * 7 + k) % 500] for k in range(30)),)) for i in range(20_000)
    ]
    heldout = [
        TextItem("h", str(i), (" ".join(vocab[(i * 13 + k * 3) % 500] for k in range(30)),))
        for i in range(500)
    ]
    import time

    start = time.perf_counter()
    ngram_contamination_check(train, heldout)
    assert time.perf_counter() - start < 10  # ~360k training n-grams


# --- structural errors: GenbenchError one-liners, before any GX work --------------------------------------


def _one_line_error(data_dir: Path, match: str) -> None:
    with pytest.raises(GenbenchError, match=match) as info:
        validate_dataset_dir(data_dir, build_html=False)
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, DataValidationError)


def test_structural_errors(built: Path, tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nope", "not a directory")
    (tmp_path / "empty-dir").mkdir()
    _one_line_error(tmp_path / "empty-dir", "has no datasets.json")
    bad_manifest = tmp_path / "bad-manifest"
    bad_manifest.mkdir()
    (bad_manifest / MANIFEST_NAME).write_text("{not json")
    _one_line_error(bad_manifest, "malformed manifest")

    def case(name: str, damage: Callable[[Path], None], match: str) -> None:
        data = subset(built, tmp_path / name, [TRAIN, "rewriting/test"])
        damage(data / "rl/rewriting/train.parquet")
        _one_line_error(data, match)

    case("missing-file", Path.unlink, "listed in datasets.json but does not exist")
    case("empty-file", lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)")
    case("malformed", lambda p: p.write_bytes(b"PAR1 garbage"), "not a valid parquet file")
    case("directory", lambda p: (p.unlink(), p.mkdir()), "not a file")
    case("zero-rows", lambda p: pq.write_table(pq.read_table(p).slice(0, 0), p), "parquet file has no rows")
    case(
        "changed",
        lambda p: pq.write_table(pq.read_table(p).slice(1), p),
        "sha256 .* does not match datasets.json",
    )


def test_unknown_family_in_manifest(built: Path, tmp_path: Path) -> None:
    data = subset(built, tmp_path, [TRAIN])
    raw = json.loads((data / MANIFEST_NAME).read_text())
    raw["datasets"][0]["family"] = "nope"
    (data / MANIFEST_NAME).write_text(json.dumps(raw))
    _one_line_error(data, "unknown task family 'nope'")


def test_summary_lists_dataset_expectation_and_rows() -> None:
    from genbench_tasks.validation import DatasetResult, FailedExpectation

    failure = FailedExpectation(
        expectation="expect_column_values_to_be_unique",
        column="id",
        details="2 of 10 values unexpected",
        sample_offending_rows=[{"row": 1, "id": "a"}, {"row": 2, "id": "a"}],
    )
    report = ValidationReport(
        success=False,
        data_dir=Path("/d"),
        datasets=[
            DatasetResult(
                name="x/train",
                path="rl/x/train.parquet",
                family="x",
                split="train",
                format="rl",
                rows=10,
                success=False,
                failed_expectations=[failure],
            ),
        ],  # fmt: skip
        cross_checks=[],
        report_path=Path("/d/validation/validation_report.json"),
    )
    lines = report.summary().splitlines()
    assert lines[0] == "validation FAILED: 0/1 datasets valid (/d)"
    assert lines[1] == "  x/train: expect_column_values_to_be_unique [id]: 2 of 10 values unexpected"
    assert lines[2] == '      row: {"row": 1, "id": "a"}'
    assert report.one_line() == (
        "validation failed: x/train: expect_column_values_to_be_unique on column 'id': 2 of 10 values "
        'unexpected; offending rows: {"row": 1, "id": "a"}, {"row": 2, "id": "a"}'
    )


# --- every field a consumer reads: malformed rows are data errors, never tracebacks ----------------------

HELDOUT = "code_generation/test"
RW_TEST = "rewriting/test"


def _messages(fn: Callable[[list[dict]], object], row: int = 2):
    """Edit the messages of one row."""
    return lambda t: edit_rows(t, "prompt", lambda i, m: fn([dict(x) for x in m]) if i == row else m)


def _user(fn: Callable[[str], str], row: int = 2):
    return _messages(
        lambda m: [{**x, "content": fn(x["content"])} if x["role"] == "user" else x for x in m], row
    )


def _prompt_as_plain_strings(t: pa.Table) -> pa.Table:
    """The prompt column as a list of strings (no roles), as a hand-written converter might produce."""
    values = [[m["content"] for m in row] for row in t["prompt"].to_pylist()]
    index = t.schema.get_field_index("prompt")
    return t.set_column(index, "prompt", pa.array(values, pa.list_(pa.string())))


def _ground_truth(fn: Callable[[dict], object], row: int = 1):
    def edit(i, v):
        if i != row:
            return v
        new = fn(json.loads(v["ground_truth"]))
        return {**v, "ground_truth": new if isinstance(new, str) else json.dumps(new)}

    return lambda t: edit_rows(t, "reward_model", edit)


def _reference(fn: Callable[[str], str], row: int = 1):
    return lambda t: edit_rows(
        t, "extra_info", lambda i, v: {**v, "reference": fn(v["reference"])} if i == row else v
    )


ROW_CASES = {
    # message structure
    "unknown role": (TRAIN, _messages(lambda m: [m[0], {"role": "tool", "content": "x" * 20}, *m[1:]]),
                     "prompt_messages_are_well_formed", "role 'tool'"),
    "system turn not first": (TRAIN, _messages(lambda m: [m[1], m[0]]),
                              "prompt_messages_are_well_formed", "only the first"),
    "two user turns in a row": (TRAIN, _messages(lambda m: [*m, m[-1]]),
                                "prompt_messages_are_well_formed", "user and assistant alternate"),
    "held-out prompt ends with the solution": (
        HELDOUT, _messages(lambda m: [*m, {"role": "assistant", "content": "def f(x):\n    return x\n"}]),
        "prompt_messages_are_well_formed", "could hold the solution"),
    "prompt of plain strings": (TRAIN, _prompt_as_plain_strings,
                                "prompt_messages_are_well_formed", "message 0 is a str"),
    "empty prompt": (TRAIN, _messages(lambda m: []), "prompt_messages_are_well_formed", "prompt is empty"),
    "null content": (TRAIN, _messages(lambda m: [m[0], {"role": "user", "content": None}]),
                     "prompt_messages_are_well_formed", "content of type NoneType"),
    # lengths of every turn
    "10 MB assistant turn": (
        TRAIN, _messages(lambda m: [m[0], m[1], {"role": "assistant", "content": "y" * 10_000_000}, m[1]]),
        "message_lengths_are_between", "message 2 (assistant) has 10000000 characters"),
    "whitespace-only user prompt": (TRAIN, _user(lambda c: " \n\t " * 4),
                                    "message_lengths_are_between", "whitespace-only"),
    # control characters anywhere
    "NUL in a prompt": (TRAIN, _user(lambda c: c + "\x00"), "text_has_no_control_characters", "U+0000"),
    "ANSI escape in a prompt": (TRAIN, _user(lambda c: "\x1b[2J" + c), "text_has_no_control_characters", "U+001B"),
    "bidi override in a prompt": (TRAIN, _user(lambda c: c.replace(" ", " \u202e", 1)),
                                  "text_has_no_control_characters", "U+202E"),
    "control character in the reference": (TRAIN, _reference(lambda r: r + "\x07"),
                                           "text_has_no_control_characters", "U+0007"),
    # code ground truth
    "ground truth not JSON": (HELDOUT, _ground_truth(lambda g: "def check(candidate): pass"),
                              "code_ground_truth_is_valid", "not valid JSON"),
    "ground truth without entry_point": (HELDOUT, _ground_truth(lambda g: {"test": g["test"]}),
                                         "code_ground_truth_is_valid", "'entry_point'"),
    "ground truth a JSON list": (HELDOUT, _ground_truth(lambda g: [g]), "code_ground_truth_is_valid", "not list"),
    "test with a syntax error": (HELDOUT, _ground_truth(lambda g: {**g, "test": g["test"].replace("):", ")", 1)}),
                                 "code_ground_truth_is_valid", "test does not compile"),
    "test that never calls the candidate": (
        HELDOUT, _ground_truth(lambda g: {**g, "test": "def check(candidate):\n    assert True\n"}),
        "code_ground_truth_is_valid", "every solution would pass"),
    "test without check": (HELDOUT, _ground_truth(lambda g: {**g, "test": "def verify(candidate):\n    pass\n"}),
                           "code_ground_truth_is_valid", "defines no check"),
    "reference fails its own test": (HELDOUT, _reference(lambda r: r.replace("return ", "return None and ", 1)),
                                     "reference_solution_passes_its_test", "failed: AssertionError"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_malformed_rows_are_data_errors(built: Path, tmp_path: Path, case: str) -> None:
    dataset, edit, expectation, needle = ROW_CASES[case]
    data = subset(built, tmp_path, [dataset], edit={dataset: edit})
    with pytest.raises(DataValidationError) as info:
        validate_dataset_dir(data, raise_on_failure=True, build_html=False)
    assert "\n" not in str(info.value)
    report = failed_report(info.value)
    failures = [f for d in report.datasets for f in d.failed_expectations if f.expectation == expectation]
    assert len(failures) == 1, report.summary()
    failure = failures[0]
    assert needle in failure.details, failure
    original = pq.read_table(built / load_manifest(built).get(*dataset.split("/")).path).to_pylist()
    edited_row = failure.sample_offending_rows[0]["row"]
    assert failure.sample_offending_rows[0]["id"] == original[edited_row]["extra_info"]["id"]  # names the row
    assert f"{dataset}: {expectation} [{failure.column}]" in report.summary()


def test_invalid_utf8_is_reported_per_row(built: Path, tmp_path: Path) -> None:
    def corrupt(t: pa.Table) -> pa.Table:
        prompts = t["prompt"].combine_chunks()
        contents = prompts.flatten().field("content")
        raw = contents.cast(pa.binary()).to_pylist()
        raw[2 * 4 + 1] = b"Rewrite \xff\xfe the text"  # row 4's user turn
        bad = pa.array(raw, pa.binary()).view(pa.string())
        structs = pa.StructArray.from_arrays([prompts.flatten().field("role"), bad], ["role", "content"])
        lists = pa.ListArray.from_arrays(prompts.offsets, structs)
        return t.set_column(t.schema.get_field_index("prompt"), "prompt", lists)

    data = subset(built, tmp_path, [TRAIN, RW_TEST], edit={TRAIN: corrupt})
    report = validate_dataset_dir(data, build_html=False)
    train = next(d for d in report.datasets if d.name == TRAIN)
    assert not report.success and not train.success
    [failure] = train.failed_expectations
    assert (failure.expectation, failure.column) == ("text_is_valid_utf8", "prompt.content")
    assert failure.sample_offending_rows == [{"row": 4}] and "not valid UTF-8" in failure.details
    assert next(d for d in report.datasets if d.name == RW_TEST).success  # the other datasets are checked


# --- leaks that survive normalisation and small edits -------------------------------------------------------


def _heldout_prompt(built: Path, dataset: str = HELDOUT, row: int = 0) -> str:
    entry = load_manifest(built).get(*dataset.split("/"))
    return pq.read_table(built / entry.path).to_pylist()[row]["prompt"][-1]["content"]


LEAK_DISGUISES = {
    "punctuation spacing": lambda p: p.replace("(", " ( ").replace(")", " ) ").replace(".", " .").replace("`", " ` "),
    "punctuation dropped": lambda p: p.replace("`", "").replace(".", ""),
    "full-width letters (NFKC)": lambda p: p.replace("Write", "Ｗｒｉｔｅ").replace("function", "ｆｕｎｃｔｉｏｎ"),
    "zero-width characters": lambda p: p.replace("Python", "Py\u200bthon").replace("function", "func\u00adtion"),
    "case and spacing": lambda p: "  " + p.upper().replace(" ", " \n "),
}  # fmt: skip


@pytest.mark.parametrize("disguise", sorted(LEAK_DISGUISES))
def test_disguised_heldout_prompt_is_a_leak(built: Path, tmp_path: Path, disguise: str) -> None:
    leaked = LEAK_DISGUISES[disguise](_heldout_prompt(built))
    edit = {TRAIN: lambda t: edit_rows(t, "prompt", with_user_text(5, leaked))}
    data = subset(built, tmp_path, [TRAIN, HELDOUT], edit=edit)
    report = validate_dataset_dir(data, build_html=False)
    leak = next(c for c in report.cross_checks if c.name == "heldout_prompt_leak")
    assert not leak.success and leak.stats["leaks"] == 1, leak
    assert leak.sample_offending_rows[0]["heldout_dataset"] == HELDOUT


def test_heldout_prompt_in_an_earlier_user_turn_is_a_leak(built: Path, tmp_path: Path) -> None:
    leaked = _heldout_prompt(built)
    answer = {"role": "assistant", "content": "def f(x):\n    return x\n"}
    multi_turn = _messages(lambda m: [m[0], {"role": "user", "content": leaked}, answer, m[1]], row=3)
    data = subset(built, tmp_path, [TRAIN, HELDOUT], edit={TRAIN: multi_turn})
    report = validate_dataset_dir(data, build_html=False)
    assert next(d for d in report.datasets if d.name == TRAIN).success  # a well-formed multi-turn prompt
    leak = next(c for c in report.cross_checks if c.name == "heldout_prompt_leak")
    assert not leak.success and leak.sample_offending_rows[0]["training_dataset"] == TRAIN


def test_heldout_prompt_in_a_system_turn_or_answer_is_a_leak(built: Path, tmp_path: Path) -> None:
    leaked = _heldout_prompt(built)
    in_system = _messages(lambda m: [{"role": "system", "content": leaked}, m[1]], row=3)
    in_answer = _reference(lambda r: leaked, row=4)
    data = subset(built, tmp_path, [TRAIN, HELDOUT], edit={TRAIN: lambda t: in_answer(in_system(t))})
    report = validate_dataset_dir(data, build_html=False)
    leak = next(c for c in report.cross_checks if c.name == "heldout_prompt_leak")
    assert not leak.success and leak.stats["leaks"] == 1  # one held-out prompt, found twice


def test_edited_heldout_prompt_is_a_near_duplicate(built: Path, tmp_path: Path) -> None:
    original = _heldout_prompt(built)
    edited = original.replace("Write a Python", "Please write one Python")  # two words changed or added
    edit = {TRAIN: lambda t: edit_rows(t, "prompt", with_user_text(6, edited))}
    data = subset(built, tmp_path, [TRAIN, HELDOUT], edit=edit)
    report = validate_dataset_dir(data, build_html=False)
    checks = {c.name: c for c in report.cross_checks}
    assert checks["heldout_prompt_leak"].success and checks["ngram_contamination"].success  # both miss it
    near = checks["near_duplicates"]
    assert not near.success and not report.success
    row = near.sample_offending_rows[0]
    assert (row["heldout_dataset"], row["training_dataset"], row["prompt"]) == (HELDOUT, TRAIN, original)
    assert row["jaccard"] >= 0.5 and "near_duplicates" in report.one_line()


def test_edited_heldout_prompt_embedded_in_a_longer_prompt(built: Path, tmp_path: Path) -> None:
    edited = _heldout_prompt(built).replace("Write", "Now write", 1)
    embedded = f"Rewrite the text. Rule: Remove the last word.\nText: {edited} Thanks"
    edit = {TRAIN: lambda t: edit_rows(t, "prompt", with_user_text(6, embedded))}
    report = validate_dataset_dir(subset(built, tmp_path, [TRAIN, HELDOUT], edit=edit), build_html=False)
    near = next(c for c in report.cross_checks if c.name == "near_duplicates")
    assert not near.success and near.stats["per_dataset"][HELDOUT]["flagged"] == 1


def test_near_duplicate_check_ignores_unrelated_and_counts_fractions() -> None:
    from genbench_tasks.validation import near_duplicate_check

    held = _items(
        "h/test", "Write a Python function add_5 that returns x plus 5", "Sort the list xs in place"
    )
    train = _items("t/train", "write one python function add_5 that returns x plus 5", "reverse these words")
    result = near_duplicate_check(train, held)
    assert not result.success and result.stats["per_dataset"]["h/test"]["flagged"] == 1
    assert near_duplicate_check(train, held, max_fraction=0.5).success
    assert near_duplicate_check(_items("t/train", "reverse these words", "count the vowels"), held).success


# --- manifest integrity: exit 2 with the entry and field named ----------------------------------------------


def _edit_manifest(data: Path, fn: Callable[[dict], None]) -> Path:
    raw = json.loads((data / MANIFEST_NAME).read_text())
    fn(raw)
    (data / MANIFEST_NAME).write_text(json.dumps(raw))
    return data


def _entry(dataset: str, **changes) -> Callable[[dict], None]:
    def fn(raw: dict) -> None:
        next(e for e in raw["datasets"] if e["name"] == dataset).update(changes)

    return fn


def _outside(data: Path) -> Callable[[dict], None]:
    """The entry's file moved outside the data directory, with its sha256 and rows intact."""
    outside = data.parent / f"{data.name}-outside.parquet"
    shutil.copyfile(data / "rl/rewriting/train.parquet", outside)
    return _entry(TRAIN, path=f"../{outside.name}")


def _symlinked_outside(data: Path) -> Callable[[dict], None]:
    target = data.parent / f"{data.name}-target.parquet"
    shutil.move(data / "rl/rewriting/train.parquet", target)
    (data / "rl/rewriting/train.parquet").symlink_to(target)
    return lambda raw: None


MANIFEST_CASES = {
    "same entry twice": (lambda d: lambda raw: raw["datasets"].append(raw["datasets"][0]),
                         r"datasets\[2\] \(rewriting/train\): repeats the name of datasets\[0\]"),
    "path outside the data directory": (_outside, r"datasets\[0\] \(rewriting/train\): field 'path' .* outside"),
    "path with a NUL byte": (lambda d: _entry(TRAIN, path="rl/rewriting/train\x00.parquet"), "control characters"),
    "absolute path": (lambda d: _entry(TRAIN, path=str(d / "rl/rewriting/train.parquet")), "outside the data"),
    "symlink out of the data directory": (_symlinked_outside, "resolves to .* outside the data directory"),
    "rows not the file's": (lambda d: _entry(TRAIN, rows=25), r"24 rows, but datasets.json entry .* rows=25"),
    "data_source not the family's": (lambda d: _entry(TRAIN, data_source="genbench/reasoning"),
                                     "field 'data_source' is 'genbench/reasoning', expected 'genbench/rewriting'"),
    "role not the family's": (lambda d: _entry(TRAIN, role="heldout"), "field 'role' is 'heldout'"),
    "split the family lacks": (lambda d: _entry(HELDOUT, split="train", name="code_generation/train"),
                               "field 'split' is 'train', expected one of \\['test'\\]"),
    "unknown format": (lambda d: _entry(TRAIN, format="csv"), "field 'format' is 'csv'"),
    "rows of the wrong type": (lambda d: _entry(TRAIN, rows="many"),
                               r"datasets\[0\] \(rewriting/train\): field 'rows': Input should be a valid integer"),
    "entry that is not an object": (lambda d: lambda raw: raw["datasets"].append("rl/x.parquet"),
                                    r"malformed manifest \(datasets\[2\]"),
    "unknown family listed": (lambda d: lambda raw: raw["families"].append("poetry"),
                              "field 'families': unknown task family 'poetry'"),
    "family listed twice": (lambda d: lambda raw: raw["families"].append("rewriting"), "field 'families' lists"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_inconsistent_manifest_is_a_one_line_error(built: Path, tmp_path: Path, case: str) -> None:
    make, match = MANIFEST_CASES[case]
    data = subset(built, tmp_path / "data", [TRAIN, HELDOUT])
    _edit_manifest(data, make(data))
    _one_line_error(data, match)
    assert not (data / "validation" / "validation_report.json").exists()  # refused before any data check


def test_missing_heldout_family_fails(built: Path, tmp_path: Path) -> None:
    data = subset(built, tmp_path, [TRAIN, RW_TEST])
    report = validate_dataset_dir(data, build_html=False)
    present = next(c for c in report.cross_checks if c.name == "heldout_family_present")
    assert not present.success and "no held-out family test split" in present.details
    assert all(d.success for d in report.datasets) and not report.success
    # With a profile, every dataset it builds must be listed.
    report = validate_dataset_dir(data, profile=small_profile(), build_html=False)
    present = next(c for c in report.cross_checks if c.name == "heldout_family_present")
    assert (
        "code_generation/test" in present.stats["missing"]
        and "reasoning/train.sft" in present.stats["missing"]
    )


def test_same_id_in_two_splits_fails(built: Path, tmp_path: Path) -> None:
    train_id = pq.read_table(built / "rl/rewriting/train.parquet")["extra_info"].to_pylist()[0]["id"]
    reuse = lambda t: edit_rows(t, "extra_info", lambda i, v: {**v, "id": train_id} if i == 1 else v)  # noqa: E731
    data = subset(built, tmp_path, [TRAIN, RW_TEST, HELDOUT], edit={RW_TEST: reuse})
    report = validate_dataset_dir(data, build_html=False)
    ids = next(c for c in report.cross_checks if c.name == "ids_unique_across_splits")
    assert not ids.success
    assert ids.sample_offending_rows == [{"id": train_id, "dataset": RW_TEST, "also_in": TRAIN}]


def test_unchanged_data_reuses_the_passing_report_and_a_changed_file_is_revalidated(
    built: Path, tmp_path: Path
) -> None:
    import time

    data = subset(built, tmp_path / "data", [TRAIN, "code_generation/test", "code_generation/test.sft"])
    cache = tmp_path / "cache"
    first = validate_dataset_dir(data, cache_dir=cache)
    assert first.success and first.cached_from is None
    started = time.monotonic()
    again = validate_dataset_dir(data, cache_dir=cache, report_dir=tmp_path / "again")
    assert again.cached_from is not None and again.success
    assert (
        again.datasets == first.datasets
        and again.report_path == tmp_path / "again" / "validation_report.json"
    )
    assert again.report_path.is_file()
    assert time.monotonic() - started < 10  # hashes only (the benchmark prints the real figure)
    # A changed file no longer matches datasets.json: refused before any cache lookup.
    parquet = next(data.rglob("*.parquet"))
    parquet.write_bytes(parquet.read_bytes() + b"x")
    with pytest.raises(GenbenchError, match="sha256|changed"):
        validate_dataset_dir(data, cache_dir=cache)


def _suite_jobs():
    import great_expectations.expectations as gxe
    import pandas as pd

    good = pd.DataFrame({"id": ["a", "b", "c"], "n": [1, 2, 3]})
    bad = pd.DataFrame({"id": ["a", "a", None], "n": [1, 2, 99]})
    expectations = lambda: [  # noqa: E731 - a fresh list per suite
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeBetween(column="n", min_value=0, max_value=10),
    ]
    return [(f"part/{i}", df, expectations()) for i, df in enumerate([good, bad, good, bad])]


def test_suites_in_forked_processes_give_the_results_of_one_process() -> None:
    from genbench_tasks.validation.suites import SuitePool

    outcomes = {}
    for processes in (1, 2):
        with SuitePool(None, processes=processes) as pool:
            pending = [pool.submit(*job) for job in _suite_jobs()]
            outcomes[processes] = [get() for get in pending]
            assert (pool._executor is not None) == (processes == 2)
    assert outcomes[1] == outcomes[2]
    assert [len(failed) for _, failed in outcomes[2]] == [0, 3, 0, 3]
    # One process per core by default, never more than the suites to run.
    assert SuitePool(None, processes=2, jobs=1).processes == 1
    assert SuitePool(None, jobs=14).processes <= max(1, len(os.sched_getaffinity(0)))
    assert {f.expectation for f in outcomes[2][1][1]} == {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_between",
    }


def test_suites_run_in_process_inside_a_daemonic_worker() -> None:
    """An Airflow worker process is daemonic and may not fork children: the pool runs the suites inline."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        from genbench_tasks.validation.suites import SuitePool

        with SuitePool(None, processes=2) as pool:
            results = [get() for get in [pool.submit(*job) for job in _suite_jobs()]]
            queue.put((pool._executor is None, [len(f) for _, f in results]))

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    inline, failures = queue.get(timeout=300)
    proc.join(60)
    assert inline and failures == [0, 3, 0, 3]
