"""Sandbox for untrusted model-generated code: run a program against HumanEval-style unit tests.

Isolation (``bubblewrap`` mode): each worker is a bubblewrap sandbox with its own mount, PID, network (loopback
only, down), IPC and UTS namespaces; only the interpreter, its libraries and the venv are visible, read-only,
and the environment is cleared. Inside it a zygote (the pre-started harness) forks one sample at a time, and
every sample gets fresh mount (private size-capped ``/tmp`` tmpfs, its own ``/proc``), PID, IPC and UTS
namespaces of its own before any untrusted code runs. The sample drops to a dedicated unprivileged uid per
worker slot (no capabilities, ``no_new_privs``), so ``RLIMIT_NPROC`` applies (the kernel exempts root) and one
worker can neither signal nor starve another; rlimits cap CPU time, address space, file size and process count;
a wall-clock timeout kills the sample, and anything abnormal (timeout, output limit, processes that outlived the
test, a dead harness) discards the whole worker and drains its uid. Without root, each sample is instead a fresh
unprivileged bubblewrap sandbox.

Without bubblewrap (missing, unusable, or ``GENBENCH_SANDBOX=rlimits``) the same harness runs with the strongest
isolation the host grants, each layer best effort and reported: rlimits and a private working directory (removed
after the sample) always; the per-slot uid as root; where unshare(2) is allowed (root with CAP_SYS_ADMIN) mount,
PID, network, IPC and UTS namespaces with fresh /tmp, /dev/shm and /var/tmp; and, where the kernel has Landlock
(Linux >= 5.13; ABI 4 adds TCP, ABI 6 signal/abstract-socket scoping), a candidate that can read and execute
only the interpreter, system libraries and venv, write only its working directory, open no TCP connection and
signal nothing outside itself, so input files (the JSONL holding the tests), /etc/passwd and the host's temp
dirs stay out of reach even without namespaces. Unprivileged hosts get no namespaces here (that needs the user
namespaces bubblewrap itself uses); without Landlock too, world-readable files stay readable. Every result
carries ``isolation`` (what ran), and each distinct value is logged once.

Item helpers: a HumanEval-style prompt (passed as ``prelude``) runs in the test process after the candidate
loaded, so helpers the test calls (``encode_cyclic``) are the item's own, never the candidate's replacement.

Verdict integrity: the candidate and the tests run in *two* processes. The harness forks; the child (A) closes
the verdict pipe and then executes the candidate program; the parent (B) is non-dumpable (A can neither ptrace
it nor read its memory, environment or file descriptors), reads the test source (which A never sees), defines
``check`` and calls it with a proxy: every call to a candidate function is forwarded to A over a pipe with
plain-data arguments and results (Python literals, parsed by B as an AST of literals only), so comparisons,
assertions and ``check`` itself run where the candidate cannot reach. Only B holds the verdict pipe. Printing a
fake success line, exiting early (any exit code), raising ``SystemExit``, patching ``check``/builtins, returning
an object whose ``__eq__`` is always true, or killing the harness all end in ``failed``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import marshal
import os
import queue
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field

from genbench_tasks.errors import GenbenchError

log = logging.getLogger(__name__)

Mode = Literal["bubblewrap", "rlimits"]
ENV_VAR = "GENBENCH_SANDBOX"


class SandboxLimits(BaseModel):
    """Resource limits for one sample (rlimits apply per process inside the sandbox)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(10.0, gt=0, description="wall clock for the whole sample, startup included")
    cpu_s: int = Field(10, gt=0, description="RLIMIT_CPU per process")
    memory_mb: int = Field(1024, gt=0, description="RLIMIT_AS per process")
    file_size_mb: int = Field(16, gt=0, description="RLIMIT_FSIZE; the private tmpfs holds 4x this")
    max_processes: int = Field(64, gt=1, description="RLIMIT_NPROC for the sandbox's uid (threads count)")
    max_output_kb: int = Field(64, gt=0, description="stdout+stderr beyond this fails the sample")


class SandboxResult(BaseModel):
    """Outcome of one sample; ``reason`` is a short single line."""

    model_config = ConfigDict(frozen=True)

    status: Literal["passed", "failed", "timeout", "error"]
    reason: str
    duration_s: float
    # What confined the candidate: "bubblewrap", or "rlimits: <namespaces>, <landlock>, <uid>".
    isolation: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# The harness (``sandbox_harness``, standard library only) runs inside the sandbox; its docstring describes
