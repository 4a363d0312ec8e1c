"""Publish a nightly run from Airflow: settle its status, render the report, upload via the S3Hook."""

from __future__ import annotations

import logging
from pathlib import Path

from genbench_tasks.artifacts.io import read_optional, write_model, write_text
from genbench_tasks.artifacts.layout import PUBLISH_RECORD, RunLayout
from genbench_tasks.artifacts.run import PublishRecord, RunManifest, RunStatus
from genbench_tasks.pipeline import settings
from genbench_tasks.pipeline.nightly import RunPlan, mark_finished

log = logging.getLogger(__name__)

RESULT_NAME = PUBLISH_RECORD


def run_status(rundir: str | Path) -> RunStatus:
    """success | failed-validation | partial (some cells missing) | failed (no summary)."""
    layout = RunLayout(Path(rundir))
    manifest = read_optional(layout.manifest, RunManifest)
    if manifest is not None and manifest.validation == "failed":
        return "failed-validation"
    if not layout.summary.is_file():
        return "failed"
    return "partial" if manifest is not None and manifest.missing_cells else "success"


def render_data_docs(plan: RunPlan) -> None:
    """GX data docs for the run's data, rendered here, off the critical path (the validate task gates on
    the checks alone). Best effort: the report links them only when they exist."""
    if (plan.layout.validation_html / "index.html").is_file() or not plan.data_dir.is_dir():
        return
    from genbench_tasks.errors import GenbenchError
    from genbench_tasks.validation import validate_dataset_dir

    try:
        validate_dataset_dir(
            plan.data_dir,
            profile=plan.load_profile(),
            report_dir=plan.layout.validation_dir,
            build_html=True,
        )
    except (GenbenchError, OSError) as exc:
        log.warning("data docs not rendered: %s", exc)


def publish_from_airflow(plan: RunPlan) -> dict:
    from airflow.sdk import Variable

    from genbench_tasks.publish.s3 import publish_run
    from genbench_tasks.report import RunPages
    from genbench_tasks.s3_client import S3Store

    status = run_status(plan.rundir)
    mark_finished(plan, status)
    render_data_docs(plan)
    pages = RunPages.load(plan.rundir)  # rendered once: the local copy is the published report
    local_report = plan.layout.report
    write_text(local_report, pages.run_report())
    result = publish_run(
        plan.rundir,
        Variable.get(settings.VAR_REPORT_URI),
        pages,
        store=S3Store.from_airflow(settings.CONN_S3),
    )
    record = PublishRecord(**result.model_dump(), status=status, local_report=str(local_report))
    write_model(plan.layout.publish_record, record)
    log.info("published %s (%s): %s", plan.run_name, status, result.report_uri)
    return {"report_uri": result.report_uri, "report_url": result.report_url, "status": status}
