"""Sandbox for untrusted model-generated code: run a program against HumanEval-style unit tests.

Isolation (``bubblewrap`` mode): every sample runs in a fresh bubblewrap sandbox with its own mount, PID,
network, IPC and UTS namespaces. Only the interpreter, its libraries and the venv are visible, read-only; ``/tmp``
is a private size-capped tmpfs; the environment is cleared; the process gets no capabilities and
``no_new_privs``. When the host runs as root, the harness drops to a dedicated unprivileged uid per worker slot
(so ``RLIMIT_NPROC`` applies -- it is not enforced for root -- and one sandbox can neither signal nor starve
another). rlimits cap CPU time, address space, file size and process count; a wall-clock timeout kills the
whole sandbox. Where bubblewrap is missing or unusable (or ``GENBENCH_SANDBOX=rlimits``), the same harness runs
with rlimits, the per-slot uid and a private working directory only, and a warning is logged.

Verdict integrity: the candidate and the tests run in *two* processes. The harness forks; the child (A) closes
the verdict pipe and then executes the candidate program; the parent (B) makes itself non-dumpable (so A can
neither ptrace it nor read its memory or file descriptors), reads the test source (which A never sees), defines
``check`` and calls it with a proxy: every call to a candidate function is forwarded to A over a pipe with
plain-data arguments and results (JSON with tags for tuple/set/dict/bytes/complex), so the comparisons, the
assertions and ``check`` itself run where the candidate cannot reach. Only B holds the verdict pipe. Printing a
fake success line, exiting early (any exit code), raising ``SystemExit``, patching ``check``/builtins, returning
an object whose ``__eq__`` is always true, or killing the harness all end in ``failed``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

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

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# --------------------------------------------------------------------------------------------------------------
# The harness, run as ``python -I -S -B -c _HARNESS`` inside the sandbox. Protocol on stdin: 8-byte big-endian
# length + JSON config (program, entry point, limits, verdict fd, uid to drop to), then the test source up to
# EOF, which only the test process reads. Verdict fd lines: "R" once started, then one of "P", "F <reason>",
# "T <reason>" (CPU limit), "E <reason>" (broken test / harness).
_HARNESS = r'''
import os, sys, builtins, resource, _signal

MAX_MSG = 64 << 20
SIGKILL, SIGXCPU = _signal.SIGKILL, _signal.SIGXCPU
SIGNAMES = {getattr(_signal, n): n for n in dir(_signal) if n.startswith("SIG") and "_" not in n}


def read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def send(fd, obj):
    data = enc(obj).encode()
    data = len(data).to_bytes(8, "big") + data
    while data:
        data = data[os.write(fd, data):]


def recv(fd, parse=None):
    n = int.from_bytes(read_exact(fd, 8), "big")
    if n > MAX_MSG:
        raise ValueError("message of %d bytes exceeds the sandbox limit" % n)
    return (parse or dec)(read_exact(fd, n).decode())


def enc(x, depth=0):
    """Plain data -> Python literal text; subclasses are reduced to their builtin base's data (not methods)."""
    if depth > 100:
        raise ValueError("value nested too deeply")
    t = type(x)
    if x is None or t is bool or t is int or t is float or t is bytes:
        return repr(x)
    if t is str:
        return ascii(x)
    d = depth + 1
    if t is list:
        return "[" + ",".join([enc(v, d) for v in x]) + "]"
    if t is tuple:
        return "(" + "".join([enc(v, d) + "," for v in x]) + ")"
    if t is dict:
        return "{" + ",".join([enc(k, d) + ":" + enc(v, d) for k, v in x.items()]) + "}"
    if t is set or t is frozenset:
        return t.__name__ + "([" + ",".join([enc(v, d) for v in x]) + "])"
    if t is complex:
        return "complex(%r,%r)" % (x.real, x.imag)
    if t is bytearray:
        return "bytearray(%r)" % bytes(x)
    for base, items in ((list, list.__iter__), (tuple, tuple.__iter__), (set, set.__iter__), (frozenset, frozenset.__iter__)):
        if isinstance(x, base):
            return enc(base(items(x)), depth)
    if isinstance(x, dict):
        return enc(dict(dict.items(x)), depth)
    for base, conv in ((int, int.__int__), (float, float.__float__), (str, str.__str__), (bytes, bytes.__bytes__)):
        if isinstance(x, base):
            return enc(conv(x), depth)
    raise TypeError("values of type %s cannot cross the sandbox boundary" % t.__name__)


