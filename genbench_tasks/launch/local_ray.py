"""A private local Ray head on loopback (own temp dir, own ports, own auth token): the embedded default's
cluster and the test suite's. `start_ray_head()` returns a :class:`LocalRayHead`; `stop_ray_head()` ends only
what it started (never `ray stop`, which kills every Ray process on the host).

Privacy: every listener stays on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` stops Ray from replacing
127.0.0.1 by the host's address: a single-node cluster), and token authentication is on by default with a
fresh token in the head's private temp dir (``RAY_AUTH_TOKEN_PATH``), never the user's ``~/.ray/auth_token``.
Jobs inherit the token path, so a job's own ``ray.init()`` connects.

Env knobs: GENBENCH_RAY_START_TIMEOUT (s, default 180), GENBENCH_RAY_KEEP_TEMP=1 (keep logs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from genbench_tasks.launch.ray_jobs import RayJobLauncher, auth_headers

log = logging.getLogger(__name__)

#: How long a submitted job may wait in Ray's queue for the head's CPUs (Ray's default: 900 s).
JOB_START_TIMEOUT_S = 24 * 3600
_CLIENT_ENV_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
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


def free_ports(n: int) -> list[int]:
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


class _AuthRefused(RuntimeError):
    """The Jobs API answered 401/403: the token we send is not the head's (retrying cannot help)."""


def _jobs_api_ready(address: str, token: str | None) -> bool:
    """True once the dashboard answers and the job manager lists jobs (the Jobs API is usable)."""
    headers = auth_headers(token)
    try:
        for path, timeout in (("/api/version", 3), ("/api/jobs/", 5)):
            request = urllib.request.Request(f"{address}{path}", headers=headers)
            with urllib.request.urlopen(request, timeout=timeout) as r:
                body = r.read()
            if path == "/api/version":
                json.loads(body)
        return True
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise _AuthRefused(f"the Ray Jobs API at {address} refused our token (HTTP {exc.code})") from exc
        return False
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class LocalRayHead:
    """A running private head: its Jobs API ``address``, its auth ``token`` (None with auth off)."""

    address: str
    token: str | None
    process: subprocess.Popen
    temp_dir: Path

    @property
    def token_path(self) -> Path | None:
        return self.temp_dir / "auth_token" if self.token else None

    def launcher(self, **kwargs) -> RayJobLauncher:
        """A launcher that authenticates to this head."""
        return RayJobLauncher(self.address, token=self.token, **kwargs)


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


def start_ray_head(
    num_cpus: int = 2, timeout_s: float | None = None, auth: bool = True, num_gpus: int = 0
) -> LocalRayHead:
    """Start a loopback Ray head with the dashboard (token auth on unless ``auth=False``).

    Retried once with fresh ports if ``ray start`` exits early.
    """
    timeout_s = timeout_s or float(os.environ.get("GENBENCH_RAY_START_TIMEOUT", "180"))
    try:
        return _start_ray_head(num_cpus, num_gpus, timeout_s, auth)
    except _EarlyExit as exc:
        log.warning("Ray head failed to start, retrying once with fresh ports: %s", exc)
        shutil.rmtree(exc.temp_dir, ignore_errors=True)
        return _start_ray_head(num_cpus, num_gpus, timeout_s, auth)


def _head_environment(bin_dir: Path, token_path: Path | None) -> dict[str, str]:
    # The user's cluster address and auth settings must not leak into the private head.
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_ENV_VARS}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        # Single-node cluster: Ray keeps 127.0.0.1 instead of resolving it to the host's address.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        # A nightly submits every cell at once and Ray queues the jobs the head's CPUs cannot run yet; by
        # default Ray fails a job whose supervisor has not started within 900 s. The trigger's own deadline
        # (RayJobOperator job_timeout) bounds a job instead.
        RAY_JOB_START_TIMEOUT_SECONDS=str(JOB_START_TIMEOUT_S),
        # Job entrypoints say ``python ...``: make that this interpreter even without an activated venv.
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    if token_path is None:
        env["RAY_AUTH_MODE"] = "disabled"  # explicit: an existing ~/.ray/auth_token must not turn it on
    else:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path))
    return env


def _start_ray_head(num_cpus: int, num_gpus: int, timeout_s: float, auth: bool) -> LocalRayHead:
    # Unix socket paths live under the temp dir and are limited to ~107 bytes: keep it short.
    temp_dir = Path(tempfile.mkdtemp(prefix="gbray-", dir=os.environ.get("GENBENCH_RAY_TEMP_ROOT", "/tmp")))
    start_log = temp_dir / "ray_start.log"
    token = secrets.token_hex(32) if auth else None
    token_path = temp_dir / "auth_token" if token else None
    if token_path is not None:
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
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
        f"--num-gpus={num_gpus}",
        f"--object-store-memory={256 * 1024 * 1024}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    env = _head_environment(bin_dir, token_path)
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    log.info("starting Ray head at %s (temp dir %s, auth %s)", address, temp_dir, "token" if auth else "off")
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
        try:
            ready = _jobs_api_ready(address, token)
        except _AuthRefused as exc:
            diag = _diagnostics(temp_dir, start_log)
            _shutdown(proc, temp_dir)
            raise RuntimeError(f"{exc}.\n{diag}") from None
        if ready:
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
    return LocalRayHead(address=address, token=token, process=proc, temp_dir=temp_dir)


def stop_ray_head(head: LocalRayHead) -> None:
    """Stop a head started by :func:`start_ray_head` and remove its temp dir.

    The temp dir holds the pip runtime envs (Ray clones the whole base venv, ~2 GB, per env); deleting that
    takes minutes on a busy disk, so it is removed by a detached, low-priority ``rm`` that outlives the test.
    """
    t0 = time.monotonic()
    proc, temp_dir = head.process, head.temp_dir
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
