"""Shared pytest configuration. Real-service fixtures live in tests/fixtures/<service>.py."""

import os

# No hub access exists at run time: everything loads from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    name
    for name in ("tests.fixtures.ray_cluster", "tests.fixtures.s3_server", "tests.fixtures.airflow_home")
    if os.path.exists(os.path.join(os.path.dirname(__file__), "fixtures", name.rsplit(".", 1)[1] + ".py"))
]