NUMBER = (int, float)
CALLS = {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}


def dec(text):
    """Strict parser for enc's output from an untrusted peer: literals only, nothing is evaluated."""
    global _ast
    import _ast
    return literal(compile(text, "<message>", "eval", 0x400).body)  # PyCF_ONLY_AST


def trusted(text):
    """Messages from the trusted side (host config, test process) are evaluated as literals directly."""
    return eval(text, {"__builtins__": {"set": set, "frozenset": frozenset, "bytearray": bytearray,
                                        "complex": complex, "inf": float("inf"), "nan": float("nan")}})


def literal(node, depth=0):
    if depth > 200:
        raise ValueError("value nested too deeply")
    d = depth + 1
    t = type(node)
    if t is _ast.Constant and type(node.value) in (int, float, str, bytes, bool, type(None)):
        return node.value
    if t is _ast.List:
        return [literal(e, d) for e in node.elts]
    if t is _ast.Tuple:
        return tuple([literal(e, d) for e in node.elts])
    if t is _ast.Dict and None not in node.keys:
        return {literal(k, d): literal(v, d) for k, v in zip(node.keys, node.values)}
    if t is _ast.UnaryOp and type(node.op) is _ast.USub:
        value = literal(node.operand, d)
        if type(value) in NUMBER and type(value) is not bool:
            return -value
    if t is _ast.Name and node.id in ("inf", "nan"):
        return float(node.id)
    if t is _ast.Call and type(node.func) is _ast.Name and node.func.id in CALLS and not node.keywords:
        args = [literal(a, d) for a in node.args]
        kind = node.func.id
        if kind == "complex" and len(args) == 2 and all(type(a) is float for a in args):
            return complex(*args)
        if kind == "bytearray" and len(args) == 1 and type(args[0]) is bytes:
            return bytearray(args[0])
        if kind in ("set", "frozenset") and len(args) == 1 and type(args[0]) is list:
            return CALLS[kind](args[0])
    raise ValueError("malformed value from the other sandbox process")


def short(text, n=160):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def describe(exc, filename):
    """'ValueError at <where> line N: message' from an exception, robust to hostile __str__."""
    try:
        name = type(exc).__name__
        msg = short(exc)
    except BaseException:
        name, msg = "exception", "<unprintable>"
    if getattr(exc, "from_candidate", False):
        name += " from candidate"
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    where = " at %s line %s" % (filename.strip("<>"), line) if line else ""
    return "%s%s%s" % (name, where, ": " + msg if msg else "")


def names_of(code):
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, type(code)):
            out |= names_of(c)
    return out


def candidate_main(program, rfd, wfd):
    """Process A: run the untrusted program and serve calls from the test process."""
    ns = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec(compile(program, "<candidate>", "exec"), ns)
    except BaseException as e:
        send(wfd, ("load_error", describe(e, "<candidate>")))
        os._exit(0)
    del program
    manifest = {}
    for name in recv(rfd, trusted):
        if name not in ns or name.startswith("__"):
            continue
        value = ns[name]
        if type(value) is type(os):
            manifest[name] = ("module", str(getattr(value, "__name__", "")))
        elif callable(value):
            manifest[name] = ("func",)
        else:
            try:
                enc(value)
                manifest[name] = ("data", value)
            except Exception:
                pass
    send(wfd, ("manifest", manifest))
    while True:
        try:
            _, name, args, kwargs = recv(rfd, trusted)
        except EOFError:
            os._exit(0)
        try:
            result = ns[name](*args, **kwargs)
            mutable = [(i, a) for i, a in enumerate(args) if type(a) in (list, dict, set, bytearray)]
            reply = enc(("ok", result, mutable))
        except BaseException as e:
            try:
                reply = enc(("raise", str(type(e).__name__), short(e, 300)))
            except BaseException:
                reply = enc(("raise", "Exception", "<unprintable>"))
        data = reply.encode()
        data = len(data).to_bytes(8, "big") + data
        while data:
            data = data[os.write(wfd, data):]


