"""In-process tests of the sandbox harness's pure pieces (framing, the literal codec, reasons, exit reports).

End-to-end behaviour inside the sandbox is covered by test_sandbox.py; here the harness module is imported
directly, which is side-effect free.
"""

from __future__ import annotations

import ast
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from genbench_tasks.scoring import sandbox
from genbench_tasks.scoring import sandbox_harness as h


def test_harness_imports_only_the_standard_library() -> None:
    tree = ast.parse(sandbox._HARNESS_PATH.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names and names <= set(sys.stdlib_module_names)


def test_harness_runs_in_an_isolated_interpreter() -> None:
    """The bootstrap runs it as __main__ under -I -S: importing it there must work without site-packages."""
    boot, code = sandbox._harness()
    probe = "import marshal, sys\nexec(marshal.loads(sys.stdin.buffer.read()), {'__name__': 'harness'})\n"
    done = subprocess.run([*boot[:-1], probe], input=code, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert boot[-1].count("exec(marshal.loads(b))") == 1


class Odd(int):
    def __eq__(self, other: object) -> bool:  # a hostile subclass: only its int data may cross
        return True

    __hash__ = int.__hash__


class L(list):
    pass


VALUES = [
    None,
    True,
    -3,
    2**100,
    1.5,
    float("inf"),
    -float("inf"),
    "naïve\n'\"",
    b"\x00\xff",
    [1, [2, (3,)]],
    (),
    (1,),
    {"a": {1: [None]}},
    {1, 2},
    frozenset({"x"}),
    complex(1.0, -2.0),
    bytearray(b"ab"),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_enc_dec_round_trip(value: object) -> None:
    text = h.enc(value)
    assert h.dec(text) == value and type(h.dec(text)) is type(value)
    assert h.trusted(text) == value


def test_enc_reduces_subclasses_to_builtin_data() -> None:
    assert h.enc(Odd(3)) == "3"
    assert h.dec(h.enc(L([Odd(1)]))) == [1]
    assert type(h.dec(h.enc(L([1])))) is list


def test_enc_rejects_other_types_and_deep_nesting() -> None:
    with pytest.raises(TypeError, match="cannot cross the sandbox boundary"):
        h.enc(object())
    deep: list = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        h.enc(deep)


def test_nan_survives_the_codec() -> None:
    assert h.dec(h.enc(float("nan"))) != h.dec(h.enc(float("nan")))


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "open('/etc/passwd')",
        "x",
        "(1).real",
        "set([1], key=2)",
        "complex(1, 2)",
        "bytearray('s')",
        "set((1,))",
        "{**{}}",
        "-'a'",
        "-True",
        "lambda: 0",
        "[i for i in ()]",
    ],
)
def test_dec_evaluates_nothing(text: str) -> None:
    with pytest.raises(ValueError, match="malformed value"):
        h.dec(text)


def test_literal_rejects_deep_nesting() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        h.literal(ast.parse("[1]", mode="eval").body, 201)


def test_frames_over_a_pipe() -> None:
    r, w = os.pipe()
    try:
        h.send(w, ("call", "f", [1, "x"], {"k": b"v"}))
        assert h.recv(r) == ("call", "f", [1, "x"], {"k": b"v"})
        os.write(w, (h.MAX_MSG + 1).to_bytes(8, "big"))
        with pytest.raises(ValueError, match="exceeds the sandbox limit"):
            h.recv(r)
        os.write(w, b"abc")
        os.close(w)
        w = -1
        with pytest.raises(EOFError):
            h.read_exact(r, 4)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_read_frame_parses_trusted_config() -> None:
    r, w = os.pipe()
    try:
        os.write(w, sandbox._frame({"sock": 5, "isolate": True, "site": ["/a", "/b"]}))
        assert h.read_frame(r) == {"sock": 5, "isolate": True, "site": ["/a", "/b"]}
    finally:
        os.close(r)
        os.close(w)


def test_short_collapses_whitespace_and_truncates() -> None:
    assert h.short("a\n\t b") == "a b"
    assert h.short("x" * 200, 10) == "xxxxxxx..."


def test_describe_names_the_line_in_the_given_file() -> None:
    try:
        exec(compile("x = 1\nraise ValueError('bad\\nthing')\n", "<test>", "exec"), {})
    except ValueError as e:
        assert h.describe(e, "<test>") == "ValueError at test line 2: bad thing"
    try:
        compile("def f(:\n", "<candidate>", "exec")
    except SyntaxError as e:
        assert h.describe(e, "<candidate>").startswith("SyntaxError at candidate line 1")

    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert h.describe(Hostile(), "<test>") == "exception: <unprintable>"
    e = KeyError("k")
    e.from_candidate = True
    assert h.describe(e, "<test>") == "KeyError from candidate: 'k'"


def test_names_of_walks_nested_code() -> None:
    code = compile(
        "def check(c):\n    def inner():\n        return helper(c)\n    return inner()\n", "<t>", "exec"
    )
    assert {"check", "helper"} <= h.names_of(code)


def exited(pid: int) -> int:
    """Wait until the child has ended but leave it to be reaped, as A is when its channel closes."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    return pid


def test_exit_text_and_candidate_status() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    assert h.candidate_status(exited(pid), 10, state := {}) == "candidate process exited with status 3"
    assert state == {}
    pid = os.fork()
    if pid == 0:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), signal.SIGXCPU)
        os._exit(0)
    assert h.candidate_status(exited(pid), 10, state) == "CPU time limit 10s exceeded" and state["timeout"]
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)
    assert h.candidate_status(exited(pid), 10, {}) == "candidate process killed by SIGTERM"
    pid = os.fork()
    if pid == 0:
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert h.exit_text(status) == "exit 1"
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert h.exit_text(status) == "killed by SIGKILL"


def test_a_candidate_alive_after_closing_its_channel_is_killed_and_reaped() -> None:
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    assert h.candidate_status(pid, 10, {}, grace_s=0.2) == "candidate process closed the harness channel"
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_count_tasks_counts_this_process() -> None:
    assert h.count_tasks(os.getuid()) >= 1
