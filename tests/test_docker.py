"""Static checks of the production deployment in docker/: nothing here builds or starts a container.

* Both Dockerfiles pass hadolint (docker/.hadolint.yaml holds the few justified ignores).
* docker/docker-compose.yaml validates against the Compose Specification's own JSON schema (check-jsonschema's
  vendored copy, checked against the hash check-jsonschema recorded when vendoring it: offline, not hand-written).
* Every connection and variable the DAG reads (genbench_tasks.pipeline.settings) reaches every Airflow service,
  and the values parse the way Airflow and the code will parse them.
* The shared work dir is one volume at one path in Airflow, on the Ray nodes and in Ray's job containers,
  and genbench_work_dir names that path.
* Every ${VAR} of the compose file is documented in docker/.env.example, where secrets are left empty.
* The build context (.dockerignore) holds what the Dockerfiles COPY and none of .venv, runs, caches, tests.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from genbench_tasks.pipeline import settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
AIRFLOW_COMPONENTS = {"api-server", "scheduler", "dag-processor", "triggerer", "celery worker"}
RAY_NODES = ("ray-head", "ray-worker")
WORK_VOLUME = "genbench-work"


def _tool(name: str) -> str:
    """A console script of this environment (the dev extra installs them), else one on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the dev extra (pip install -e '.[dev]')")
    return found


# ------------------------------------------------------------------------------- compose interpolation
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}, $VAR, and
# $$ for a literal $ (Compose Specification, "Interpolation"). Defaults here never nest or contain "}".
_INTERP = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def _references(text: str) -> list[tuple[str, str | None, str | None]]:
    """(name, operator, argument) of every interpolation in raw compose text, escapes skipped."""
    return [(m["braced"] or m["bare"], m["op"], m["arg"]) for m in _INTERP.finditer(text) if not m["escaped"]]


def _interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name, op, arg = m["braced"] or m["bare"], m["op"], m["arg"] or ""
        val = env.get(name)
        if op in (":-", "-"):
            return arg if val is None or (op == ":-" and val == "") else val
        if op in (":?", "?"):
            if val is None or (op == ":?" and val == ""):
                raise ValueError(f"${{{name}}} is required: {arg}")
            return val
        if op in (":+", "+"):
            return arg if val is not None and (op == "+" or val != "") else ""
        return val or ""

    return _INTERP.sub(sub, value)


def _interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return _interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


def _env_example() -> tuple[dict[str, str], list[list[str]]]:
    """Variables of .env.example and its paragraphs (blank-line separated) for the documentation check."""
    values: dict[str, str] = {}
    paragraphs: list[list[str]] = [[]]
    for line in ENV_EXAMPLE.read_text().splitlines():
        if not line.strip():
            paragraphs.append([])
            continue
        paragraphs[-1].append(line)
        if not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            assert name not in values, f".env.example: {name} twice"
            values[name.strip()] = value
    return values, [p for p in paragraphs if p]


def _required_secrets() -> set[str]:
    """Variables the compose file refuses to start without (${VAR:?...})."""
    return {name for name, op, _ in _references(COMPOSE.read_text()) if op in (":?", "?")}


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the x-airflow-common anchors and << merges


@pytest.fixture(scope="module")
def compose(raw_compose) -> dict:
    """The compose file as `docker compose --env-file .env.example config` would see it, secrets filled in."""
    env, _ = _env_example()
    env = {k: (v or f"test-{k.lower()}" if k in _required_secrets() else v) for k, v in env.items()}
    return _interpolate_tree(raw_compose, env)


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _airflow_services(doc: dict) -> list[str]:
    image = doc["x-airflow-common"]["image"]
    return sorted(name for name, svc in doc["services"].items() if svc.get("image") == image)


def _mounts(service: dict) -> dict[str, str]:
    """target -> source of the service's short-syntax volumes."""
    out = {}
    for item in service.get("volumes") or []:
        source, _, rest = item.partition(":")
        out[rest.split(":")[0]] = source
    return out