class CandidateError(Exception):
    """A non-builtin exception raised by the candidate."""


class CandidateAbort(BaseException):
    """The candidate exited, was killed or broke the protocol: never swallowed by `except Exception`."""


def candidate_status(pid, cpu_s, state):
    """Reap A after its channel closed; returns a reason and flags a CPU-limit kill."""
    import time
    for _ in range(50):
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, SIGKILL)
        os.wait4(pid, 0)
        return "candidate process closed the harness channel"
    cpu = usage.ru_utime + usage.ru_stime
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == SIGXCPU or (sig == SIGKILL and cpu >= cpu_s - 0.05):
            state["timeout"] = True
            return "CPU time limit %ss exceeded" % cpu_s
        return "candidate process killed by %s" % SIGNAMES.get(sig, sig)
    return "candidate process exited with status %d" % os.WEXITSTATUS(status)


def test_main(cfg, pid, wfd, rfd, vfd):
    """Process B: define check from the (trusted) test source and call it with proxies for the candidate."""
    state = {"abort": None, "timeout": False}
    entry = cfg["entry"]

    def final(line):
        leftovers = ""
        try:
            os.kill(pid, SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
        if cfg["uid"] is not None:
            try:
                os.kill(-1, SIGKILL)  # every other process of this sandbox's private uid
                leftovers = "L\n"  # tell the host to wait until they are gone before reusing the uid
            except OSError:
                pass
        os.write(vfd, (leftovers + short(line, 240) + "\n").encode("utf-8", "replace"))
        os._exit(0)

    def abort(reason):
        state["abort"] = state["abort"] or reason
        return CandidateAbort(state["abort"])

    def transmit(obj):
        try:
            send(wfd, obj)
        except BrokenPipeError:
            pass  # A is gone: the next receive() says why

    def receive(*shapes):
        try:
            msg = recv(rfd)
        except EOFError:
            raise abort(candidate_status(pid, cfg["limits"]["cpu"], state)) from None
        except (ValueError, SyntaxError, RecursionError, MemoryError, UnicodeDecodeError) as e:
            raise abort("bad message from candidate: " + short(e, 80)) from None
        if type(msg) is tuple and msg and (msg[0], len(msg)) in shapes:
            return msg
        raise abort("bad message from candidate")

    def proxy(name):
        def call(*args, **kwargs):
            if state["abort"]:
                raise CandidateAbort(state["abort"])
            transmit(("call", name, list(args), kwargs))
            reply = receive(("ok", 3), ("raise", 3))
            if reply[0] == "ok":
                if type(reply[2]) is not list:
                    raise abort("bad message from candidate")
                for item in reply[2]:
                    if type(item) is tuple and len(item) == 2 and type(item[0]) is int and 0 <= item[0] < len(args):
                        a, new = args[item[0]], item[1]
                        if type(a) is type(new) and type(a) in (list, bytearray):
                            a[:] = new
                        elif type(a) is type(new) and type(a) in (dict, set):
                            a.clear()
                            a.update(new)
                return reply[1]
            kind, msg = str(reply[1]), str(reply[2])
            exc_type = getattr(builtins, kind, None)
            if isinstance(exc_type, type) and issubclass(exc_type, BaseException):
                if not issubclass(exc_type, Exception):
                    raise abort("candidate raised %s" % kind)
                try:
                    exc = exc_type(msg)
                except Exception:
                    exc = CandidateError("%s: %s" % (kind, msg))
            else:
                exc = CandidateError("%s: %s" % (kind, msg))
            exc.from_candidate = True
            raise exc

        call.__name__ = call.__qualname__ = name
        return call

    try:
        chunks = []
        while True:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        code = compile(b"".join(chunks).decode("utf-8"), "<test>", "exec")
    except BaseException as e:
        final("E test source does not compile: " + describe(e, "<test>"))
    wanted = sorted({n for n in names_of(code) if not hasattr(builtins, n) and n != "check"} | {entry})
    ns = {"__name__": "__test__", "__builtins__": builtins}
    try:
        transmit(wanted)
        reply = receive(("load_error", 2), ("manifest", 2))
        if reply[0] == "load_error":
            final("F candidate failed to load: " + short(reply[1]))
        manifest = reply[1]
        for name in wanted:
            spec = manifest.get(name) if type(manifest) is dict else None
            if spec == ("func",):
                ns[name] = proxy(name)
            elif type(spec) is tuple and len(spec) == 2 and spec[0] == "data":
                ns[name] = spec[1]
            elif type(spec) is tuple and len(spec) == 2 and spec[0] == "module" and type(spec[1]) is str:
                if spec[1].split(".")[0] in sys.stdlib_module_names:
                    __import__(spec[1])
                    ns[name] = sys.modules[spec[1]]
    except CandidateAbort as e:
        final(("T " if state["timeout"] else "F ") + short(e))
    except Exception as e:
        final("F bad message from candidate: " + short(e, 80))
    if manifest.get(entry) != ("func",):
        final("F entry point %r is not a function defined by the program" % entry)
    try:
        exec(code, ns)
        check = ns["check"]
    except BaseException as e:
        final("E test source failed at import: " + describe(e, "<test>"))
    try:
        check(proxy(entry))
    except CandidateAbort as e:
        final(("T " if state["timeout"] else "F ") + short(e))
    except BaseException as e:
        final("F " + (state["abort"] or describe(e, "<test>")))
    if state["abort"]:
        final(("T " if state["timeout"] else "F ") + state["abort"])
    final("P")


def drop_privileges(uid):
    """Become the sandbox's private uid; stdlib dirs the uid cannot reach stay importable through fds."""
    fds = {}
    for p in sys.path:
        if p and os.path.isdir(p):
            fds[p] = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    remap = {}
    for p, fd in fds.items():
        if os.access(p, os.R_OK | os.X_OK):
            os.close(fd)
        else:
            remap[p] = "/proc/self/fd/%d" % fd
    if not remap:
        return

    def fix(path):
        for old, new in remap.items():
            if path == old or path.startswith(old + "/"):
                return new + path[len(old):]
        return path

    sys.path[:] = [fix(p) for p in sys.path]
    for mod in list(sys.modules.values()):
        paths = getattr(mod, "__path__", None)
        if type(paths) is list:
            paths[:] = [fix(p) for p in paths]
    sys.path_importer_cache.clear()


def count_tasks(uid):
    """Tasks (threads) of uid: RLIMIT_NPROC counts them all, so an unprivileged fallback adds its budget."""
    total = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat("/proc/" + pid).st_uid == uid:
                    total += len(os.listdir("/proc/%s/task" % pid))
            except OSError:
                pass
    return total


def prctl(option, arg):
    import ctypes
    ctypes.CDLL(None).prctl(option, arg, 0, 0, 0)


def main():
    cfg = trusted(read_exact(0, int.from_bytes(read_exact(0, 8), "big")).decode())
    vfd, lim, uid = cfg["vfd"], cfg["limits"], cfg["uid"]
    os.write(vfd, b"R\n")
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    sys.path.extend(p for p in cfg["site"] if os.path.isdir(p))
    nproc = lim["nproc"]
    if uid is None and os.getuid() != 0 and not cfg["userns"]:
        nproc += count_tasks(os.getuid())
    for res, val in (
        (resource.RLIMIT_CPU, (lim["cpu"], lim["cpu"] + 1)),
        (resource.RLIMIT_AS, (lim["as"], lim["as"])),
        (resource.RLIMIT_FSIZE, (lim["fsize"], lim["fsize"])),
        (resource.RLIMIT_NPROC, (nproc, nproc)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, val)
    if uid is not None:
        drop_privileges(uid)  # changing uid makes the process non-dumpable when fs.suid_dumpable is 0
    if uid is None or cfg["suid_dumpable"] != 0:
        prctl(4, 0)  # PR_SET_DUMPABLE=0: A can neither ptrace B nor open /proc/B/{mem,fd,environ}
    os.chdir(cfg["tmp"])
    call_r, call_w = os.pipe()
    reply_r, reply_w = os.pipe()
    program = cfg.pop("program")
    pid = os.fork()
    if pid == 0:
        os.close(vfd)
        os.close(0)
        os.open(os.devnull, os.O_RDONLY)  # fd 0 again; the test source stays unreadable for A
        os.close(call_w)
        os.close(reply_r)
        candidate_main(program, call_r, reply_w)
        os._exit(0)
    del program
    os.close(call_r)
    os.close(reply_w)
    test_main(cfg, pid, call_w, reply_r, vfd)


main()
'''
# --------------------------------------------------------------------------------------------------------------

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


def _bwrap_argv(limits: SandboxLimits) -> list[str]:
    size = ["--size", str(4 * limits.file_size_mb << 20), "--perms", "01777", "--tmpfs", "/tmp"]
    return [*_bwrap_base(), *size, "--remount-ro", "/", "--chdir", "/tmp", "--"]


@functools.lru_cache(maxsize=1)
def _bwrap_base() -> tuple[str, ...]:
    bwrap = shutil.which("bwrap") or "bwrap"
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if _is_root():  # privileged bwrap; the harness drops to the slot uid (keeping only the caps to do so)
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    argv += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]
    argv += ["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]
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


@functools.cache
def _harness() -> tuple[list[str], bytes]:
    """Bootstrap argv + the precompiled harness it reads from stdin (compiling it per sandbox would cost more
    than starting Python)."""
    code = marshal.dumps(compile(_HARNESS, "<harness>", "exec"))
    n = len(code)
    boot = (
        f"import marshal, os\nb = b''\nwhile len(b) < {n}:\n    c = os.read(0, {n} - len(b))\n"
        "    if not c:\n        raise SystemExit('harness: short read')\n    b += c\nexec(marshal.loads(b))\n"
    )
    return [*_python_argv(), boot], code


@functools.cache
def _bwrap_problem() -> str | None:
    """None if bubblewrap works on this host with our options, else why not (probed once)."""
    if shutil.which("bwrap") is None:
        return "bwrap not found on PATH"
    argv = _bwrap_argv(SandboxLimits()) + [*_python_argv(), "import resource, _ast, _signal, ctypes"]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, env={}, start_new_session=True
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap probe failed: {e}"
    if proc.returncode != 0:
        return "bwrap probe failed: " + (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return None


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
            f"{ENV_VAR}=rlimits: sandbox falls back to rlimits only (no filesystem/network/PID isolation)",
            warn_once,
        )
    else:
        problem = _bwrap_problem()
        if problem is None:
            return "bubblewrap"
        if choice != "auto":
            raise GenbenchError(f"{ENV_VAR}={choice} but bubblewrap is unusable: {problem}")
        mode = "rlimits"
        _warn(f"bubblewrap unusable ({problem}); sandbox falls back to rlimits only", warn_once)
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


def _result(status: str, reason: str, start: float) -> SandboxResult:
    reason = " ".join(reason.split())
    return SandboxResult(status=status, reason=reason[:200], duration_s=round(time.monotonic() - start, 4))


def _reap_uid(uid: int) -> None:
    """SIGKILL every process of a slot uid (catches setsid()-escaped children in rlimits mode)."""
    kill = shutil.which("kill", path="/usr/bin:/bin")
    if kill is None:
        _warn("no kill binary: escaped sandbox processes are not reaped", once=True)
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([kill, "-9", "-1"], user=uid, group=uid, extra_groups=[], env={}, timeout=10, **_QUIET)


_QUIET = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def run_tests(
    program: str, test: str, entry_point: str, limits: SandboxLimits | None = None
) -> SandboxResult:
    """Run ``check(entry_point)`` from ``test`` against ``program`` in a fresh sandbox."""
    start = time.monotonic()
    limits = limits or SandboxLimits()
    if not entry_point.isidentifier():
        return _result("error", f"invalid entry point {entry_point!r}", start)
    mode = _resolve_mode(warn_once=True)
    with _slot() as slot:
        result, dirty = _execute(program, test, entry_point, limits, mode, slot.uid, start)
        if dirty:
            _drain(slot)
        return result


def _execute(
    program: str,
    test: str,
    entry_point: str,
    limits: SandboxLimits,
    mode: Mode,
    uid: int | None,
    start: float,
) -> tuple[SandboxResult, bool]:
    """Start the sandbox and supervise it; also says whether processes may have outlived it."""
    vr, vw = os.pipe()
    workdir = None
    try:
        if mode == "bubblewrap":
            argv, env, cwd, tmp = _bwrap_argv(limits), {}, "/", "/tmp"
        else:
            workdir = tempfile.mkdtemp(prefix="genbench-sbx-")
            if uid is not None:
                os.chown(workdir, uid, uid)
            argv, cwd, tmp = [], workdir, workdir
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        cfg = {
            "vfd": vw,
            "uid": uid,
            "tmp": tmp,
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
        header = _literal(cfg).encode()
        boot, code = _harness()
        payload = code + len(header).to_bytes(8, "big") + header + test.encode("utf-8", "surrogatepass")
        try:
            proc = subprocess.Popen(
                [*argv, *boot],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(vw,),
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            return _result("error", f"sandbox failed to start: {e}", start), False
        finally:
            os.close(vw)
            vw = -1
        try:
            return _supervise(proc, vr, payload, limits, start)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
    finally:
        os.close(vr)
        if vw >= 0:
            os.close(vw)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _supervise(
    proc: subprocess.Popen,
    vr: int,
    payload: bytes,
    limits: SandboxLimits,
    start: float,
) -> tuple[SandboxResult, bool]:
    deadline = start + limits.timeout_s
    max_out = limits.max_output_kb << 10
    out_fd, in_fd = proc.stdout.fileno(), proc.stdin.fileno()
    for fd in (out_fd, in_fd, vr):
        os.set_blocking(fd, False)
    sel = selectors.DefaultSelector()
    sel.register(out_fd, selectors.EVENT_READ)
    sel.register(vr, selectors.EVENT_READ)
    sel.register(in_fd, selectors.EVENT_WRITE)
    head, out_total, verdict = bytearray(), 0, bytearray()
    timed_out = exceeded = verdict_eof = False
    try:
        while not verdict_eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in sel.select(remaining):
                fd = key.fd
                if fd == in_fd:
                    try:
                        payload = payload[os.write(fd, payload[: 1 << 16]) :]
                    except BrokenPipeError:
                        payload = b""
                    if not payload:
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if fd == vr:
                    verdict += data[:4096]
                    verdict_eof = not data
                    if verdict_eof:
                        sel.unregister(fd)
                elif not data:
                    sel.unregister(fd)
                else:
                    out_total += len(data)
                    head += data[: max(0, 2048 - len(head))]
                    if out_total > max_out:
                        exceeded = True
            if exceeded:
                break
        if not timed_out and not exceeded:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            timed_out = proc.returncode is None
    finally:
        sel.close()
    lines = verdict.decode("utf-8", "replace").splitlines()
    final = lines[-1] if len(lines) > 1 and verdict.endswith(b"\n") else ""
    code, _, reason = final.partition(" ")
    dirty = timed_out or exceeded or code not in ("P", "F", "T", "E") or "L" in lines
    if timed_out:
        return _result("timeout", f"wall-clock timeout {limits.timeout_s:g}s", start), dirty
    if exceeded:
        return _result("failed", f"output exceeded {limits.max_output_kb} KiB", start), dirty
    if not lines or lines[0] != "R":
        first = head.decode("utf-8", "replace").strip().splitlines()
        why = first[0] if first else f"exit {proc.returncode}"
        return _result("error", f"sandbox failed to start: {why}", start), dirty
    if code == "P" and proc.returncode == 0:
        return _result("passed", "all tests passed", start), dirty
    if code in ("F", "T", "E"):
        return _result({"F": "failed", "T": "timeout", "E": "error"}[code], reason, start), dirty
    rc = proc.returncode
    how = f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0 else f"exit {rc}"
    return _result("failed", f"test harness died before a verdict ({how})", start), dirty


def run_many(
    items: Iterable[tuple[str, str, str]], limits: SandboxLimits | None = None, workers: int | None = None
) -> list[SandboxResult]:
    """run_tests over (program, test, entry_point) items in parallel; results keep the input order."""
    items = list(items)
    if not items:
        return []
    _resolve_mode(warn_once=True)  # fail fast / warn once before fanning out
    workers = max(1, min(workers or os.cpu_count() or 1, len(items)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda it: run_tests(it[0], it[1], it[2], limits), items))
