"""``index.json`` at the publish prefix: every published run, newest first (written by ``publish.s3``
with a compare-and-swap, read by it and by the history page)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

INDEX_SCHEMA = "genbench.index/1"


class HeadlineStat(BaseModel):
    n: int | None = None
    mean: float | None = None
    std: float | None = None


class FamilyHeadline(BaseModel):
    """Per version: success_rate and reward_mean (mean, seed std) of one family."""

    role: str | None = None
    versions: dict[str, dict[str, HeadlineStat]] = Field(default_factory=dict)


class IndexEntry(BaseModel):
    """One run in ``index.json`` and on the history page (paths relative to the publish prefix)."""

    model_config = ConfigDict(extra="allow")

    run_key: str
    run_id: str
    date: str
    status: str = "unknown"
    profile: str | None = None
    verl_versions: list[str] = Field(default_factory=list)
    baseline_version: str | None = None
    seeds: list[Any] = Field(default_factory=list)
    validation: str = "unknown"
    finished: str | None = None
    published_at: str | None = None
    report: str | None = None
    summary: str | None = None
    verdict_counts: dict[str, int] = Field(default_factory=dict)
    regressions: list[str] = Field(default_factory=list)
    headline: dict[str, FamilyHeadline] = Field(default_factory=dict)
    gap: dict[str, dict[str, float | None]] = Field(default_factory=dict)

    def order_key(self) -> tuple[str, str, str]:
        """Chronological order of runs: date, then finish time, then key."""
        return (self.date, self.finished or "", self.run_key)


class PublishIndex(BaseModel):
    """The whole ``index.json``."""

    schema_: Literal["genbench.index/1"] = Field(default=INDEX_SCHEMA, alias="schema")
    updated: str | None = None
    runs: list[IndexEntry] = Field(default_factory=list)

    model_config = ConfigDict(populate_by_name=True)