# the stdin/verdict-fd protocol.
_HARNESS_PATH = Path(__file__).with_name("sandbox_harness.py")

_UID_BASE = 1 << 30  # private uids: BASE + (host pid << 8) + slot, below 2**31 and clear of real accounts
_MAX_SLOTS = 256
_slot_lock = threading.Condition()
_free_slots: list[int] = []
_next_slot = 0
_warned: set[str] = set()


def _is_root() -> bool:
    return os.geteuid() == 0


class _Slot:
    """A worker slot: its private uid (None when not root) and whether it may be reused."""

    def __init__(self, index: int | None) -> None:
        self.index = index
        self.uid = None if index is None else _UID_BASE + ((os.getpid() & 0x3FFFFF) << 8) + index
        self.reusable = True


@contextlib.contextmanager
def _slot() -> Iterator[_Slot]:
    """A uid no other running sandbox uses; a slot whose processes could not be drained is retired."""
    global _next_slot
    if not _is_root():
        yield _Slot(None)
        return
    with _slot_lock:
        while not _free_slots and _next_slot >= _MAX_SLOTS:
            _slot_lock.wait()
        if _free_slots:
            index = _free_slots.pop()
        else:
            index, _next_slot = _next_slot, _next_slot + 1
    slot = _Slot(index)
    try:
        yield slot
    finally:
        with _slot_lock:
            if slot.reusable:
                _free_slots.append(index)
            _slot_lock.notify()


def _uid_pids(uid: int) -> list[int]:
    """Processes (zombies included: they still count against RLIMIT_NPROC) whose real uid is uid."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Uid:"):
                            if int(line.split()[1]) == uid:
                                pids.append(int(entry.name))
                            break
            except (OSError, ValueError):
                continue
    return pids


def _drain(slot: _Slot, timeout: float = 10.0) -> None:
    """Kill whatever still runs as the slot's uid and wait until it is reaped, so the next sample on this
    slot gets its full RLIMIT_NPROC budget; retire the slot if that does not happen in time."""
    if slot.uid is None:
        return
    deadline = time.monotonic() + timeout
    while _uid_pids(slot.uid):
        if time.monotonic() > deadline:
            slot.reusable = False
            _warn(f"sandbox uid {slot.uid} still has processes after {timeout:g}s; slot retired", once=False)
            return
        _reap_uid(slot.uid)
        time.sleep(0.02)


def _site_dirs() -> list[str]:
    """The venv's site-packages (added by the harness; .pth files are not processed)."""
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


def _bind_roots() -> list[str]:
    """Host directories the sandbox sees read-only: system libraries, the interpreter and the venv."""
    wanted = [
        "/usr",
        sys.base_prefix,
        sys.prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        *_site_dirs(),
    ]
    roots: list[str] = []
    for p in sorted({os.path.realpath(p) for p in wanted} | {os.path.abspath(p) for p in wanted}):
        if os.path.isdir(p) and not any(p == r or p.startswith(r + "/") for r in roots):
            roots.append(p)
    return roots


