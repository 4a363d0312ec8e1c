"""Airflow plugin (entry point ``airflow.plugins``): registers genbench's timetable with the scheduler."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from genbench_tasks.pipeline.schedule import NightlySlotTimetable


class GenbenchPlugin(AirflowPlugin):
    name = "genbench"
    timetables = [NightlySlotTimetable]
