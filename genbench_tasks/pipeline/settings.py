"""Names the Airflow deployment must provide (connections, variables, env). One place, checked by tests."""

from __future__ import annotations

import os

# Airflow connections.
CONN_S3 = "genbench_s3"  # conn_type aws; extra.endpoint_url for MinIO/moto
CONN_RAY = "genbench_ray"  # host/port of the Ray dashboard (Jobs API), e.g. http://ray-head:8265

# Airflow variables.
VAR_REPORT_URI = "genbench_report_uri"  # s3://bucket/prefix where runs and the history page are published
VAR_WORK_DIR = "genbench_work_dir"  # storage shared by Airflow workers and Ray workers (runs, cell cache)
VAR_WEBHOOK_URL = "genbench_webhook_url"  # optional: POST a JSON run summary here

# Environment read when the DAG file is parsed (cheap, no DB access).
ENV_SCHEDULE = "GENBENCH_NIGHTLY_CRON"
DEFAULT_SCHEDULE = "0 2 * * *"
ENV_DEFAULT_PROFILE = "GENBENCH_PROFILE"
ENV_TRAIN_CONCURRENCY = "GENBENCH_TRAIN_CONCURRENCY"  # PPO jobs of one nightly running at once
TRAIN_JOB_GIB = 5  # what one verl main_ppo job on CPU takes at its peak (~4.5 GiB, measured)

REQUIRED_CONNECTIONS = (CONN_S3, CONN_RAY)
REQUIRED_VARIABLES = (VAR_REPORT_URI, VAR_WORK_DIR)
OPTIONAL_VARIABLES = (VAR_WEBHOOK_URL,)


def schedule() -> str:
    return os.environ.get(ENV_SCHEDULE, DEFAULT_SCHEDULE)


def default_profile() -> str:
    from genbench_tasks.profiles import DEFAULT_PROFILE

    return os.environ.get(ENV_DEFAULT_PROFILE, DEFAULT_PROFILE)


def train_concurrency() -> int:
    """How many PPO train tasks of a nightly run at once: ``$GENBENCH_TRAIN_CONCURRENCY``, else what this
    machine holds (one per core, ``TRAIN_JOB_GIB`` of memory each). On a GPU cluster set the env var: Ray
    queues what does not fit anyway, this bounds what Airflow holds open."""
    value = os.environ.get(ENV_TRAIN_CONCURRENCY)
    if value:
        return max(1, int(value))
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return max(1, min(os.cpu_count() or 1, int(memory_gib // TRAIN_JOB_GIB)))