@functools.cache
def _read_roots() -> list[str]:
    """What a candidate may read in rlimits mode (Landlock): the bubblewrap binds plus the top-level lib dirs."""
    tops = [os.path.realpath(p) for p in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")]
    return sorted({*_bind_roots(), *(p for p in tops if os.path.isdir(p))} - {"/"})


def _bwrap_argv(tmpfs_bytes: int, zygote: bool = False) -> list[str]:
    """bubblewrap command line; a zygote keeps CAP_SYS_ADMIN to give each sample its own namespaces."""
    caps = ["--cap-add", "CAP_SYS_ADMIN"] if zygote else []
    size = ["--size", str(tmpfs_bytes), "--perms", "01777", "--tmpfs", "/tmp"]
    return [*_bwrap_base(), *caps, *size, "--remount-ro", "/", "--chdir", "/tmp", "--"]


@functools.lru_cache(maxsize=1)
def _bwrap_base() -> tuple[str, ...]:
    """Namespaces, read-only binds of the interpreter/venv/system libraries, /proc, /dev, clean env."""
    bwrap = shutil.which("bwrap") or "bwrap"
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if _is_root():  # privileged bwrap; the harness drops to the slot uid (keeping only the caps to do so)
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    argv.append("--clearenv")
    for name, value in _clean_env("/tmp").items():
        argv += ["--setenv", name, value]
    roots = _bind_roots()
    parents = sorted({a for r in roots for a in _ancestors(r)} - set(roots))
    for d in parents:
        argv += ["--perms", "0755", "--dir", d]
    for r in roots:
        argv += ["--ro-bind", r, r]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--proc", "/proc", "--dev", "/dev"]
    return tuple(argv)


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _python_argv() -> list[str]:
    return [sys.executable, "-I", "-S", "-B", "-c"]


def _clean_env(home: str) -> dict[str, str]:
    """The whole environment of a sandboxed process (bubblewrap: --clearenv, then these)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home}


def _spawn(argv: list[str], stdout: int, stderr: int, pass_fd: int, env: dict, cwd: str) -> subprocess.Popen:
    """Start the harness bootstrap (under ``argv``, bubblewrap's, if any) in a session of its own; the
    precompiled harness goes to its stdin."""
    boot, _ = _harness()
    return subprocess.Popen(
        [*argv, *boot],
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=stderr,
        pass_fds=(pass_fd,),
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


@functools.cache
def _harness() -> tuple[list[str], bytes]:
    """Bootstrap argv + the precompiled harness it reads from stdin (compiling it per sandbox would cost more
    than starting Python)."""
    code = marshal.dumps(compile(_HARNESS_PATH.read_bytes(), str(_HARNESS_PATH), "exec"))
    n = len(code)
    boot = (
        f"import marshal, os\nb = b''\nwhile len(b) < {n}:\n    c = os.read(0, {n} - len(b))\n"
        "    if not c:\n        raise SystemExit('harness: short read')\n    b += c\nexec(marshal.loads(b))\n"
    )
    return [*_python_argv(), boot], code


@functools.cache
def _bwrap_problem() -> str | None:
    """None if bubblewrap works on this host with our options, else why not (probed once, end to end)."""
    if shutil.which("bwrap") is None:
        return "bwrap not found on PATH"
    hidden = [r for r in _bind_roots() if r == "/tmp" or r.startswith("/tmp/")]
    if hidden:
        # The sandbox's private /tmp (per worker and per sample) would hide these read-only binds.
        return f"the interpreter/venv lives under /tmp ({hidden[0]}), which the sandbox's private /tmp hides"
    probe = "def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n", "f"
    try:
        with _slot() as slot, _Seat("bubblewrap", slot) as seat:
            result = seat.run(*probe, SandboxLimits(timeout_s=30))
    except Exception as e:  # any failure to run the probe means: not usable here
        return f"bwrap probe failed: {type(e).__name__}: {e}"
    return None if result.passed else f"bwrap probe failed: {result.reason}"


def _warn(message: str, once: bool) -> None:
    if once and message in _warned:
        return
    _warned.add(message)
    log.warning(message)


def _resolve_mode(warn_once: bool) -> Mode:
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in ("auto", "bubblewrap", "bwrap", "rlimits"):
        raise GenbenchError(f"{ENV_VAR} must be auto, bubblewrap or rlimits, not {choice!r}")
    if choice == "rlimits":
        mode: Mode = "rlimits"
        _warn(
            f"{ENV_VAR}=rlimits: sandbox without bubblewrap (rlimits, plus namespaces and Landlock where "
            "this host allows them; the isolation achieved is logged and reported per sample)",
            warn_once,
        )
    else:
        problem = _bwrap_problem()
        if problem is None:
            return "bubblewrap"
        if choice != "auto":
            raise GenbenchError(f"{ENV_VAR}={choice} but bubblewrap is unusable: {problem}")
        mode = "rlimits"
        _warn(
            f"bubblewrap unusable ({problem}); sandbox falls back to rlimits (plus namespaces and Landlock "
            "where this host allows them)",
            warn_once,
        )
    if not _is_root():
        _warn(
            "rlimits sandbox without root: candidates run as the host user (no privilege separation)",
            warn_once,
        )
    return mode


def sandbox_mode() -> Mode:
    """The isolation this host uses ("bubblewrap", else "rlimits" with a logged warning)."""
    return _resolve_mode(warn_once=False)


def _literal(value: object) -> str:
    """The harness config as a Python literal (the harness parses it without importing json)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_literal(k)}:{_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return ascii(value)
    return repr(value)


@functools.cache
def _suid_dumpable() -> int:
    try:
        return int(open("/proc/sys/fs/suid_dumpable").read())
    except (OSError, ValueError):
        return -1


def _result(status: str, reason: str, start: float, isolation: str = "") -> SandboxResult:
    reason = " ".join(reason.split())
    return SandboxResult(
        status=status,
        reason=reason[:200],
        duration_s=round(time.monotonic() - start, 4),
        isolation=isolation,
    )


def _reap_uid(uid: int) -> None:
    """SIGKILL every process of a slot uid (catches setsid()-escaped children in rlimits mode)."""
    kill = shutil.which("kill", path="/usr/bin:/bin")
    if kill is None:
        _warn("no kill binary: escaped sandbox processes are not reaped", once=True)
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([kill, "-9", "-1"], user=uid, group=uid, extra_groups=[], env={}, timeout=10, **_QUIET)


_QUIET = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def _config(
    program: str,
    entry_point: str,
    limits: SandboxLimits,
    mode: Mode,
    uid: int | None,
    tmp: str,
    prelude_len: int = 0,
) -> dict:
    return {
        "uid": uid,
        "tmp": tmp,
        "confine": mode == "rlimits",
        "read_roots": _read_roots(),
        "prelude_len": prelude_len,
        "tmpfs": 4 * limits.file_size_mb << 20,
        "userns": mode == "bubblewrap",
        "suid_dumpable": _suid_dumpable(),
        "site": _site_dirs(),
        "entry": entry_point,
        "program": program,
        "limits": {
            "cpu": limits.cpu_s,
            "as": limits.memory_mb << 20,
            "fsize": limits.file_size_mb << 20,
            "nproc": limits.max_processes,
        },
    }


def _frame(value: dict) -> bytes:
    data = _literal(value).encode()
    return len(data).to_bytes(8, "big") + data


class _Seat:
    """Runs samples one at a time for one worker slot.

    As root, a zygote -- the harness, started once per seat (inside a bubblewrap sandbox in bubblewrap mode)
    -- forks each sample, which saves starting bubblewrap and Python per sample; in bubblewrap mode every
    sample still gets fresh mount (/tmp), PID, network, IPC and UTS namespaces (``isolate`` in the harness).
    After anything abnormal (timeout, output limit, leftover processes, harness death) the zygote is discarded
    and the slot's uid drained, so the next sample starts clean. Without root (no uid to drop to, no
    CAP_SYS_ADMIN) each sample is a fresh bubblewrap/Python process instead.
    """

    def __init__(self, mode: Mode, slot: _Slot) -> None:
        self.mode, self.slot = mode, slot
        self.zygote: subprocess.Popen | None = None
        self.sock: socket.socket | None = None

    def __enter__(self) -> _Seat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.zygote is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.zygote.pid, signal.SIGKILL)
            self.zygote.wait()
            if self.zygote.stderr is not None:
                self.zygote.stderr.close()
            self.zygote = None

    def _start_zygote(self) -> None:
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = _bwrap_argv(1 << 20, zygote=True) if self.mode == "bubblewrap" else []
        _, code = _harness()
        try:
            proc = _spawn(
                argv,
                subprocess.DEVNULL,
                subprocess.PIPE,
                child.fileno(),
                {} if argv else _clean_env("/tmp"),
                "/",
            )
        finally:
            sock_fd = child.fileno()
            child.close()
        self.zygote, self.sock = proc, host
        try:
            proc.stdin.write(code + _frame({"sock": sock_fd, "isolate": self.mode == "bubblewrap"}))
            proc.stdin.close()
            host.settimeout(60)
            ready = host.recv(16)
            host.settimeout(None)
        except OSError:
            ready = b""
        if ready != b"ready":
            self.close()
            raise OSError(f"sandbox worker failed to start: {_first_line(proc)}")

    def run(
        self, program: str, test: str, entry_point: str, limits: SandboxLimits, prelude: str = ""
    ) -> SandboxResult:
        start = time.monotonic()
        workdir = None
        if self.mode == "rlimits":
            workdir = tempfile.mkdtemp(prefix="genbench-sbx-")
            if self.slot.uid is not None:
                os.chown(workdir, self.slot.uid, self.slot.uid)
        try:
            prelude_bytes = prelude.encode("utf-8", "surrogatepass")
            cfg = _config(
                program, entry_point, limits, self.mode, self.slot.uid, workdir or "/tmp", len(prelude_bytes)
            )
            test_bytes = prelude_bytes + test.encode("utf-8", "surrogatepass")
            if self.slot.uid is None:
                result, dirty = self._run_process(cfg, test_bytes, limits, start, workdir)
            else:
                result, dirty = self._run_forked(cfg, test_bytes, limits, start)
        finally:
            if workdir is not None:
                _remove_tree(workdir)
        if dirty:
            self.close()
            _drain(self.slot)
        return result

    def _run_forked(
        self, cfg: dict, test_bytes: bytes, limits: SandboxLimits, start: float
    ) -> tuple[SandboxResult, bool]:
        if self.zygote is None or self.zygote.poll() is not None:
            self.close()
            try:
                self._start_zygote()
            except OSError as e:
                return _result("error", str(e), start), True
        assert self.sock is not None
        (in_r, in_w), (out_r, out_w), (vr, vw) = os.pipe(), os.pipe(), os.pipe()
        try:
            socket.send_fds(self.sock, [b"go"], [in_r, out_w, vw])
        except OSError as e:
            for fd in (in_w, out_r, vr):
                os.close(fd)
            return _result("error", f"sandbox worker died: {e}", start), True
        finally:
            for fd in (in_r, out_w, vw):
                os.close(fd)
        stdin = os.fdopen(in_w, "wb", buffering=0)  # closed exactly once, by whoever gets there first
        try:
            return _supervise(stdin, out_r, vr, _frame(cfg) + test_bytes, limits, start, None)
        finally:
            stdin.close()
            os.close(out_r)
            os.close(vr)

    def _run_process(
        self, cfg: dict, test_bytes: bytes, limits: SandboxLimits, start: float, workdir: str | None
    ) -> tuple[SandboxResult, bool]:
        """Unprivileged host: one bubblewrap/Python process per sample."""
        _, code = _harness()
        vr, vw = os.pipe()
        if self.mode == "bubblewrap":
            argv, env, cwd = _bwrap_argv(cfg["tmpfs"]), {}, "/"
        else:
            argv, env, cwd = [], _clean_env(workdir), workdir
        try:
            proc = _spawn(argv, subprocess.PIPE, subprocess.STDOUT, vw, env, cwd)
        except OSError as e:
            os.close(vr)
            return _result("error", f"sandbox failed to start: {e}", start), False
        finally:
            os.close(vw)
        payload = code + _frame({**cfg, "vfd": vw}) + test_bytes
        try:
            return _supervise(proc.stdin, proc.stdout.fileno(), vr, payload, limits, start, proc)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            os.close(vr)


def _remove_tree(path: str) -> None:
    """Remove a sample's working directory, including what the candidate made unwritable (chmod 000 dirs)."""
    try:
        shutil.rmtree(path)
        return
    except OSError:
        pass
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    for root, dirs, _ in os.walk(path):  # top-down: each directory is opened up before it is entered
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, name), 0o700)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        _warn(f"sandbox working directory {path} could not be removed", once=False)


