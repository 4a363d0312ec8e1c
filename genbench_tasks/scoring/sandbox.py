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


# --------------------------------------------------------------------------------------------------------------
# The harness, precompiled and fed on stdin to ``python -I -S -B -c <bootstrap>``. Then an 8-byte big-endian
# length + Python-literal frame: either a zygote launch ({"sock": fd, "isolate": bool}; each request on that
# socket carries the sample's stdin, output and verdict fds) or one sample's config (program, entry point,
# limits, uid to drop to, verdict fd). A sample's stdin holds its config frame and then the test source up to
# EOF, which only the test process reads. Verdict fd lines: "R" once started, then one of "P", "F <reason>",
# "T <reason>" (CPU limit), "E <reason>" (broken test / harness); "L" if candidate processes could not be
# reaped; "X <how>" from the sample's PID-namespace init when the test process ended.
_HARNESS = r'''
import os, sys, builtins, resource, _signal

MAX_MSG = 64 << 20
NO_IMPORT = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "webbrowser", "pydoc"}
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


def kill_children():
    """SIGKILL this process's children (orphans of the candidate reparented to us, the subreaper)."""
    try:
        with open("/proc/self/task/%d/children" % os.getpid()) as f:
            pids = [int(p) for p in f.read().split()]
    except OSError:
        return
    for p in pids:
        try:
            os.kill(p, SIGKILL)
        except OSError:
            pass


def test_main(cfg, pid, wfd, rfd, vfd):
    """Process B: define check from the (trusted) test source and call it with proxies for the candidate."""
    state = {"abort": None, "timeout": False}
    entry = cfg["entry"]

    def final(line):
        """Report, after killing and reaping everything the candidate started (B is their subreaper)."""
        stuck = ""
        for target in (pid, -1) if cfg["uid"] is not None else (pid,):
            try:
                os.kill(target, SIGKILL)  # -1: every other process of this sandbox's private uid
            except OSError:
                pass
        import time
        deadline = time.monotonic() + 2
        while True:
            try:
                child, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if child == 0:
                if time.monotonic() > deadline:
                    stuck = "L\n"  # the host drains the uid before reusing it
                    break
                kill_children()
                time.sleep(0.002)
        os.write(vfd, (stuck + short(line, 240) + "\n").encode("utf-8", "replace"))
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
        source = b"".join(chunks)
        split = cfg["prelude_len"]
        code = compile(source[split:].decode("utf-8"), "<test>", "exec")
    except BaseException as e:
        final("E test source does not compile: " + describe(e, "<test>"))
    try:
        prelude = compile(source[:split].decode("utf-8"), "<prompt>", "exec") if split else None
    except BaseException as e:
        final("E prompt does not compile: " + describe(e, "<prompt>"))
    wanted = sorted({n for n in names_of(code) if not hasattr(builtins, n) and n != "check"} | {entry})
    ns = {"__name__": "__test__", "__builtins__": builtins}
    try:
        transmit(wanted)
        reply = receive(("load_error", 2), ("manifest", 2))
        if reply[0] == "load_error":
            final("F candidate failed to load: " + short(reply[1]))
        manifest = reply[1]
        if type(manifest) is not dict:
            raise abort("bad message from candidate")
        for name in wanted:
            spec = manifest.get(name)
            if spec == ("func",):
                ns[name] = proxy(name)
            elif type(spec) is tuple and len(spec) == 2 and spec[0] == "data":
                ns[name] = spec[1]
            elif type(spec) is tuple and len(spec) == 2 and spec[0] == "module" and type(spec[1]) is str:
                top = spec[1].split(".")[0]
                if top in sys.stdlib_module_names and top not in NO_IMPORT and not top.startswith("_"):
                    __import__(spec[1])
                    ns[name] = sys.modules[spec[1]]
    except CandidateAbort as e:
        final(("T " if state["timeout"] else "F ") + short(e))
    except Exception as e:
        final("F bad message from candidate: " + short(e, 80))
    if manifest.get(entry) != ("func",):
        final("F entry point %r is not a function defined by the program" % entry)
    if prelude is not None:
        # The prompt's own definitions (helpers such as encode_cyclic that the test calls) replace whatever
        # the candidate defined under those names; only the entry point stays the candidate's.
        try:
            exec(prelude, ns)
        except BaseException as e:
            final("E prompt failed at import: " + describe(e, "<prompt>"))
        ns[entry] = proxy(entry)
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


LIBC = None
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID = 0x20000, 0x4000000, 0x8000000, 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 0x40000


def libc():
    global LIBC
    if LIBC is None:
        import ctypes
        LIBC = ctypes.CDLL(None, use_errno=True)
    return LIBC


def libc_call(name, *args):
    if getattr(libc(), name)(*args) != 0:
        import ctypes
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (name, os.strerror(err)))


def exit_text(status):
    if os.WIFSIGNALED(status):
        return "killed by %s" % SIGNAMES.get(os.WTERMSIG(status), os.WTERMSIG(status))
    return "exit %d" % os.WEXITSTATUS(status)


def isolate(cfg, vfd, private=(b"/tmp",), unshared=False):
    """Per-sample mount (fresh /tmp and /proc), PID, IPC and UTS namespaces inside the worker's sandbox (whose
    network namespace, loopback only, holds nothing that outlives a sample's processes). Returns in the test
    process; pid 1 of the new PID namespace stays behind as its init and reports how the test process ended.
    `private`: directories that get a fresh tmpfs; `unshared`: the caller already called unshare."""
    if not unshared:
        libc_call("unshare", CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID)
    libc_call("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    opts = ("size=%d,mode=1777" % cfg["tmpfs"]).encode()
    for path in private:
        if os.path.isdir(path):
            libc_call("mount", b"tmpfs", path, b"tmpfs", MS_NOSUID | MS_NODEV, opts)
    if os.fork():
        os._exit(0)  # the zygote's child leaves; its child is pid 1 of the new PID namespace
    libc_call("mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    test_pid = os.fork()
    if test_pid == 0:
        return
    for fd in (0, 1, 2):
        os.close(fd)
    while True:  # init: reap orphans until the test process is gone; exiting then kills the namespace
        pid, status = os.wait()
        if pid == test_pid:
            os.write(vfd, ("X %s\n" % exit_text(status)).encode())
            os._exit(0)


def confine(cfg, vfd):
    """rlimits mode: the strongest isolation this host grants without bubblewrap. Namespaces where we may create
    them (root with CAP_SYS_ADMIN): those of `isolate` plus a network namespace, and fresh /tmp, /dev/shm and
    /var/tmp, so nothing lands in the host's. Returns in the test process; sets cfg["tmp"] (the private /tmp
    when there is one) and cfg["private_proc"]; returns what was achieved, for the report."""
    try:
        libc_call("unshare", CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET)
    except OSError as e:
        cfg["private_proc"] = False
        return "no namespaces (unshare: %s)" % os.strerror(e.errno)
    isolate(cfg, vfd, (b"/tmp", b"/dev/shm", b"/var/tmp"), unshared=True)
    cfg["tmp"], cfg["private_proc"] = "/tmp", True
    return "namespaces mount,pid,net,ipc,uts"


# Landlock (Linux >= 5.13): unprivileged filesystem, TCP and signal/abstract-socket confinement of the candidate.
LL_CREATE, LL_ADD_RULE, LL_RESTRICT = 444, 445, 446  # the same syscall numbers on every architecture
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_TRUNCATE, LL_IOCTL_DEV = 1 << 14, 1 << 15
LL_FS_BITS = {1: 13, 2: 14, 3: 15, 4: 15}  # handled filesystem rights per ABI (newer ABIs: 16)


def syscall(nr, *args):
    import ctypes
    conv = [ctypes.c_long(a) if type(a) is int else a for a in args]
    ret = libc().syscall(ctypes.c_long(nr), *conv)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, "syscall %d: %s" % (nr, os.strerror(err)))
    return ret


def landlock_ruleset(cfg):
    """A ruleset for the candidate: read and execute the interpreter, system libraries and venv only; anything
    in its own tmp; /dev/null and friends; no TCP bind/connect (ABI >= 4); no signals to, and no abstract unix
    sockets of, processes outside its domain (ABI >= 6), the test process included. Built before the uid
    drop (the rule paths may be unreachable for the slot uid). Returns (fd or None, description)."""
    import ctypes, struct
    try:
        abi = syscall(LL_CREATE, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    except OSError as e:
        return None, "no landlock (%s)" % e.strerror.split(": ")[-1]
    fs = (1 << LL_FS_BITS.get(abi, 16)) - 1
    net, scoped = (3 if abi >= 4 else 0), (3 if abi >= 6 else 0)
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    fd = syscall(LL_CREATE, attr, 8 * (3 if scoped else 2 if net else 1), 0)
    read = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
    file_rights = (LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV) & fs
    rules = [(p, read) for p in cfg["read_roots"]] + [(cfg["tmp"], fs), ("/etc/ld.so.cache", LL_READ_FILE)]
    rules += [(d, LL_READ_FILE | LL_WRITE_FILE) for d in ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random")]
    if cfg["private_proc"]:  # our own PID namespace's /proc shows only this sample's processes
        rules.append(("/proc", LL_READ_FILE | LL_READ_DIR))
    for path, rights in rules:
        try:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.fstat(pfd).st_mode & 0o170000 != 0o040000:  # not a directory: file rights only
                rights &= file_rights
            rule = ctypes.create_string_buffer(struct.pack("=Qi", rights & fs, pfd))  # packed path_beneath_attr
            syscall(LL_ADD_RULE, fd, 1, rule, 0)  # LANDLOCK_RULE_PATH_BENEATH
        finally:
            os.close(pfd)
    scope = ", signals and abstract sockets scoped" if scoped else ""
    return fd, "landlock ABI %d (filesystem%s%s)" % (abi, ", TCP" if net else "", scope)


def landlock_restrict(fd):
    """Candidate process: enter the ruleset (irrevocable, inherited by everything it starts)."""
    libc_call("prctl", 38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, required by landlock_restrict_self
    syscall(LL_RESTRICT, fd, 0)
    os.close(fd)


def setup(cfg):
    """rlimits, then the private uid, then a non-dumpable test process; runs before any untrusted code."""
    lim, uid = cfg["limits"], cfg["uid"]
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    sys.path.extend(p for p in cfg["site"] if os.path.isdir(p) and p not in sys.path)
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
    if cfg["confine"]:
        cfg["landlock"], cfg["isolation"] = landlock_ruleset(cfg)
    if uid is not None:
        drop_privileges(uid)  # changing uid makes the process non-dumpable when fs.suid_dumpable is 0
    if uid is None or cfg["suid_dumpable"] != 0:
        libc_call("prctl", 4, 0, 0, 0, 0)  # PR_SET_DUMPABLE=0: no ptrace, no /proc/B/{mem,fd,environ} for A
    os.chdir(cfg["tmp"])
    os.environ["HOME"] = os.environ["TMPDIR"] = cfg["tmp"]


def sample(cfg, vfd, isolated):
    """Run one sample: fork the candidate process A, then act as the test process B."""
    os.write(vfd, b"R\n")
    try:
        if isolated:
            isolate(cfg, vfd)
            isolation = "bubblewrap"
        else:
            namespaces = confine(cfg, vfd) if cfg["confine"] else "no namespaces"
        setup(cfg)
        if not isolated:
            who = "uid %d" % cfg["uid"] if cfg["uid"] is not None else "host uid %d" % os.getuid()
            isolation = "rlimits: %s, %s, %s" % (namespaces, cfg.get("isolation", "no landlock"), who)
    except Exception as e:
        os.write(vfd, ("E sandbox setup failed: %s\n" % short(e)).encode())
        os._exit(1)
    os.write(vfd, ("I %s\n" % isolation).encode())
    libc_call("prctl", 36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the candidate's orphans stay ours to kill
    call_r, call_w = os.pipe()
    reply_r, reply_w = os.pipe()
    program = cfg.pop("program")
    ruleset = cfg.pop("landlock", None)
    pid = os.fork()
    if pid == 0:
        os.close(vfd)
        os.close(0)
        os.open(os.devnull, os.O_RDONLY)  # fd 0 again; the test source stays unreadable for A
        os.close(call_w)
        os.close(reply_r)
        if ruleset is not None:
            try:
                landlock_restrict(ruleset)
            except BaseException as e:  # fail closed: never run the candidate less confined than reported
                send(reply_w, ("load_error", "sandbox confinement failed: " + short(e)))
                os._exit(0)
        candidate_main(program, call_r, reply_w)
        os._exit(0)
    if ruleset is not None:
        os.close(ruleset)
    del program
    os.close(call_r)
    os.close(reply_w)
    test_main(cfg, pid, call_w, reply_r, vfd)


def read_frame(fd):
    return trusted(read_exact(fd, int.from_bytes(read_exact(fd, 8), "big")).decode())


def serve(launch):
    """Zygote: fork one sample per request (stdin, output and verdict fds arrive over the socket)."""
    import socket, time, ctypes, _ast  # warm: every sample needs them
    libc()
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)  # children are reaped by the kernel
    sock = socket.socket(fileno=launch["sock"])
    sock.send(b"ready")
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 3)
        except OSError:
            os._exit(0)
        if msg != b"go" or len(fds) != 3:
            os._exit(0)  # the host closed the worker
        if os.fork() == 0:
            sock.close()
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
            os.setsid()
            stdin_r, out_w, vfd = fds
            os.dup2(stdin_r, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.close(stdin_r)
            os.close(out_w)
            sample(read_frame(0), vfd, launch["isolate"])
            os._exit(0)
        for fd in fds:
            os.close(fd)


launch = read_frame(0)
if "sock" in launch:
    serve(launch)
else:
    sample(launch, launch["vfd"], False)
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
        boot, code = _harness()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}
        try:
            proc = subprocess.Popen(
                [*argv, *boot],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(child.fileno(),),
                env={} if argv else env,
                cwd="/",
                start_new_session=True,
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
        boot, code = _harness()
        vr, vw = os.pipe()
        if self.mode == "bubblewrap":
            argv, env, cwd = _bwrap_argv(cfg["tmpfs"]), {}, "/"
        else:
            argv, cwd = [], workdir
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
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
