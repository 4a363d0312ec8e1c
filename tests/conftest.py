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
# imports it, one per pytest-xdist worker (a worker inherits the controller's environment).
_owner = os.environ.get("PYTEST_XDIST_WORKER", "main")
if os.environ.get("GENBENCH_TEST_AIRFLOW_HOME") != f"{os.environ.get('AIRFLOW_HOME')}#{_owner}":
    _home = tempfile.mkdtemp(prefix="gb-airflow-")
    os.environ.update(
        AIRFLOW_HOME=_home,
        GENBENCH_TEST_AIRFLOW_HOME=f"{_home}#{_owner}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_home}/airflow.db",
    )

pytest_plugins = [
    name
    for name in ("tests.fixtures.ray_cluster", "tests.fixtures.s3_server")
    if (REPO / "tests" / "fixtures" / (name.rsplit(".", 1)[1] + ".py")).exists()
]

#: Modules measured longest (``--durations``), started first so that ``make test``'s workers
#: (``pytest -n N --dist loadfile``) do not end on one long module; the rest keep their order.
LONGEST_FIRST = (
    "test_verl_trainer_cpu.py",
    "test_local_deployment.py",
    "test_trl.py",
    "test_training.py",
    "test_pretrained.py",
    "test_local_ray.py",
    "test_ray_jobs.py",
    "test_publish.py",
    "test_ray_operator.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's order is kept
