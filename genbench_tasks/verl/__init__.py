"""Everything genbench knows about verl releases, behind one front door.

* :mod:`.config`: the per-release compatibility rules (:func:`rules_for`: key moves, reward keys, seeds, the
  env vars verl owns), the wheel cache (:func:`ensure_verl_release`), Hydra override syntax (:func:`override`)
  and the offline checks against a release's own config (:func:`check_overrides`).
* :mod:`.job`: one PPO run (:class:`VerlRun`), its Hydra overrides (:func:`build_overrides`), its check
  (:func:`validate_run`) and its Ray job (:func:`build_job_spec`, :func:`preflight`,
  :func:`check_merged_model`).

Callers import from ``genbench_tasks.verl``. Imports stay light (pydantic, omegaconf, hydra): the Airflow DAG
imports this package. The CPU layer (verl's trainer on CPU: patches, ``hf`` rollout, :func:`job_layer` building
the :class:`DeviceLayer` of a CPU run) lives in :mod:`genbench_tasks.verl_cpu`, above this package.
"""

from genbench_tasks.verl.config import (
    CACHE_ENV,
    MIN_VERL_VERSION,
    REWARD_FUNCTION,
    REWARD_MODULE,
    VERL_OWNED_ENV_VARS,
    VerlConfigError,
    VerlConfigReport,
    VersionRules,
    check_overrides,
    check_runtime_env,
    compose,
    ensure_verl_env,
    ensure_verl_release,
    first_on_python_path,
    hydra_value,
    installed_verl,
    known_keys,
    override,
    parse_version,
    rules_for,
)
from genbench_tasks.verl.job import (
    DeviceLayer,
    VerlJob,
    VerlRun,
    build_job_spec,
    build_overrides,
    check_merged_model,
    collect_metrics,
    data_files,
    make_run,
    merge_argv,
    on_cpu,
    preflight,
    run_main_ppo,
    validate_run,
    verl_steps,
)

__all__ = [
    "CACHE_ENV",
    "DeviceLayer",
    "MIN_VERL_VERSION",
    "REWARD_FUNCTION",
    "REWARD_MODULE",
    "VERL_OWNED_ENV_VARS",
    "VerlConfigError",
    "VerlConfigReport",
    "VerlJob",
    "VerlRun",
    "VersionRules",
    "build_job_spec",
    "build_overrides",
    "check_merged_model",
    "check_overrides",
    "collect_metrics",
    "check_runtime_env",
    "compose",
    "data_files",
    "ensure_verl_env",
    "ensure_verl_release",
    "first_on_python_path",
    "hydra_value",
    "installed_verl",
    "known_keys",
    "make_run",
    "merge_argv",
    "on_cpu",
    "override",
    "parse_version",
    "preflight",
    "rules_for",
    "run_main_ppo",
    "validate_run",
    "verl_steps",
]
