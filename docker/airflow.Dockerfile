# genbench Airflow image: the official Airflow image + the project with its `airflow` extra + the DAGs.
# Every Airflow component (api-server, scheduler, dag-processor, triggerer, celery worker) runs this image.
# Training and evaluation do not run here: they are Ray jobs in genbench-worker images; Airflow plans, checks
# configs, validates data, polls Ray and publishes to S3.
#
# Build from the repository root (context = repo, see /.dockerignore):
#   docker build -f docker/airflow.Dockerfile -t genbench-airflow:3.3.2 .

# Python 3.12 like the worker images: nothing requires it (Airflow talks to Ray over HTTP only), but one
# interpreter version across the stack keeps pickled/compiled artifacts and bug reports comparable.
FROM apache/airflow:3.3.2-python3.12

# The Jobs API client should match the cluster's Ray (2.60): older clients miss fields newer servers send.
ARG RAY_VERSION=2.60.0

# Airflow's docs for extending the image: install as the airflow user (never root) and always name
# apache-airflow==$AIRFLOW_VERSION, so pip cannot up- or downgrade Airflow to satisfy another requirement.
# 50000 is the official image's airflow user (numeric so Kubernetes' runAsNonRoot can check it).
USER 50000:0
COPY --chown=airflow:0 pyproject.toml README.md /opt/genbench/
COPY --chown=airflow:0 genbench_tasks /opt/genbench/genbench_tasks
# The source tree is removed after installing: the triggerer and the DAG processor must import the installed
# package (operators and triggers live there), never a stray checkout.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/genbench[airflow]" "ray[default]==${RAY_VERSION}" \
    && rm -rf /opt/genbench \
    && python -c "import genbench_tasks.pipeline.ray_operator, ray; assert ray.__version__ == '${RAY_VERSION}'"

# DAGs are baked in (immutable, versioned with the image) rather than mounted.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
