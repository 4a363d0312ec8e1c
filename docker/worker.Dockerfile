# genbench worker image: one per verl release, tagged genbench-worker:verl-<version>.
#
# It has two roles, which is why it carries podman:
#  1. Every Ray job of that verl version runs in it: the nightly's runtime_env sets
#     image_uri = profile.cluster.worker_image = "genbench-worker:verl-{verl_version}".
#  2. One of these images (any version) also runs the Ray head/worker *nodes*. Ray's image_uri starts each
#     job's processes with `podman run --userns=keep-id ... <image>` on the node and requires the node and the
#     job image to share the exact Python and Ray versions; building every image from this file guarantees
#     that, and --userns=keep-id only works with rootless podman, hence the non-root user below.
#
# Build from the repository root (context = repo, see /.dockerignore), one image per verl version:
#   docker build -f docker/worker.Dockerfile --build-arg VERL_VERSION=0.9.1 -t genbench-worker:verl-0.9.1 .
#   docker build -f docker/worker.Dockerfile --build-arg VERL_VERSION=0.8.0 \
#       --build-arg CUDA_IMAGE=nvidia/cuda:12.9.1-devel-ubuntu24.04 -t genbench-worker:verl-0.8.0 .
# The CUDA base follows the torch wheel that verl's vllm extra resolves to: verl 0.9.1 pins torch==2.11.0 /
# vllm==0.24.0, whose PyPI wheels are CUDA 13.0 builds; verl 0.8.0 allows vllm<=0.12.0 -> torch 2.9.0 (CUDA 12.8
# wheels; verl's own images use a 12.9 devel base). Ubuntu 24.04 for every version: its python3 is 3.12, which
# both verl ranges accept (0.9.1 needs <3.13) and which must be identical across images (see 2. above).
# devel, not runtime: Triton and FlashInfer compile kernels at run time (nvcc, gcc).

ARG CUDA_IMAGE=nvidia/cuda:13.0.2-devel-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG VERL_VERSION=0.9.1
# Must equal the Ray version of the nodes and of the Airflow image's Jobs client (image_uri requirement).
ARG RAY_VERSION=2.60.0
# Same UID as the Airflow containers (AIRFLOW_UID): both sides write the shared work dir, and one owner avoids
# permission fights over cells and checkpoints. Group 0 as in the official Airflow image.
ARG GENBENCH_UID=50000
# Rootless podman maps the container's other UIDs onto this range of the node's UIDs.
ARG SUBUID_START=100000

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive

# bubblewrap: sandbox for generated code (scoring falls back to rlimits where it cannot create namespaces).
# podman + uidmap + fuse-overlayfs: rootless podman for Ray's image_uri (fuse-overlayfs because the node itself
# runs in a container, where kernel overlay-on-overlay is not available). build-essential/python3-dev: Triton's
# and FlashInfer's JIT. curl: health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        bubblewrap build-essential ca-certificates curl fuse-overlayfs git gnupg podman \
        python3 python3-dev python3-venv uidmap \
    && rm -rf /var/lib/apt/lists/*

# nvidia-ctk generates the CDI spec through which rootless podman hands the node's GPUs to job containers
# (the legacy NVIDIA OCI hook does not work rootless). Not in Ubuntu's archive: NVIDIA's documented apt repo.
RUN curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \
        | gpg --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg \
    && curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
        | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#' \
        > /etc/apt/sources.list.d/nvidia-container-toolkit.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends nvidia-container-toolkit-base \
    && rm -rf /var/lib/apt/lists/*

# A venv: Ubuntu 24.04's system Python is externally managed (PEP 668). `python` must resolve to it because
# Ray starts job workers as `podman run --entrypoint python <image>`.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1

# The heavy, rarely changing layer first: verl with its vllm extra (a bare verl lacks packages main_ppo
# imports: vllm, torch, tensordict, ...) and Ray pinned to the cluster's version.
RUN pip install --no-cache-dir "verl[vllm]==${VERL_VERSION}" "ray[default]==${RAY_VERSION}"

# The project last, so code changes rebuild only this layer. verl and ray are repeated so the resolver keeps
# the pins above instead of moving them for the project's looser ranges. The source tree is removed so jobs
# import the installed package only. The train extra brings trl==1.12.0: the trl-ppo baseline runs in these
# images too (docs/trl-baseline.md).
COPY pyproject.toml README.md /opt/genbench/
COPY genbench_tasks /opt/genbench/genbench_tasks
RUN pip install --no-cache-dir "/opt/genbench[train,eval]" "verl[vllm]==${VERL_VERSION}" "ray[default]==${RAY_VERSION}" \
    && rm -rf /opt/genbench \
    && python -c "import genbench_tasks, ray, verl; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"

# Rootless podman needs a subordinate ID range and setuid new[ug]idmap (image layers can drop the file
# capabilities Ubuntu uses instead). /etc/cdi is writable by the user because the node generates the GPU spec
# at start, when the GPUs are known.
RUN useradd --uid "${GENBENCH_UID}" --gid 0 --create-home --shell /bin/bash genbench \
    && echo "genbench:${SUBUID_START}:65536" > /etc/subuid \
    && echo "genbench:${SUBUID_START}:65536" > /etc/subgid \
    && chmod 4755 /usr/bin/newuidmap /usr/bin/newgidmap \
    && install -d -o genbench -g 0 -m 0775 /etc/cdi \
    && install -d -o genbench -g 0 -m 2775 /mnt/genbench \
    && install -d -o genbench -g 0 /home/genbench/.config/containers /home/genbench/.local/share/containers

# Podman inside a container: no systemd (cgroupfs, file events), no cgroup delegation, and fuse-overlayfs
# storage (the storage dir is a volume, so pulled job images survive node restarts).
RUN printf '%s\n' '[containers]' 'cgroups = "disabled"' 'log_driver = "k8s-file"' \
        '[engine]' 'cgroup_manager = "cgroupfs"' 'events_logger = "file"' \
        > /etc/containers/containers.conf \
    && printf '%s\n' '[storage]' 'driver = "overlay"' '[storage.options.overlay]' \
        'mount_program = "/usr/bin/fuse-overlayfs"' \
        > /etc/containers/storage.conf

# /mnt/genbench is the shared work dir (genbench_work_dir): the same path in Airflow, on the Ray nodes and,
# through the node's containers.conf, inside job containers. Caches live there so every job reuses them.
ENV HF_HOME=/mnt/genbench/cache/huggingface \
    GENBENCH_CACHE=/mnt/genbench/cache/genbench

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER ${GENBENCH_UID}:0
WORKDIR /home/genbench
