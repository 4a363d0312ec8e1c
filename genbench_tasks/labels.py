"""Run labels: the study's baseline rows (``sft``, ``trl-ppo``) and verl versions, in one order.

Every table, chart and comparison orders labels with :func:`label_key`: the baselines first, in the study's
order, then verl versions by release order (``packaging.version``; a label that is not a version sorts last,
by name). Only verl versions are candidates in regression comparisons; baselines are reference rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from packaging.version import InvalidVersion, Version

SFT = "sft"
TRL_PPO = "trl-ppo"
#: The study's baseline rows, in its order, with their display names.
BASELINES: dict[str, str] = {SFT: "SFT only", TRL_PPO: "traditional PPO (TRL)"}


def is_baseline(label: str) -> bool:
    return label in BASELINES


def label_key(label: str) -> tuple:
    if label in BASELINES:
        return (0, list(BASELINES).index(label))
    try:
        return (1, Version(label))
    except InvalidVersion:
        return (2, label)


def sort_labels(labels: Iterable[str]) -> list[str]:
    return sorted(set(labels), key=label_key)


def display_name(label: str) -> str:
    return BASELINES.get(label, f"verl {label}")
