"""End to end over several nights: the nightly's own aggregate -> detect_regressions -> publish path on the
embedded default's layout (a work dir, moto's S3 server over HTTP), with a planted change.

Each night is a real run directory planned by ``plan_run``; its evaluation cells hold samples scored by the
real scorers (the code family in the sandbox) and metrics computed by the real metric code. A cell is
computed once and reused on later nights, as the cell cache does (identical seeds and code give identical
numbers). From night ``BROKEN_FROM`` on, version 0.9.1's "training" is broken (most answers wrong): its
cells change and the published report must name that night.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

from genbench_tasks.artifacts.evaluation import EvalMetrics, FamilyMetrics, SampleLine
from genbench_tasks.artifacts.io import read_model, write_jsonl, write_model
from genbench_tasks.artifacts.layout import VERDICTS, CellDir, PublishedLayout
from genbench_tasks.artifacts.verdicts import Detection, HistoryVerdict
from genbench_tasks.cli import main
from genbench_tasks.evaluation.aggregate import aggregate
from genbench_tasks.families import get_family
from genbench_tasks.pipeline.nightly import NightlyParams, detect_regressions, mark_finished, plan_run
from genbench_tasks.pipeline.publishing import run_status
from genbench_tasks.publish.s3 import publish_run
from genbench_tasks.report import RunPages
from genbench_tasks.rewards import score_many
from genbench_tasks.s3_client import S3Store, s3_client
from genbench_tasks.scoring.metrics import compute_run_metrics

pytestmark = pytest.mark.integration

FAMILIES = ["reasoning", "code_generation"]
VERSIONS = ["0.8.0", "0.9.1"]
SEEDS, PROMPTS, SAMPLES, NIGHTS, BROKEN_FROM = 3, 6, 2, 5, 3
CORRECT = {"0.8.0": 70, "0.9.1": 75, "broken": 20}  # percent of answers that are the reference


def _correct(label: str, seed: int, prompt_id: str, k: int) -> bool:
    h = hashlib.sha256(f"{label}:{seed}:{prompt_id}:{k}".encode()).digest()
    return int.from_bytes(h[:4], "little") % 100 < CORRECT[label]


def _evaluate(cell: Path, label: str, seed: int) -> Path:
    """One evaluation cell: answers from a deterministic stand-in model, scored and summarized for real."""
    cell.mkdir(parents=True)
    families = {}
    for name in FAMILIES:
        family = get_family(name)
        examples = family.build(1234, PROMPTS)
        answers = [
            (ex, k, ex.reference if _correct(label, seed, ex.id, k) else "I do not know.")
            for ex in examples
            for k in range(SAMPLES)
        ]
        scores = score_many([(family.data_source, text, ex.ground_truth, None) for ex, _, text in answers])
        lines = [
            SampleLine(
                prompt_id=ex.id,
                sample_index=k,
                text=text,
                reward=s.reward,
                passed=s.passed,
                reason=s.reason,
                reference=ex.reference,
            )
            for (ex, k, text), s in zip(answers, scores, strict=True)
        ]
        write_jsonl(CellDir(cell).samples(name), lines)
        metrics = compute_run_metrics(
            [x.model_dump() for x in lines], metrics=set(family.metrics) - {"consistency"}
        )
        families[name] = FamilyMetrics(
            family=name,
            role=family.role,
            metrics=metrics,
            flat=metrics.flat(),
            samples_file=CellDir(cell).samples(name).name,
        )
    version = "0.9.1" if label == "broken" else label
    mf = EvalMetrics(model_label=version, seed=seed, families=families)
    write_model(CellDir(cell).metrics, mf)
    return cell


def _night(work: Path, cells: Path, i: int, day: str, bucket: str, store: S3Store) -> str:
    plan = plan_run(
        NightlyParams(verl_versions=VERSIONS, seeds=SEEDS, families=FAMILIES, baseline_version="0.8.0"),
        work,
        f"nightly-{i}",
        day,
    )
    for version in VERSIONS:
        label = "broken" if version == "0.9.1" and i >= BROKEN_FROM else version
        for seed in range(SEEDS):
            cell = cells / label / str(seed)
            if not cell.is_dir():  # the cell cache: computed once, reused on later nights
                _evaluate(cell, label, seed)
            shutil.copytree(cell, plan.layout.eval_cell(version, seed).path)
    aggregate(plan.rundir)
    detect_regressions(plan)
    mark_finished(plan, run_status(plan.rundir))
    pages = RunPages.load(plan.rundir)
    return publish_run(
        plan.rundir, f"s3://{bucket}/nightly", pages, store=store, presign_expires=None
    ).run_key


def test_planted_change_is_alerted_on_its_night_in_the_published_report(tmp_path, s3_server, capsys):
    s3 = s3_client(s3_server)
    bucket = f"gb-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    store = S3Store.from_boto3(s3_server)
    days = [(date(2026, 11, 10) + timedelta(days=i)).isoformat() for i in range(NIGHTS)]
    keys = [
        _night(tmp_path / "work", tmp_path / "cells", i, day, bucket, store) for i, day in enumerate(days)
    ]

    def get(key: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=f"nightly/{key}")["Body"].read()

    # the history is published next to the reports, one file per run
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="nightly/history/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == sorted(f"{k}.jsonl" for k in keys)

    def verdict(run_key: str, version: str, family: str, metric: str) -> HistoryVerdict:
        doc = Detection.model_validate_json(get(PublishedLayout.run_file(run_key, VERDICTS)))
        return next(v for v in doc.verdicts if (v.version, v.family, v.metric) == (version, family, metric))

    # before the change: identical nights, nothing to report
    before = verdict(keys[BROKEN_FROM - 1], "0.9.1", "code_generation", "success_rate")
    assert before.verdict == "no change" and before.deterministic and before.nights == BROKEN_FROM
    # after: the alert names the night of the change, the effect and the runs on each side
    for key in keys[BROKEN_FROM:]:
        v = verdict(key, "0.9.1", "code_generation", "success_rate")
        assert v.verdict == "regression" and v.change_night == days[BROKEN_FROM]
        assert v.effect.estimate < -0.2 and v.effect.high < 0
        assert v.before.runs[-1] == keys[BROKEN_FROM - 1] and v.after.runs[0] == keys[BROKEN_FROM]
    assert verdict(keys[-1], "0.8.0", "code_generation", "success_rate").verdict == "no change"
    # the published report leads with the verdicts and marks the change night on the history chart
    report = get(f"runs/{keys[-1]}/report.html").decode()
    assert report.index('id="verdicts"') < report.index('id="regressions"') < report.index('id="gap"')
    assert f"change {days[BROKEN_FROM]}" in report and 'class="mark"' in report
    body = report[report.index('<table class="verdicts">') :]
    body = body[body.index("<tbody>") :]
    first = body[: body.index("</tr>")]
    assert "0.9.1" in first and "v-regression" in first and days[BROKEN_FROM] in first
    index = json.loads(get("index.json"))
    newest = next(r for r in index["runs"] if r["run_key"] == keys[-1])
    assert any("0.9.1 since " + days[BROKEN_FROM] in r for r in newest["regressions"])
    # genbench detect on the published history finds the same night
    out = tmp_path / "verdicts.json"
    uri = f"s3://{bucket}/nightly"
    assert main(["detect", "--history", uri, "--endpoint-url", s3_server, "--out", str(out)]) == 0
    doc = read_model(out, Detection)
    by = {(v.version, v.family, v.metric): v for v in doc.verdicts}
    assert by[("0.9.1", "code_generation", "success_rate")].change_night == days[BROKEN_FROM]
    assert {m for (_, _, m) in by} == {"success_rate", "reward_mean"}  # the families' primary metrics
    capsys.readouterr()
