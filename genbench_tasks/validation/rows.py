"""Row checks Great Expectations cannot express on flat columns, in one pure-Python pass per dataset.

Every field a consumer reads: all messages of a prompt (shape, roles, order, the length of every turn),
control characters in any text, blank texts, and code ground truth (valid JSON with a compiling test). Each
check becomes a `FailedExpectation` naming the column and the offending rows (row number, id, problem). The
pass also yields the texts for the cross-split checks and the reference-solution jobs for the sandbox.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from genbench_tasks.artifacts.validation import MAX_SAMPLE_ROWS, FailedExpectation
from genbench_tasks.families import TaskFamily
from genbench_tasks.validation.contamination import TextItem

ROLES = ("system", "user", "assistant")
TURN_LENGTH = {"system": (1, 4_000), "user": (8, 16_000), "assistant": (1, 16_000)}
PROMPT_LENGTH = 32_000  # all turns of one prompt together
# C0/C1 controls except tab, newline and carriage return; the bidi embedding/override/isolate controls.
CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

EXPECTED = {
    "prompt_messages_are_well_formed": (
        f"a list of {{role, content}} messages with roles in {list(ROLES)}: an optional system turn first, then "
        "user and assistant turns alternating from user, ending with a user turn"
    ),
    "message_lengths_are_between": (
        ", ".join(f"{role} {lo}-{hi}" for role, (lo, hi) in TURN_LENGTH.items())
        + f" characters per turn, {PROMPT_LENGTH} per prompt, no whitespace-only turn"
    ),
    "text_has_no_control_characters": (
        "no control characters (NUL, ANSI escapes, bidi controls; tab and newlines are fine)"
    ),
    "text_is_not_blank": "text with at least one non-whitespace character",
    "code_ground_truth_is_valid": (
        "a JSON object with string 'test' and 'entry_point' (and optional 'prompt'); the test compiles and "
        "defines check(candidate)"
    ),
    "reference_solution_passes_its_test": "the reference solution passes the item's own test in the sandbox",
    "text_is_valid_utf8": "valid UTF-8 text",
}


@dataclass
class CodeJob:
    """A reference solution to run against its own test: (program, test, entry point, prompt)."""

    row: int
    id: str
    job: tuple[str, str, str, str]


@dataclass
class RowChecks:
    """Offending rows per (check, column), the cross-split texts and the reference jobs of one dataset."""

    dataset: str
    n_rows: int
    offending: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    items: list[TextItem] = field(default_factory=list)
    code_jobs: list[CodeJob] = field(default_factory=list)
    checks: set[str] = field(default_factory=set)

    def add(self, check: str, column: str, row: int, id_: str, problem: str) -> None:
        key = (check, column)
        self.counts[key] = self.counts.get(key, 0) + 1
        rows = self.offending.setdefault(key, [])
        if len(rows) < MAX_SAMPLE_ROWS:
            rows.append({"row": row, "id": id_, "problem": problem})

    def failures(self) -> list[FailedExpectation]:
        out = []
        for (check, column), rows in self.offending.items():
            count = self.counts[(check, column)]
            first = rows[0]
            out.append(
                FailedExpectation(
                    expectation=check,
                    column=column,
                    details=(
                        f"{count} of {self.n_rows} rows unexpected (expected {EXPECTED[check]}); "
                        f"e.g. row {first['row']} (id {first['id']}): {first['problem']}"
                    ),
                    sample_offending_rows=rows,
                )
            )
        return out


def _control_problem(text: str) -> str | None:
    match = CONTROL_RE.search(text)
    if match is None:
        return None
    return f"control character U+{ord(match.group()):04X} at offset {match.start()}"


def _text(checks: RowChecks, column: str, value: Any, row: int, id_: str) -> str | None:
    """A text field: control characters and blank values are problems; non-strings are left to the suites."""
    if not isinstance(value, str):
        return None
    problem = _control_problem(value)
    if problem:
        checks.add("text_has_no_control_characters", column, row, id_, problem)
    if not value.strip():
        checks.add("text_is_not_blank", column, row, id_, f"blank text {value[:20]!r}")
    return value


def message_problems(messages: Any, heldout: bool) -> tuple[list[str], list[str]]:
    """(structure problems, length problems) of one prompt's messages."""
    if not isinstance(messages, list | tuple) or not messages:
        kind = "empty" if isinstance(messages, list | tuple) else type(messages).__name__
        return [f"prompt is {kind}, expected a non-empty list of messages"], []
    structure: list[str] = []
    lengths: list[str] = []
    roles = []
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            structure.append(
                f"message {i} is a {type(message).__name__}, expected an object with role and content"
            )
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            structure.append(f"message {i} has role {role!r}, expected one of {list(ROLES)}")
            continue
        if not isinstance(content, str):
            structure.append(f"message {i} ({role}) has content of type {type(content).__name__}")
            continue
        roles.append(role)
        lo, hi = TURN_LENGTH[role]
        if not content.strip():
            lengths.append(f"message {i} ({role}) is whitespace-only")
        elif not lo <= len(content) <= hi:
            lengths.append(f"message {i} ({role}) has {len(content)} characters, expected {lo}-{hi}")
        total += len(content)
    if total > PROMPT_LENGTH:
        lengths.append(f"the prompt has {total} characters in all, expected at most {PROMPT_LENGTH}")
    if structure:
        return structure, lengths
    turns = roles[1:] if roles[0] == "system" else roles
    if "system" in turns:
        structure.append(
            f"a system message at position {roles.index('system', 1)}, only the first may be one"
        )
    elif not turns:
        structure.append("no user message")
    else:
        for i, role in enumerate(turns):
            expected = "user" if i % 2 == 0 else "assistant"
            if role != expected:
                structure.append(f"turn {i} is {role}, expected {expected} (user and assistant alternate)")
                break
        if turns[-1] == "assistant":
            why = "a held-out prompt must not: it could hold the solution" if heldout else "nothing to answer"
            structure.append(f"the prompt ends with an assistant turn ({why})")
    return structure, lengths


