"""The embedded default: the production DAG on one machine, every service on 127.0.0.1.

- Local services: moto's S3 server and a private Ray head (token auth, own temp dir).
- ``genbench up`` and ``genbench demo`` (:class:`LocalDeployment`) run the real thing: Airflow's api-server, scheduler,
  dag-processor and triggerer as separate processes (LocalExecutor, SQLite), so the UI, the trigger form, the
  scheduler and deferred Ray tasks behave as in production.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from genbench_tasks.errors import GenbenchError
from genbench_tasks.launch.local_ray import LocalRayHead, free_ports
from genbench_tasks.pipeline import settings

log = logging.getLogger(__name__)

DEMO_BUCKET = "genbench-reports"
DEMO_PREFIX = "nightly"
LOOPBACK = "127.0.0.1"
ADMIN_USER = "admin"
#: The Airflow processes of a local deployment, each with the flags that keep it off the network.
AIRFLOW_SERVICES: dict[str, list[str]] = {
    "api-server": ["api-server", "--host", LOOPBACK],  # + --port
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def default_dags_folder() -> Path:
    return Path(__file__).resolve().parents[2] / "dags"


def airflow_executable() -> str:
    """The ``airflow`` next to this interpreter (a venv need not be activated), else the one on PATH."""
    local = Path(sys.executable).with_name("airflow")
    return str(local) if local.exists() else "airflow"


@contextlib.contextmanager
def local_s3_server(bucket: str = DEMO_BUCKET, port: int = 0) -> Iterator[str]:
    """moto's S3-compatible server on loopback with ``bucket`` created; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    from genbench_tasks.s3_client import s3_client

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "genbench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "genbench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    endpoint = f"http://{host}:{bound}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    log.info("local S3 (moto) at %s, bucket %s", endpoint, bucket)
    try:
        yield endpoint
    finally:
        server.stop()


@contextlib.contextmanager
def local_ray_head(num_cpus: int = 2) -> Iterator[LocalRayHead]:
    """A private Ray head with token auth on loopback, stopped (by PID) on exit."""
    from genbench_tasks.launch.local_ray import start_ray_head, stop_ray_head

    head = start_ray_head(num_cpus=num_cpus)
    try:
        yield head
    finally:
        stop_ray_head(head)


def ray_connection(address: str, token: str | None) -> dict:
    """The ``genbench_ray`` Airflow connection: dashboard host/port, the auth token as its password."""
    host, _, port = address.removeprefix("http://").partition(":")
    conn: dict = {"conn_type": "http", "host": host, "port": int(port or 8265), "schema": "http"}
    if token:
        conn["password"] = token
    return conn


def airflow_environment(
    airflow_home: Path,
    dags_folder: Path,
    s3_endpoint: str,
    ray_address: str,
    work_dir: Path,
    report_uri: str,
    ray_token: str | None = None,
) -> dict[str, str]:
    """Environment for an Airflow on SQLite whose connections/variables point at the local services."""
    s3_conn = {
        "conn_type": "aws",
        "login": os.environ.get("AWS_ACCESS_KEY_ID", "genbench"),
        "password": os.environ.get("AWS_SECRET_ACCESS_KEY", "genbench-secret"),
        "extra": {
            "endpoint_url": s3_endpoint,
            "region_name": "us-east-1",
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        },
    }
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        f"AIRFLOW_CONN_{settings.CONN_S3.upper()}": json.dumps(s3_conn),
        f"AIRFLOW_CONN_{settings.CONN_RAY.upper()}": json.dumps(ray_connection(ray_address, ray_token)),
        f"AIRFLOW_VAR_{settings.VAR_WORK_DIR.upper()}": str(work_dir),
        f"AIRFLOW_VAR_{settings.VAR_REPORT_URI.upper()}": report_uri,
    }


