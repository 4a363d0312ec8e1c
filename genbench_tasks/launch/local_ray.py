"""A private local Ray head on loopback (own temp dir, own ports): the embedded default's cluster and the
test suite's. `start_ray_head()` returns the Jobs API address; `stop_ray_head()` ends only what it started
(never `ray stop --force`, which would kill every Ray process on the host).

Env knobs: GENBENCH_RAY_START_TIMEOUT (s, default 180), GENBENCH_RAY_KEEP_TEMP=1 (keep logs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

_PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--node-manager-port",
    "--object-manager-port",
)


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:  # resolved before fork: the child only calls it
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _free_ports(n: int) -> list[int]:
    """Reserve-then-release ``n`` distinct free loopback ports (all bound at once, so no duplicates)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _diagnostics(temp_dir: Path, start_log: Path) -> str:
    parts = [f"--- ray start output ({start_log}) ---\n{_tail(start_log)}"]
    logs = temp_dir / "session_latest" / "logs"
    for name in ("gcs_server.out", "raylet.out", "dashboard.log", "dashboard.err", "raylet.err"):
        text = _tail(logs / name, 20)
        if text:
            parts.append(f"--- {logs / name} ---\n{text}")
    return "\n".join(parts)


def _jobs_api_ready(address: str) -> bool:
    """True once the dashboard answers and the job manager lists jobs (the Jobs API is usable)."""
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=3) as r:
            json.loads(r.read())
        with urllib.request.urlopen(f"{address}/api/jobs/", timeout=5) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _our_processes(root_pid: int, temp_dir: Path) -> list:
    """The head's process tree plus any process whose command line names our private temp dir."""
    import psutil

    procs: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(root_pid)
        procs[root.pid] = root
        for child in root.children(recursive=True):
            procs[child.pid] = child
    marker = str(temp_dir)
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in arg for arg in (p.info["cmdline"] or [])):
                procs[p.pid] = p
    procs.pop(os.getpid(), None)
    return list(procs.values())


def _shutdown(proc: subprocess.Popen, temp_dir: Path, grace_s: float = 5.0) -> None:
    """SIGTERM the ``ray start --block`` group (Ray shuts its children down), then SIGKILL leftovers."""
    import psutil

    victims = _our_processes(proc.pid, temp_dir)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(victims, timeout=grace_s)
    # Workers re-parented during shutdown are still found through the temp-dir marker.
    alive = {p.pid: p for p in alive}
    for p in _our_processes(proc.pid, temp_dir):
        alive.setdefault(p.pid, p)
    for p in alive.values():
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(list(alive.values()), timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _detach() -> None:
    """In the child: own process group (so teardown can signal it alone), and SIGTERM when the test process
    dies without teardown (``ray start --block`` then shuts its fate-shared children down)."""
    os.setsid()
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _EarlyExit(RuntimeError):
    """``ray start`` died while starting (typically a port taken between picking and binding it)."""

    def __init__(self, message: str, temp_dir: Path):
        super().__init__(message)
        self.temp_dir = temp_dir


def start_ray_head(num_cpus: int = 2, timeout_s: float | None = None) -> tuple[str, subprocess.Popen, Path]:
    """Start a loopback Ray head with the dashboard; return (address, process, temp_dir).

    Retried once with fresh ports if ``ray start`` exits early.
    """
    timeout_s = timeout_s or float(os.environ.get("GENBENCH_RAY_START_TIMEOUT", "180"))
    try:
        return _start_ray_head(num_cpus, timeout_s)
    except _EarlyExit as exc:
        log.warning("Ray head failed to start, retrying once with fresh ports: %s", exc)
        shutil.rmtree(exc.temp_dir, ignore_errors=True)
        return _start_ray_head(num_cpus, timeout_s)


def _start_ray_head(num_cpus: int, timeout_s: float) -> tuple[str, subprocess.Popen, Path]:
    # Unix socket paths live under the temp dir and are limited to ~107 bytes: keep it short.
    temp_dir = Path(tempfile.mkdtemp(prefix="gbray-", dir=os.environ.get("GENBENCH_RAY_TEMP_ROOT", "/tmp")))
    start_log = temp_dir / "ray_start.log"
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    bin_dir = Path(sys.executable).parent
    ray_exe = shutil.which("ray", path=str(bin_dir)) or "ray"
    cmd = [
        ray_exe,
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        f"--object-store-memory={256 * 1024 * 1024}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    env = dict(os.environ)
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        # Job entrypoints say ``python ...``: make that the test interpreter even without an activated venv.
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    env.pop("RAY_ADDRESS", None)
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    log.info("starting Ray head at %s (temp dir %s)", address, temp_dir)
    with open(start_log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_detach,
        )
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            diag = _diagnostics(temp_dir, start_log)
            _shutdown(proc, temp_dir)
            raise _EarlyExit(f"`ray start --head` exited with code {proc.returncode}.\n{diag}", temp_dir)
        if _jobs_api_ready(address):
            break
        if time.monotonic() - t0 > timeout_s:
            diag = _diagnostics(temp_dir, start_log)
            _shutdown(proc, temp_dir)
            raise RuntimeError(
                f"Ray Jobs API at {address} did not answer within {timeout_s:.0f}s "
                f"(set GENBENCH_RAY_START_TIMEOUT to wait longer).\n{diag}"
            )
        time.sleep(0.5)
    log.info("Ray head ready at %s after %.1fs", address, time.monotonic() - t0)
    return address, proc, temp_dir


def stop_ray_head(proc: subprocess.Popen, temp_dir: Path) -> None:
    """Stop a head started by :func:`start_ray_head` and remove its temp dir.

    The temp dir holds the pip runtime envs (Ray clones the whole base venv, ~2 GB, per env); deleting that
    takes minutes on a busy disk, so it is removed by a detached, low-priority ``rm`` that outlives the test.
    """
    t0 = time.monotonic()
    _shutdown(proc, temp_dir)
    log.info("Ray head stopped in %.1fs", time.monotonic() - t0)
    if os.environ.get("GENBENCH_RAY_KEEP_TEMP") == "1":
        log.info("keeping Ray temp dir %s", temp_dir)
        return
    doomed = temp_dir.with_name(temp_dir.name + ".deleting")
    try:
        temp_dir.rename(doomed)
    except OSError:
        doomed = temp_dir
    rm = ["nice", "-n", "19", "rm", "-rf", str(doomed)]
    if shutil.which("ionice"):
        rm = ["ionice", "-c3", *rm]
    log.info("removing Ray temp dir %s in the background", doomed)
    subprocess.Popen(
        rm,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
