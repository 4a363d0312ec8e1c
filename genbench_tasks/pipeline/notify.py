"""Run notifications: a log line always, a JSON POST to an optional webhook (Airflow variable)."""

from __future__ import annotations

import json
import logging
import urllib.request

log = logging.getLogger(__name__)


def _webhook_url() -> str | None:
    try:
        from airflow.sdk import Variable

        from genbench_tasks.pipeline.settings import VAR_WEBHOOK_URL

        return Variable.get(VAR_WEBHOOK_URL, default=None) or None
    except Exception:  # outside Airflow, or no variable
        return None


def post_json(url: str, payload: dict, timeout_s: float = 10.0) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (operator-configured URL)
        return response.status


def _send(payload: dict) -> None:
    log.info("genbench: %s", json.dumps(payload, default=str))
    url = _webhook_url()
    if url:
        try:
            post_json(url, payload)
        except Exception as exc:  # a notification must never fail the run
            log.warning("webhook %s failed: %s", url, exc)


def notify_run(plan, published: dict | None) -> dict:
    """Summarise a finished run: status, verdict counts, report URL."""
    from pathlib import Path

    from genbench_tasks.artifacts.io import read_optional
    from genbench_tasks.artifacts.layout import RunLayout
    from genbench_tasks.artifacts.run import RunManifest

    manifest = read_optional(RunLayout(Path(plan.rundir)).manifest, RunManifest)
    payload = {
        "event": "genbench.run.finished",
        "run": plan.run_name,
        "status": manifest.status if manifest else None,
        "validation": manifest.validation if manifest else None,
        "verdicts": (manifest.verdicts or {}) if manifest else {},
        "missing_cells": manifest.missing_cells if manifest else [],
        "report_url": (published or {}).get("report_url"),
    }
    _send(payload)
    return payload


def notify_dag_failure(context) -> None:
    """DAG-level on_failure_callback."""
    dag_run = context.get("dag_run")
    _send(
        {
            "event": "genbench.run.failed",
            "run_id": getattr(dag_run, "run_id", None),
            "reason": str(context.get("reason") or context.get("exception") or "a task failed"),
        }
    )
