"""Shared pytest configuration. Real-service fixtures live in tests/fixtures/<service>.py."""

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# No hub access exists at run time: everything loads from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Airflow reads its configuration once, at first import: point it at a private SQLite home before any test
# imports it.
if (
    "AIRFLOW_HOME" not in os.environ
    or os.environ.get("GENBENCH_TEST_AIRFLOW_HOME") != os.environ["AIRFLOW_HOME"]
):
    _home = tempfile.mkdtemp(prefix="gb-airflow-")
    os.environ.update(
        AIRFLOW_HOME=_home,
        GENBENCH_TEST_AIRFLOW_HOME=_home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_home}/airflow.db",
    )

pytest_plugins = [
    name
    for name in ("tests.fixtures.ray_cluster", "tests.fixtures.s3_server")
    if (REPO / "tests" / "fixtures" / (name.rsplit(".", 1)[1] + ".py")).exists()
]