_last_isolation = ""


def last_isolation() -> str:
    """What confined the most recent sample in this process ("" before any ran)."""
    return _last_isolation


def _note_isolation(isolation: str) -> None:
    """Log, once per distinct value, what confined the candidates (the mode that actually ran)."""
    global _last_isolation
    if isolation:
        _last_isolation = isolation
    if isolation and f"isolation:{isolation}" not in _warned:
        _warned.add(f"isolation:{isolation}")
        log.info("sandbox isolation: %s", isolation)


def _first_line(proc: subprocess.Popen) -> str:
    """First line a dead zygote wrote to stderr (e.g. bubblewrap's error)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    text = (
        proc.stderr.read().decode("utf-8", "replace").strip()
        if proc.stderr and proc.poll() is not None
        else ""
    )
    return (text.splitlines() or [f"exit {proc.returncode}"])[-1]


def _supervise(
    stdin: io.RawIOBase | IO[bytes],
    out_r: int,
    vr: int,
    payload: bytes,
    limits: SandboxLimits,
    start: float,
    proc: subprocess.Popen | None,
) -> tuple[SandboxResult, bool]:
    """Feed stdin, cap the output, read the verdict until the test process is gone or the deadline passes.

    Returns the result and whether processes may have outlived the sample ("dirty")."""
    deadline = start + limits.timeout_s
    max_out = limits.max_output_kb << 10
    in_w = stdin.fileno()
    for fd in (in_w, out_r, vr):
        os.set_blocking(fd, False)
    sel = selectors.DefaultSelector()
    sel.register(out_r, selectors.EVENT_READ)
    sel.register(vr, selectors.EVENT_READ)
    sel.register(in_w, selectors.EVENT_WRITE)
    head, out_total, verdict = bytearray(), 0, bytearray()
    timed_out = exceeded = verdict_eof = False
    try:
        while not verdict_eof and not exceeded:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in sel.select(remaining):
                fd = key.fd
                if fd == in_w:
                    try:
                        payload = payload[os.write(fd, payload[: 1 << 16]) :]
                    except BrokenPipeError:
                        payload = b""
                    if not payload:
                        sel.unregister(fd)
                        stdin.close()
                    continue
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if fd == vr:
                    verdict += data[: max(0, 4096 - len(verdict))]
                    verdict_eof = not data
                    if verdict_eof:
                        sel.unregister(fd)
                elif not data:
                    sel.unregister(fd)
                else:
                    out_total += len(data)
                    head += data[: max(0, 2048 - len(head))]
                    exceeded = out_total > max_out
        if proc is not None and not timed_out and not exceeded:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            timed_out = proc.returncode is None
    finally:
        sel.close()
    lines = verdict.decode("utf-8", "replace").splitlines() if verdict.endswith(b"\n") else []
    codes = [ln for ln in lines if ln[:1] in ("P", "F", "T", "E") and ln[1:2] in ("", " ")]
    code, _, reason = (codes[-1] if codes else "").partition(" ")
    isolation = next((ln[2:] for ln in lines if ln.startswith("I ")), "")
    _note_isolation(isolation)
    result = functools.partial(_result, start=start, isolation=isolation)
    dirty = timed_out or exceeded or not codes or "L" in lines
    if timed_out:
        return result("timeout", f"wall-clock timeout {limits.timeout_s:g}s"), dirty
    if exceeded:
        return result("failed", f"output exceeded {limits.max_output_kb} KiB"), dirty
    if not lines or lines[0] != "R":
        first = head.decode("utf-8", "replace").strip().splitlines()
        why = first[0] if first else f"exit {proc.returncode if proc else '?'}"
        return result("error", f"sandbox failed to start: {why}"), dirty
    if code == "P":
        return result("passed", "all tests passed"), dirty
    if code in ("F", "T", "E"):
        return result({"F": "failed", "T": "timeout", "E": "error"}[code], reason), dirty
    ends = [ln[2:] for ln in lines if ln.startswith("X ")]
    rc = proc.returncode if proc is not None else None
    how = ends[-1] if ends else (f"killed by {signal.Signals(-rc).name}" if rc and rc < 0 else f"exit {rc}")
    return result("failed", f"test harness died before a verdict ({how})"), dirty


def run_tests(
    program: str,
    test: str,
    entry_point: str,
    limits: SandboxLimits | None = None,
    prelude: str = "",
) -> SandboxResult:
    """Run ``check(entry_point)`` from ``test`` against ``program`` in a fresh sandbox.

    ``prelude`` (a HumanEval-style item's prompt) runs on the test side, after the candidate loaded: its
    definitions, e.g. the ``encode_cyclic`` helper a test calls, are the item's own, not the candidate's."""
    limits = limits or SandboxLimits()
    if not entry_point.isidentifier():
        return _result("error", f"invalid entry point {entry_point!r}", time.monotonic())
    mode = _resolve_mode(warn_once=True)
    with _slot() as slot, _Seat(mode, slot) as seat:
        return seat.run(program, test, entry_point, limits, prelude)


def run_many(
    items: Iterable[tuple[str, str, str] | tuple[str, str, str, str]],
    limits: SandboxLimits | None = None,
    workers: int | None = None,
) -> list[SandboxResult]:
    """run_tests over (program, test, entry_point[, prelude]) items in parallel, keeping the input order."""
    items = list(items)
    if not items:
        return []
    limits = limits or SandboxLimits()
    mode = _resolve_mode(warn_once=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(items)))
    with contextlib.ExitStack() as stack:
        seats: queue.SimpleQueue[_Seat] = queue.SimpleQueue()
        for _ in range(workers):
            seats.put(stack.enter_context(_Seat(mode, stack.enter_context(_slot()))))

        def one(item: tuple[str, ...]) -> SandboxResult:
            program, test, entry_point, *rest = item
            if not entry_point.isidentifier():
                return _result("error", f"invalid entry point {entry_point!r}", time.monotonic())
            seat = seats.get()
            try:
                return seat.run(program, test, entry_point, limits, *rest)
            finally:
                seats.put(seat)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
            return list(pool.map(one, items))
