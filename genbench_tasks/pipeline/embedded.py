"""The embedded default: the production DAG on one machine (Airflow on SQLite, a local Ray head,
moto's S3 server on loopback). Used by `genbench demo` and the end-to-end test."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from genbench_tasks.errors import GenbenchError
from genbench_tasks.pipeline import settings

log = logging.getLogger(__name__)

DEMO_BUCKET = "genbench-reports"
DEMO_PREFIX = "nightly"


class EmbeddedEnv(BaseModel):
    work_dir: str
    airflow_home: str
    s3_endpoint: str
    ray_address: str
    report_uri: str


def default_dags_folder() -> Path:
    return Path(__file__).resolve().parents[2] / "dags"


@contextlib.contextmanager
def local_s3_server(bucket: str = DEMO_BUCKET) -> Iterator[str]:
    """moto's S3-compatible server on loopback with `bucket` created; yields the endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "genbench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "genbench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    log.info("local S3 (moto) at %s, bucket %s", endpoint, bucket)
    try:
        yield endpoint
    finally:
        server.stop()


@contextlib.contextmanager
def local_ray_head(num_cpus: int = 2) -> Iterator[str]:
    from genbench_tasks.launch.local_ray import start_ray_head, stop_ray_head

    address, proc, temp_dir = start_ray_head(num_cpus=num_cpus)
    try:
        yield address
    finally:
        stop_ray_head(proc, temp_dir)


def airflow_environment(
    airflow_home: Path, dags_folder: Path, s3_endpoint: str, ray_address: str, work_dir: Path, report_uri: str
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
    host, _, port = ray_address.removeprefix("http://").partition(":")
    ray_conn = {"conn_type": "http", "host": host, "port": int(port or 8265), "schema": "http"}
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        f"AIRFLOW_CONN_{settings.CONN_S3.upper()}": json.dumps(s3_conn),
        f"AIRFLOW_CONN_{settings.CONN_RAY.upper()}": json.dumps(ray_conn),
        f"AIRFLOW_VAR_{settings.VAR_WORK_DIR.upper()}": str(work_dir),
        f"AIRFLOW_VAR_{settings.VAR_REPORT_URI.upper()}": report_uri,
    }


def migrate_airflow_db(env: dict[str, str]) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    cmd = [str(airflow) if airflow.exists() else "airflow", "db", "migrate"]
    log.info("initialising Airflow's SQLite metadata DB in %s", env["AIRFLOW_HOME"])
    result = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise GenbenchError(f"`airflow db migrate` failed: {result.stderr.strip().splitlines()[-1:]}")


def run_dag_once(run_conf: dict, dags_folder: Path | None = None) -> str:
    """Parse the DAG folder (import errors fail loudly) and run genbench_nightly once with dag.test()."""
    from airflow.dag_processing.dagbag import DagBag

    folder = dags_folder or default_dags_folder()
    bag = DagBag(dag_folder=str(folder))
    if bag.import_errors:
        raise GenbenchError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag("genbench_nightly")
    dag_run = dag.test(run_conf=run_conf, logical_date=None)
    return str(dag_run.state)
