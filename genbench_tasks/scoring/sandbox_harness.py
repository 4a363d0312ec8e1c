"""The sandbox harness: runs inside the sandbox, standard library only (see ``sandbox`` for the design).

``sandbox`` compiles this file and feeds it, marshalled, on stdin to ``python -I -S -B -c <bootstrap>``, which
runs it as ``__main__``. Then an 8-byte big-endian length + Python-literal frame: either a zygote launch
({"sock": fd, "isolate": bool}; each request on that socket carries the sample's stdin, output and verdict fds)
or one sample's config (program, entry point, limits, uid to drop to, verdict fd). A sample's stdin holds its
config frame and then the test source up to EOF, which only the test process reads. Verdict fd lines: "R" once
started, then one of "P", "F <reason>", "T <reason>" (CPU limit), "E <reason>" (broken test / harness); "L" if
candidate processes could not be reaped; "X <how>" from the sample's PID-namespace init when the test process
ended. Importing this module has no side effects, so its pure functions are unit-tested in-process.
"""

# Every sample needs all of these (the zygote imports them once); socket is imported by the zygote only.
import _ast
import _signal
import builtins
import ctypes
import os
import resource
import struct
import sys
import time

MAX_MSG = 64 << 20
EXIT_GRACE_S = 2.0  # how long a candidate that closed its channel may take to exit
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
        data = data[os.write(fd, data) :]


def recv(fd, parse=None):
    n = int.from_bytes(read_exact(fd, 8), "big")
    if n > MAX_MSG:
        raise ValueError(f"message of {n} bytes exceeds the sandbox limit")
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
        return f"complex({x.real!r},{x.imag!r})"
    if t is bytearray:
        return f"bytearray({bytes(x)!r})"
    for base, items in (
        (list, list.__iter__),
        (tuple, tuple.__iter__),
        (set, set.__iter__),
        (frozenset, frozenset.__iter__),
    ):
        if isinstance(x, base):
            return enc(base(items(x)), depth)
    if isinstance(x, dict):
        return enc(dict(dict.items(x)), depth)
    for base, conv in (
        (int, int.__int__),
        (float, float.__float__),
        (str, str.__str__),
        (bytes, bytes.__bytes__),
    ):
        if isinstance(x, base):
            return enc(conv(x), depth)
    raise TypeError(f"values of type {t.__name__} cannot cross the sandbox boundary")


NUMBER = (int, float)
CALLS = {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}


def dec(text):
    """Strict parser for enc's output from an untrusted peer: literals only, nothing is evaluated."""
    return literal(compile(text, "<message>", "eval", 0x400).body)  # PyCF_ONLY_AST


def trusted(text):
    """Messages from the trusted side (host config, test process) are evaluated as literals directly."""
    return eval(
        text,
        {
            "__builtins__": {
                "set": set,
                "frozenset": frozenset,
                "bytearray": bytearray,
                "complex": complex,
                "inf": float("inf"),
                "nan": float("nan"),
            }
        },
    )


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
        return {literal(k, d): literal(v, d) for k, v in zip(node.keys, node.values, strict=True)}
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
    where = " at {} line {}".format(filename.strip("<>"), line) if line else ""
    return "{}{}{}".format(name, where, ": " + msg if msg else "")


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
            data = data[os.write(wfd, data) :]


class CandidateError(Exception):
    """A non-builtin exception raised by the candidate."""


class CandidateAbort(BaseException):
    """The candidate exited, was killed or broke the protocol: never swallowed by `except Exception`."""


def candidate_status(pid, cpu_s, state, grace_s=EXIT_GRACE_S):
    """Reap A after its channel closed; returns a reason and flags a CPU-limit kill.

    A closed channel means A is ending; one still alive ``grace_s`` (wall clock, so a loaded host gets the same
    time) later closed it on purpose and is killed.
    """
    deadline = time.monotonic() + grace_s
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    if not got:
        os.kill(pid, SIGKILL)
        os.wait4(pid, 0)
        return "candidate process closed the harness channel"
    cpu = usage.ru_utime + usage.ru_stime
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == SIGXCPU or (sig == SIGKILL and cpu >= cpu_s - 0.05):
            state["timeout"] = True
            return f"CPU time limit {cpu_s}s exceeded"
        return f"candidate process killed by {SIGNAMES.get(sig, sig)}"
    return f"candidate process exited with status {os.WEXITSTATUS(status)}"


