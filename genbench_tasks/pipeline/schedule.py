"""The nightly's schedule: a cron timetable that runs upcoming slots only.

Airflow's ``CronTriggerTimetable`` with ``catchup=False`` starts the latest *missed* slot as soon as a DAG is
unpaused (e.g. a full 2-version x 5-seed nightly the moment a user unpauses it to try a small manual run).
:class:`NightlySlotTimetable` skips a slot that is more than ``grace`` old when it is scheduled: unpausing
schedules the next slot, and a slot the scheduler reaches late (restart, busy) still runs within ``grace``.
Registered with Airflow by :mod:`genbench_tasks.pipeline.airflow_plugin` (entry point ``airflow.plugins``).
"""

from __future__ import annotations

import datetime

from airflow._shared.timezones.timezone import coerce_datetime, parse_timezone, utcnow
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable

DEFAULT_GRACE = datetime.timedelta(hours=1)


class NightlySlotTimetable(CronTriggerTimetable):
    """Cron slots, but never one that passed more than ``grace`` ago (no surprise runs on unpause)."""

    def __init__(
        self, cron: str, *, timezone: str = "UTC", grace: datetime.timedelta = DEFAULT_GRACE
    ) -> None:
        super().__init__(cron, timezone=timezone, run_immediately=False)
        self._grace = grace
        self.description = f"{self.description} (upcoming slots only; {grace} grace)"

    def serialize(self) -> dict:
        return {**super().serialize(), "grace_s": self._grace.total_seconds()}

    @classmethod
    def deserialize(cls, data: dict) -> NightlySlotTimetable:
        return cls(
            data["expression"],
            timezone=parse_timezone(data["timezone"]),
            grace=datetime.timedelta(seconds=data.get("grace_s", DEFAULT_GRACE.total_seconds())),
        )

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        info = super().next_dagrun_info(
            last_automated_data_interval=last_automated_data_interval, restriction=restriction
        )
        if info is None or restriction.catchup:
            return info
        now = coerce_datetime(utcnow())
        if info.run_after >= now - self._grace:
            return info
        upcoming = self._align_to_next(now)
        if restriction.latest is not None and restriction.latest < upcoming:
            return None
        return DagRunInfo.interval(coerce_datetime(upcoming - self._interval), upcoming)