def check_rl(name: str, family: TaskFamily, split: str, table: pa.Table) -> RowChecks:
    """Messages, texts and code ground truth of a verl RL dataset; collects texts and reference jobs."""
    from genbench_tasks.families import code_generation

    checks = RowChecks(name, table.num_rows)
    checks.checks |= {
        "prompt_messages_are_well_formed",
        "message_lengths_are_between",
        "text_has_no_control_characters",
        "text_is_not_blank",
    }
    is_code = family.scorer is code_generation.score
    if is_code:
        checks.checks |= {"code_ground_truth_is_valid", "reference_solution_passes_its_test"}
    heldout = split != "train"
    columns = {n: table[n].to_pylist() for n in table.column_names}
    empty = [None] * table.num_rows
    for row, (source, messages, reward, info) in enumerate(
        zip(
            columns.get("data_source", empty),
            columns.get("prompt", empty),
            columns.get("reward_model", empty),
            columns.get("extra_info", empty),
            strict=True,
        )
    ):
        info = info if isinstance(info, dict) else {}
        reward = reward if isinstance(reward, dict) else {}
        id_ = info.get("id") if isinstance(info.get("id"), str) else f"row{row}"
        _text(checks, "data_source", source, row, id_)
        _text(checks, "extra_info.id", info.get("id"), row, id_)
        structure, lengths = message_problems(messages, heldout)
        for problem in structure:
            checks.add("prompt_messages_are_well_formed", "prompt", row, id_, problem)
            break  # one structural problem per row is enough to point at it
        for problem in lengths:
            checks.add("message_lengths_are_between", "prompt", row, id_, problem)
            break
        turns = []
        if isinstance(messages, list | tuple):
            for i, m in enumerate(messages):
                if isinstance(m, dict) and isinstance(m.get("content"), str):
                    problem = _control_problem(m["content"])
                    if problem:
                        checks.add(
                            "text_has_no_control_characters", "prompt", row, id_, f"message {i}: {problem}"
                        )
                    turns.append((m.get("role"), m["content"]))
        reference = _text(checks, "extra_info.reference", info.get("reference"), row, id_)
        truth = _text(checks, "reward_model.ground_truth", reward.get("ground_truth"), row, id_)
        if any(role == "user" for role, _ in turns):
            checks.items.append(_item(name, id_, turns, reference, heldout))
        if is_code and truth is not None:
            job = _code_job(checks, truth, reference, row, id_)
            if job is not None:
                checks.code_jobs.append(CodeJob(row, id_, job))
    return checks


def _item(
    name: str, id_: str, turns: list[tuple[str, str]], reference: str | None, heldout: bool
) -> TextItem:
    """Cross-split texts of one row. A held-out item is its user turns (compared exactly) plus its answer; a
    training item is every turn, system included, plus its answer, and all of them count for exact leaks."""
    answer = (reference,) if reference else ()
    if heldout:
        user = tuple(text for role, text in turns if role == "user")
        return TextItem(name, id_, user + answer, user)
    texts = tuple(text for role, text in turns if role != "system") + answer
    everything = tuple(text for _, text in turns) + answer
    return TextItem(name, id_, texts, everything)