# ---------------------------------------------------------------------------------------------- hadolint
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    result = subprocess.run(
        [_tool("hadolint"), "--config", str(DOCKER / ".hadolint.yaml"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_images_exist_and_pin_what_they_must():
    assert {p.name for p in DOCKERFILES} == {"airflow.Dockerfile", "worker.Dockerfile"}
    airflow = (DOCKER / "airflow.Dockerfile").read_text()
    worker = (DOCKER / "worker.Dockerfile").read_text()
    airflow_version = metadata.version("apache-airflow")
    assert re.search(rf"^FROM apache/airflow:{re.escape(airflow_version)}-python3\.\d+$", airflow, re.M)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in airflow  # Airflow's rule for extending its image
    assert '"/opt/genbench[airflow]"' in airflow
    assert re.search(r"^ARG VERL_VERSION=", worker, re.M)
    assert '"verl[vllm]==${VERL_VERSION}"' in worker
    assert '"/opt/genbench[train,eval]"' in worker
    for package in ("bubblewrap", "podman", "uidmap"):
        assert re.search(rf"\b{package}\b", worker), package
    # Ray's image_uri needs the job images, the nodes and the Jobs client on the cluster's Ray version.
    ray_args = {re.search(r"^ARG RAY_VERSION=(\S+)$", text, re.M)[1] for text in (airflow, worker)}
    assert ray_args == {metadata.version("ray")}


# ----------------------------------------------------------------------------------- compose: the schema
def test_compose_file_matches_the_compose_specification_schema():
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = vendor / "compose-spec.json"
    recorded = (vendor / "sha256" / "compose-spec.sha256").read_text().strip()
    # The real specification's schema, as vendored from compose-spec/compose-spec, unmodified.
    assert hashlib.sha256(schema.read_bytes()).hexdigest() == recorded
    assert json.loads(schema.read_text())["title"] == "Compose Specification"
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_volumes_and_profiles(compose):
    services = compose["services"]
    airflow = _airflow_services(compose)
    commands = {
        " ".join(services[s]["command"])
        if isinstance(services[s]["command"], list)
        else services[s]["command"]
        for s in airflow
        if s != "airflow-init"
    }
    assert commands == AIRFLOW_COMPONENTS
    assert "airflow db migrate" in services["airflow-init"]["command"][-1]
    # The celery profile adds the broker and a worker; everything else always runs.
    profiled = {name: svc["profiles"] for name, svc in services.items() if svc.get("profiles")}
    assert profiled == {"redis": ["celery"], "airflow-worker": ["celery"]}
    assert "CeleryExecutor" not in compose["x-airflow-common"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
    # Named volumes for state, all declared.
    assert _mounts(services["postgres"])["/var/lib/postgresql/data"] in compose["volumes"]
    assert _mounts(services["minio"])["/data"] in compose["volumes"]
    for name in airflow:
        assert _mounts(services[name])["/opt/airflow/logs"] in compose["volumes"]
    for name, svc in services.items():
        for source in _mounts(svc).values():
            assert source.startswith((".", "/")) or source in compose["volumes"], (name, source)


def test_every_long_running_service_has_a_health_check(compose):
    for name, svc in compose["services"].items():
        if svc.get("restart") == "no":  # one-shot init services
            continue
        test = (svc.get("healthcheck") or {}).get("test")
        assert test and test != ["NONE"], f"{name} has no health check"


def test_ray_head_serves_the_jobs_api_and_the_worker_reserves_gpus(compose):
    services = compose["services"]
    assert "--dashboard-port=8265" in services["ray-head"]["command"]
    assert any(p.endswith(":8265:8265") for p in services["ray-head"]["ports"])
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert services["ray-worker"]["command"] == ["--address=ray-head:6379"]


# ------------------------------------------------------------- compose: what the DAG reads, per service
@pytest.fixture(scope="module")
def env_backend(tmp_path_factory):
    """Airflow's EnvironmentVariablesBackend: what resolves AIRFLOW_CONN_* / AIRFLOW_VAR_* at run time.

    Imported once for the module; a first airflow import must not create ~/airflow.
    """
    with pytest.MonkeyPatch.context() as mp:
        if "airflow" not in sys.modules:
            mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        from airflow.secrets.environment_variables import EnvironmentVariablesBackend
    return EnvironmentVariablesBackend()


def test_every_airflow_service_gets_every_name_the_dag_reads(compose):
    services = compose["services"]
    names = _airflow_services(compose)
    assert len(names) == len(AIRFLOW_COMPONENTS) + 1  # + airflow-init
    for name in names:
        env = _environment(services[name])
        for conn_id in settings.REQUIRED_CONNECTIONS:
            assert env.get(f"AIRFLOW_CONN_{conn_id.upper()}"), (name, conn_id)
        for var in settings.REQUIRED_VARIABLES:
            assert env.get(f"AIRFLOW_VAR_{var.upper()}"), (name, var)
        for var in settings.OPTIONAL_VARIABLES:
            assert f"AIRFLOW_VAR_{var.upper()}" in env, (name, var)  # may be empty: feature off
        for var in (settings.ENV_SCHEDULE, settings.ENV_DEFAULT_PROFILE):
            assert env.get(var), (name, var)


def test_connection_and_variable_values_parse_as_the_code_expects(compose, env_backend, monkeypatch):
    from airflow.timetables.trigger import CronTriggerTimetable

    from genbench_tasks.pipeline.ray_operator import ray_address_from_connection
    from genbench_tasks.profiles import load_profile
    from genbench_tasks.s3_client import S3Uri

    services = compose["services"]
    for name in _airflow_services(compose):
        env = _environment(services[name])
        for key, value in env.items():
            if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
                monkeypatch.setenv(key, value)

        s3 = env_backend.get_connection(settings.CONN_S3)
        assert s3.conn_type == "aws" and s3.login and s3.password, name
        assert s3.extra_dejson["endpoint_url"] == "http://minio:9000"
        assert s3.extra_dejson["config_kwargs"] == {"s3": {"addressing_style": "path"}}

        ray = env_backend.get_connection(settings.CONN_RAY)
        assert ray_address_from_connection(ray) == "http://ray-head:8265", name
        assert ray.host in services

        report = S3Uri.parse(env_backend.get_variable(settings.VAR_REPORT_URI))
        init_env = _environment(services["minio-init"])
        assert report.bucket == init_env["GENBENCH_BUCKET"]  # the bucket minio-init creates
        assert report.key == init_env["GENBENCH_REPORT_PREFIX"]  # the prefix the publisher may write
        assert s3.login == init_env["GENBENCH_S3_ACCESS_KEY"]  # the user holding that policy
        for var in settings.OPTIONAL_VARIABLES:
            assert env_backend.get_variable(var) is not None, (name, var)

        CronTriggerTimetable(env[settings.ENV_SCHEDULE], timezone="UTC")  # raises on a bad expression
        assert load_profile(env[settings.ENV_DEFAULT_PROFILE]).backend == "verl"  # the GPU deployment


def test_shared_work_dir_is_one_volume_at_one_path_everywhere(compose):
    services = compose["services"]
    paths = set()
    for name in [*_airflow_services(compose), *RAY_NODES]:
        mounts = _mounts(services[name])
        targets = [target for target, source in mounts.items() if source == WORK_VOLUME]
        assert len(targets) == 1, (name, mounts)
        paths.add(targets[0])
        if name not in RAY_NODES:
            assert _environment(services[name])[f"AIRFLOW_VAR_{settings.VAR_WORK_DIR.upper()}"] == targets[0]
    assert len(paths) == 1, paths
    (work,) = paths
    # Ray's image_uri mounts only /tmp/ray into job containers: the nodes add the work dir at the same path.
    start = services["ray-head"]["entrypoint"][2]
    assert start == services["ray-worker"]["entrypoint"][2]
    assert f'volumes = ["{work}:{work}"]' in start
    assert f"install -d -o genbench -g 0 -m 2775 {work}" in (DOCKER / "worker.Dockerfile").read_text()


def test_ray_nodes_pull_the_images_the_profiles_name(compose):
    env = _environment(compose["services"]["ray-worker"])
    prepulled = set(env["GENBENCH_PREPULL_VERSIONS"].split())
    from genbench_tasks.profiles import load_profile

    for name in ("gpu-small", "paper"):
        profile = load_profile(name)
        assert set(profile.verl_versions) <= prepulled, name
        images = {profile.cluster.worker_image.format(verl_version=v) for v in profile.verl_versions}
        assert compose["services"]["ray-head"]["image"] in images
    start = compose["services"]["ray-worker"]["entrypoint"][2]
    assert profile.cluster.worker_image.format(verl_version="$v") in start


# --------------------------------------------------------------------------------------- .env.example
def test_env_example_documents_every_compose_variable():
    values, paragraphs = _env_example()
    references = _references(COMPOSE.read_text())
    missing = sorted({name for name, _, _ in references} - set(values))
    assert not missing, f"referenced in docker-compose.yaml, not in .env.example: {missing}"
    for paragraph in paragraphs:
        first_var = next((i for i, line in enumerate(paragraph) if not line.startswith("#")), None)
        assert first_var is None or first_var > 0, f"undocumented: {paragraph[first_var]}"
    # An example value must not contradict the default the compose file falls back to.
    for name, op, arg in references:
        if op == ":-" and values[name]:
            assert values[name] == arg, (name, values[name], arg)


def test_env_example_holds_no_secrets():
    values, _ = _env_example()
    secrets = {name for name in _required_secrets() if re.search(r"PASSWORD|SECRET|FERNET|TOKEN", name)}
    secrets |= {"HF_TOKEN"}  # optional, so not required by compose, but a secret all the same
    assert "POSTGRES_PASSWORD" in secrets and "AIRFLOW_FERNET_KEY" in secrets
    for name in secrets:
        assert values[name] == "", f"{name} has a value in .env.example: leave secrets empty"


# ---------------------------------------------------------------------------------------- build context
def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""

    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i : end + 1], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        rx = regex(raw[1:] if negate else raw)
        if any(rx.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_images_copy_and_nothing_else():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    copied = []
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                args = [a for a in line.split()[1:] if not a.startswith("--")]
                copied += [a.rstrip("/") for a in args[:-1]]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert not _dockerignore_excludes(source, patterns), f"COPY {source} but .dockerignore drops it"
    for kept in (
        "genbench_tasks/pipeline/settings.py",
        "genbench_tasks/profiles/gpu-small.yaml",
        "dags/genbench_nightly.py",
    ):
        assert not _dockerignore_excludes(kept, patterns), kept
    for dropped in (
        ".venv/bin/python",
        "runs/demo/summary.json",
        "out/report.html",
        "tests/fixtures/s3_server.py",
        "tests/test_docker.py",
        ".git/HEAD",
        ".env",
        "docker/.env",
        "genbench_tasks/.env",
        "genbench_tasks/__pycache__/errors.cpython-312.pyc",
        "genbench_tasks/rewards.pyc",
        "genbench.egg-info/PKG-INFO",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/CACHEDIR.TAG",
        "benchmarks/bench_train.py",
    ):
        assert _dockerignore_excludes(dropped, patterns), dropped