def deployment_environment(airflow_home: Path, api_port: int) -> dict[str, str]:
    """Settings for Airflow as separate processes on loopback: LocalExecutor, one shared JWT secret."""
    secret_file = airflow_home / ".genbench_jwt_secret"
    if not secret_file.exists():
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    base_url = f"http://{LOOPBACK}:{api_port}"
    bin_dir = str(Path(sys.executable).parent)
    return {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__API__HOST": LOOPBACK,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        # Every process signs and checks the same task tokens.
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # Ray job entrypoints and task subprocesses find this venv's python, airflow and genbench.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def migrate_airflow_db(env: dict[str, str]) -> None:
    log.info("initialising Airflow's SQLite metadata DB in %s", env["AIRFLOW_HOME"])
    result = subprocess.run(
        [airflow_executable(), "db", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise GenbenchError(f"`airflow db migrate` failed: {result.stderr.strip().splitlines()[-1:]}")


@dataclass
class LocalDeployment:
    """Airflow (4 processes), a private Ray head and a local S3 server, all on 127.0.0.1.

    ``start()`` returns once the API server answers; ``stop()`` ends exactly what was started, by PID.
    ``info`` (also written to ``<work>/deployment.json``) has the UI URL, user, password and endpoints.
    """

    work_dir: Path
    api_port: int = 8080
    ray_cpus: int = 2
    s3_port: int = 0
    dags_folder: Path = field(default_factory=default_dags_folder)
    info: dict = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def airflow_home(self) -> Path:
        return self.work_dir / "airflow"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    def start(self, timeout_s: float = 300) -> dict:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.api_port == 0:
            self.api_port = free_ports(1)[0]
        _refuse_taken_port(self.api_port)
        try:
            endpoint = self._stack.enter_context(local_s3_server(port=self.s3_port))
            head = self._stack.enter_context(local_ray_head(num_cpus=self.ray_cpus))
            env = airflow_environment(
                self.airflow_home,
                self.dags_folder,
                endpoint,
                head.address,
                self.work_dir,
                f"s3://{DEMO_BUCKET}/{DEMO_PREFIX}",
                ray_token=head.token,
            )
            env.update(deployment_environment(self.airflow_home, self.api_port))
            migrate_airflow_db(env)
            for name, args in AIRFLOW_SERVICES.items():
                extra = ["--port", str(self.api_port)] if name == "api-server" else []
                self._spawn(name, [airflow_executable(), *args, *extra], env)
            url = env["AIRFLOW__API__BASE_URL"]
            self._wait_for_api(url, timeout_s)
            self.info = {
                "ui_url": url,
                "user": ADMIN_USER,
                "password": self._admin_password(timeout_s=30),
                "s3_endpoint": endpoint,
                "report_uri": f"s3://{DEMO_BUCKET}/{DEMO_PREFIX}",
                "ray_dashboard": head.address,
                "ray_token_file": str(head.token_path) if head.token_path else None,
                "ray_temp_dir": str(head.temp_dir),
                "airflow_home": str(self.airflow_home),
                "logs": str(self.logs_dir),
                "pids": {name: proc.pid for name, proc in self._procs.items()}
                | {"ray-head": head.process.pid, "genbench-up": os.getpid()},
            }
            path = self.work_dir / "deployment.json"
            path.write_text(json.dumps(self.info, indent=2) + "\n")
            path.chmod(0o600)  # holds the password
            return self.info
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        out = open(self.logs_dir / f"{name}.log", "ab")  # noqa: SIM115  (owned by the child)
        log.info("starting airflow %s (log %s)", name, out.name)
        self._procs[name] = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole, nothing else
        )
        out.close()

    def _wait_for_api(self, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise GenbenchError(
                        f"airflow {name} exited with code {proc.returncode}; see {self.logs_dir / name}.log"
                    )
            try:
                with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(1)
        raise GenbenchError(f"Airflow's API server at {url} did not answer within {timeout_s:.0f}s")

    def _admin_password(self, timeout_s: float) -> str:
        path = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + timeout_s
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        try:
            return json.loads(path.read_text())[ADMIN_USER]
        except (OSError, ValueError, KeyError) as exc:
            raise GenbenchError(f"cannot read the admin password from {path}: {exc}") from None

    def alive(self) -> dict[str, int | None]:
        """Exit code per Airflow process (None: running)."""
        return {name: proc.poll() for name, proc in self._procs.items()}

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM every process group we started, SIGKILL what is left, then stop Ray and S3."""
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (task runners)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._procs.clear()
        self._stack.close()


def _refuse_taken_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            raise GenbenchError(
                f"port {port} on {LOOPBACK} is in use (another Airflow?); choose one with --port"
            ) from None


class AirflowApi:
    """Airflow's public REST API (``/api/v2``) with a JWT from ``/auth/token``."""

    def __init__(self, base_url: str, user: str, password: str):
        self.base_url = base_url.rstrip("/")
        body = self._call("POST", "/auth/token", {"username": user, "password": password}, auth=False)
        self.token = body["access_token"]

    def _call(self, method: str, path: str, payload: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise GenbenchError(
                f"Airflow API {method} {path} -> HTTP {exc.code}: {exc.read()[:500]!r}"
            ) from None

    def get(self, path: str) -> dict:
        return self._call("GET", path)

    def post(self, path: str, payload: dict) -> dict:
        return self._call("POST", path, payload)

    def patch(self, path: str, payload: dict) -> dict:
        return self._call("PATCH", path, payload)

    def wait_for_dag(self, dag_id: str, timeout_s: float = 300) -> dict:
        """The DAG once the dag-processor has parsed it; import errors fail at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            errors = self.get("/api/v2/importErrors")
            if errors.get("total_entries"):
                raise GenbenchError(f"DAG import errors: {errors['import_errors']}")
            try:
                return self.get(f"/api/v2/dags/{dag_id}")
            except GenbenchError:
                if time.monotonic() > deadline:
                    raise GenbenchError(f"DAG {dag_id} was not parsed within {timeout_s:.0f}s") from None
                time.sleep(2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]

    def follow_run(
        self, dag_id: str, run_id: str, timeout_s: float, poll_s: float = 2.0, on_change=None
    ) -> tuple[str, dict[str, set[str]]]:
        """Poll a DAG run until it ends; return its state and every state each task was seen in."""
        seen: dict[str, set[str]] = {}
        last: dict[tuple, str] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            for ti in self.task_instances(dag_id, run_id):
                key, state = (ti["task_id"], ti["map_index"]), str(ti["state"])
                seen.setdefault(ti["task_id"], set()).add(state)
                if on_change is not None and last.get(key) != state:
                    on_change(ti)
                last[key] = state
            state = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state, seen
            if time.monotonic() > deadline:
                raise GenbenchError(f"DAG run {run_id} still {state} after {timeout_s:.0f}s")
            time.sleep(poll_s)


def stage_times(task_instances: list[dict]) -> list[tuple[str, int, float, float]]:
    """Per task: (task_id, instances, wall seconds from first start to last end, summed seconds)."""
    from datetime import datetime

    def parse(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

    rows: dict[str, list] = {}
    order: list[str] = []
    for ti in sorted(task_instances, key=lambda t: t.get("start_date") or "~"):
        start, end = parse(ti.get("start_date")), parse(ti.get("end_date"))
        if start is None or end is None:
            continue
        if ti["task_id"] not in rows:
            order.append(ti["task_id"])
            rows[ti["task_id"]] = [0, start, end, 0.0]
        row = rows[ti["task_id"]]
        row[0] += 1
        row[1], row[2] = min(row[1], start), max(row[2], end)
        row[3] += (end - start).total_seconds()
    return [(t, rows[t][0], (rows[t][2] - rows[t][1]).total_seconds(), rows[t][3]) for t in order]