def _code_job(checks: RowChecks, truth: str, reference: str | None, row: int, id_: str):
    """Parse code ground truth; a valid item with a reference yields its sandbox job."""
    from genbench_tasks.families import code_generation

    column = "reward_model.ground_truth"
    try:
        gt = code_generation.parse_ground_truth(truth)
    except ValueError as exc:
        checks.add("code_ground_truth_is_valid", column, row, id_, str(exc))
        return None
    for key, label in (("test", "test"), ("prompt", "prompt")):
        if key not in gt:
            continue
        try:
            tree = ast.parse(gt[key], f"<{label}>")
        except (SyntaxError, ValueError) as exc:
            where = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
            checks.add(
                "code_ground_truth_is_valid", column, row, id_, f"{label} does not compile{where}: {exc}"
            )
            return None
        if key == "test":
            problem = _check_problem(tree)
            if problem:
                checks.add("code_ground_truth_is_valid", column, row, id_, problem)
                return None
    if reference is None:
        return None
    return code_generation.sandbox_job(reference, gt)


def _check_problem(tree: ast.Module) -> str | None:
    """The test must define check(candidate) and use its argument (else every solution passes)."""
    check = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "check"),
        None,
    )
    if check is None:
        assigned = any(
            isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "check" for t in n.targets)
            for n in tree.body
        )
        return None if assigned else "test defines no check(candidate)"
    params = [a.arg for a in check.args.posonlyargs + check.args.args]
    if not params:
        return "check() takes no argument, expected check(candidate)"
    used = any(isinstance(n, ast.Name) and n.id == params[0] for stmt in check.body for n in ast.walk(stmt))
    return None if used else f"check never uses {params[0]!r}: every solution would pass"


def check_sft(name: str, split: str, table: pa.Table) -> RowChecks:
    """Texts of an SFT dataset (prompt and response strings)."""
    checks = RowChecks(name, table.num_rows)
    checks.checks |= {"text_has_no_control_characters", "text_is_not_blank"}
    columns = {n: table[n].to_pylist() for n in table.column_names}
    empty = [None] * table.num_rows
    for row, (id_, source, prompt, response) in enumerate(
        zip(*(columns.get(c, empty) for c in ("id", "data_source", "prompt", "response")), strict=True)
    ):
        label = id_ if isinstance(id_, str) else f"row{row}"
        for column, value in (("id", id_), ("data_source", source)):
            _text(checks, column, value, row, label)
        prompt = _text(checks, "prompt", prompt, row, label)
        response = _text(checks, "response", response, row, label)
        if prompt is not None:
            checks.items.append(_item(name, label, [("user", prompt)], response, split != "train"))
    return checks


def add_reference_results(checks: RowChecks, results: list) -> None:
    """Record reference solutions that did not pass their own test (a data error)."""
    for job, result in zip(checks.code_jobs, results, strict=True):
        if not result.passed:
            checks.add(
                "reference_solution_passes_its_test",
                "extra_info.reference",
                job.row,
                job.id,
                f"{result.status}: {result.reason}",
            )


def invalid_utf8(table: pa.Table) -> list[tuple[str, int]]:
    """(column path, row) of every string value that is not valid UTF-8; [] when the table validates."""
    try:
        table.validate(full=True)
        return []
    except pa.ArrowInvalid:
        pass
    found: list[tuple[str, int]] = []
    for name in table.column_names:
        array = table[name].combine_chunks()
        _scan_utf8(array, name, list(range(len(array))), found)
    return found


def _scan_utf8(array: pa.Array, path: str, rows: list[int], found: list[tuple[str, int]]) -> None:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        raw = array.view(pa.large_binary() if pa.types.is_large_string(kind) else pa.binary()).to_pylist()
        for value, row in zip(raw, rows, strict=True):
            if value is not None:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    found.append((path, row))
    elif pa.types.is_struct(kind):
        for child, child_field in zip(array.flatten(), kind, strict=True):
            _scan_utf8(child, f"{path}.{child_field.name}", rows, found)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        parents = pc.list_parent_indices(array).to_pylist()
        _scan_utf8(array.flatten(), path, [rows[i] for i in parents], found)


def utf8_failure(table: pa.Table, found: list[tuple[str, int]]) -> list[FailedExpectation]:
    """One failure per column holding undecodable text."""
    by_column: dict[str, list[int]] = {}
    for column, row in found:
        by_column.setdefault(column, []).append(row)
    out = []
    for column, rows in by_column.items():
        unique = sorted(set(rows))
        out.append(
            FailedExpectation(
                expectation="text_is_valid_utf8",
                column=column,
                details=(
                    f"{len(unique)} of {table.num_rows} rows hold bytes that are not valid UTF-8 "
                    f"(expected {EXPECTED['text_is_valid_utf8']}); first at row {unique[0]}; "
                    "the other checks of this dataset were skipped"
                ),
                sample_offending_rows=[{"row": r} for r in unique[:MAX_SAMPLE_ROWS]],
            )
        )
    return out
