"""Registry of task families. Users add their own with `register_family`."""

from __future__ import annotations

from genbench_tasks.errors import GenbenchError
from genbench_tasks.families.base import Example, Rng, Score, TaskFamily

_REGISTRY: dict[str, TaskFamily] = {}


def register_family(family: TaskFamily, *, replace: bool = False) -> TaskFamily:
    if family.name in _REGISTRY and not replace:
        raise GenbenchError(f"task family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def _register_builtins() -> None:
    from genbench_tasks.families import code_generation, humaneval, reasoning, rewriting

    for module in (rewriting, reasoning, code_generation, humaneval):
        register_family(module.FAMILY, replace=True)


def all_families() -> list[TaskFamily]:
    return list(_REGISTRY.values())


def get_family(name: str) -> TaskFamily:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GenbenchError(f"unknown task family {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def training_families(names: list[str]) -> list[str]:
    """The training-role families among ``names`` (e.g. a profile's ``data.families``), in order."""
    return [name for name in names if get_family(name).role == "train"]


def family_for_data_source(data_source: str) -> TaskFamily:
    for family in _REGISTRY.values():
        if family.data_source == data_source:
            return family
    raise GenbenchError(f"no task family scores data_source {data_source!r}")


_register_builtins()

__all__ = [
    "Example",
    "Rng",
    "Score",
    "TaskFamily",
    "all_families",
    "family_for_data_source",
    "get_family",
    "register_family",
    "training_families",
]