def kill_children():
    """SIGKILL this process's children (orphans of the candidate reparented to us, the subreaper)."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
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
                    if (
                        type(item) is tuple
                        and len(item) == 2
                        and type(item[0]) is int
                        and 0 <= item[0] < len(args)
                    ):
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
                    raise abort(f"candidate raised {kind}")
                try:
                    exc = exc_type(msg)
                except Exception:
                    exc = CandidateError(f"{kind}: {msg}")
            else:
                exc = CandidateError(f"{kind}: {msg}")
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
        final(f"F entry point {entry!r} is not a function defined by the program")
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
            remap[p] = f"/proc/self/fd/{fd}"
    if not remap:
        return

    def fix(path):
        for old, new in remap.items():
            if path == old or path.startswith(old + "/"):
                return new + path[len(old) :]
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
                    total += len(os.listdir(f"/proc/{pid}/task"))
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
        LIBC = ctypes.CDLL(None, use_errno=True)
    return LIBC


def libc_call(name, *args):
    if getattr(libc(), name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def exit_text(status):
    if os.WIFSIGNALED(status):
        return f"killed by {SIGNAMES.get(os.WTERMSIG(status), os.WTERMSIG(status))}"
    return f"exit {os.WEXITSTATUS(status)}"


def isolate(cfg, vfd, private=(b"/tmp",), unshared=False):
    """Per-sample mount (fresh /tmp and /proc), PID, IPC and UTS namespaces inside the worker's sandbox (whose
    network namespace, loopback only, holds nothing that outlives a sample's processes). Returns in the test
    process; pid 1 of the new PID namespace stays behind as its init and reports how the test process ended.
    `private`: directories that get a fresh tmpfs; `unshared`: the caller already called unshare."""
    if not unshared:
        libc_call("unshare", CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID)
    libc_call("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    opts = f"size={cfg['tmpfs']},mode=1777".encode()
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
            os.write(vfd, (f"X {exit_text(status)}\n").encode())
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
        return f"no namespaces (unshare: {os.strerror(e.errno)})"
    isolate(cfg, vfd, (b"/tmp", b"/dev/shm", b"/var/tmp"), unshared=True)
    cfg["tmp"], cfg["private_proc"] = "/tmp", True
    return "namespaces mount,pid,net,ipc,uts"


# Landlock (Linux >= 5.13): unprivileged filesystem, TCP and signal/abstract-socket confinement of the candidate.
LL_CREATE, LL_ADD_RULE, LL_RESTRICT = 444, 445, 446  # the same syscall numbers on every architecture
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1, 2, 4, 8
LL_TRUNCATE, LL_IOCTL_DEV = 1 << 14, 1 << 15
LL_FS_BITS = {1: 13, 2: 14, 3: 15, 4: 15}  # handled filesystem rights per ABI (newer ABIs: 16)


def syscall(nr, *args):
    conv = [ctypes.c_long(a) if type(a) is int else a for a in args]
    ret = libc().syscall(ctypes.c_long(nr), *conv)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syscall {nr}: {os.strerror(err)}")
    return ret


def landlock_ruleset(cfg):
    """A ruleset for the candidate: read and execute the interpreter, system libraries and venv only; anything
    in its own tmp; /dev/null and friends; no TCP bind/connect (ABI >= 4); no signals to, and no abstract unix
    sockets of, processes outside its domain (ABI >= 6), the test process included. Built before the uid
    drop (the rule paths may be unreachable for the slot uid). Returns (fd or None, description)."""
    try:
        abi = syscall(LL_CREATE, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
    except OSError as e:
        return None, "no landlock ({})".format(e.strerror.split(": ")[-1])
    fs = (1 << LL_FS_BITS.get(abi, 16)) - 1
    net, scoped = (3 if abi >= 4 else 0), (3 if abi >= 6 else 0)
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    fd = syscall(LL_CREATE, attr, 8 * (3 if scoped else 2 if net else 1), 0)
    read = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR
    file_rights = (LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV) & fs
    rules = [(p, read) for p in cfg["read_roots"]] + [(cfg["tmp"], fs), ("/etc/ld.so.cache", LL_READ_FILE)]
    rules += [
        (d, LL_READ_FILE | LL_WRITE_FILE)
        for d in ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random")
    ]
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
            rule = ctypes.create_string_buffer(struct.pack("=Qi", rights & fs, pfd))  # path_beneath_attr
            syscall(LL_ADD_RULE, fd, 1, rule, 0)  # LANDLOCK_RULE_PATH_BENEATH
        finally:
            os.close(pfd)
    scope = ", signals and abstract sockets scoped" if scoped else ""
    return fd, "landlock ABI {} (filesystem{}{})".format(abi, ", TCP" if net else "", scope)


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
            who = f"uid {cfg['uid']}" if cfg["uid"] is not None else f"host uid {os.getuid()}"
            isolation = "rlimits: {}, {}, {}".format(namespaces, cfg.get("isolation", "no landlock"), who)
    except Exception as e:
        os.write(vfd, (f"E sandbox setup failed: {short(e)}\n").encode())
        os._exit(1)
    os.write(vfd, (f"I {isolation}\n").encode())
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
    import socket

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


def main():
    """Entry point inside the sandbox: a zygote launch frame, or one sample's config."""
    launch = read_frame(0)
    if "sock" in launch:
        serve(launch)
    else:
        sample(launch, launch["vfd"], False)


if __name__ == "__main__":
    main()
