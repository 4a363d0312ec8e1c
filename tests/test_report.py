"""HTML reports: self-contained, escaped, well-formed, tolerant of partial runs; and, end to end, loaded by
headless Chromium from the (moto) S3 endpoint through presigned URLs."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from genbench_tasks.artifacts.comparison import ComparisonFile
from genbench_tasks.artifacts.evaluation import EvalManifest, EvalMetrics
from genbench_tasks.artifacts.io import read_model, write_model, write_text
from genbench_tasks.artifacts.layout import RunLayout
from genbench_tasks.artifacts.training import TrainManifest
from genbench_tasks.artifacts.validation import (
    CrossCheckResult,
    DatasetResult,
    FailedExpectation,
    ValidationReport,
)
from genbench_tasks.report import index_entry, load_run, render_history, render_run_report
from genbench_tasks.report.data import comparison_rows
from tests.fixtures.rundir import NASTY, make_rundir, run_manifest

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SVG_NS = "http://www.w3.org/2000/svg"


class _Balance(HTMLParser):
    """Fails on unbalanced or misnested non-void tags."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (
            f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        )
        self.stack.pop()


def _check_page(html: str) -> dict[str, int]:
    parser = _Balance()
    parser.feed(html)
    parser.close()
    assert not parser.stack, f"unclosed: {parser.stack}"
    # self-contained: no scripts, no external stylesheets/images/fonts, nothing fetched over the network
    assert "<script" not in html.lower() and "<link" not in html.lower() and " src=" not in html
    assert not [u for u in re.findall(r"https?://[^\s\"'<>]+", html) if u != SVG_NS]
    assert "<style>" in html
    # every chart is a standalone, valid SVG document with drawn paths
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    for svg in svgs:
        ET.fromstring(svg)
    return {**parser.tags, "svg_docs": len(svgs)}


def test_run_report_is_self_contained_and_complete(tmp_path):
    rd = make_rundir(tmp_path / "run")
    html = render_run_report(rd)
    tags = _check_page(html)

    # escaping: the fixture plants markup in warnings and samples
    assert NASTY not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    # the study's tables per family, with CIs, the gap, and the regression table with colour-coded verdicts
    for family in ("reasoning", "rewriting", "code_generation", "humaneval"):
        assert f'id="family-{family}"' in html
    for header in ("Success Rate", "BLEU-4", "Consistency", "Reward Mean", "Success Rate Std", "Reward Std"):
        assert f">{header}</th>" in html
    assert html.count('<table class="t1">') == 4 and html.count('<table class="t2">') == 4
    assert re.search(r"0\.\d{3} ± 0\.\d{3}<span class=\"ci\">\[0\.\d{3}, 0\.\d{3}\] n=3</span>", html)
    assert '<table class="gap">' in html and "in-domain" in html and "held-out" in html
    assert '<table class="regressions">' in html
    for verdict in ("regression", "improvement", "no-change", "insufficient-data"):
        assert f'class="badge v-{verdict}"' in html and f'<tr class="row-{verdict}">' in html
    assert "0.9.1 vs 0.8.0" in html and "item-level data missing" in html
    # charts: gap bars + one reward-curve chart per trained version, with one line per seed
    assert tags["svg_docs"] == 3
    assert html.count('<path class="series" d="M') == 6 and html.count("<rect") > 6
    # validation status + GX docs link, sample links relative to the run root
    assert 'class="badge s-passed"' in html and 'href="validation/html/index.html"' in html
    assert 'href="validation/validation_report.json"' in html
    for href in ("eval/sft/seed=0/samples.reasoning.jsonl", "eval/0.9.1/seed=2/samples.humaneval.jsonl"):
        assert f'href="{href}"' in html
    assert 'href="../../index.html"' in html and 'href="published.json"' in html
    # deterministic: the same run renders byte-identically (re-publishing is a no-op)
    assert render_run_report(rd) == html
    assert '<base href="../runs/x/">' in render_run_report(rd, base_href="../runs/x/")


def test_partial_run_still_renders(tmp_path):
    layout = RunLayout(tmp_path / "failed")
    rd = layout.root
    manifest = run_manifest(
        run_id="r<1>", date="2026-11-21", status="failed", missing_cells=["train:0.9.1:seed=0"]
    )
    write_model(layout.manifest, manifest)
    failed = FailedExpectation(
        expectation="expect_column_values_to_not_be_null", column="prompt", details="3 nulls"
    )
    ValidationReport(
        success=False,
        data_dir=layout.data_dir,
        datasets=[
            DatasetResult(
                name="reasoning/train",
                path="rl/reasoning/train.parquet",
                family="reasoning",
                split="train",
                format="rl",
                rows=8,
                success=False,
                failed_expectations=[failed],
            )
        ],
        cross_checks=[
            CrossCheckResult(name="heldout_prompt_leak", success=False, details="2 shared prompts")
        ],
        report_path=layout.validation_report,
    ).write()
    write_text(layout.summary, "{not json")  # an invalid file is a warning on the page, not a crash
    curve = layout.train_cell("0.9.1", 0).train_metrics
    curve.parent.mkdir(parents=True)
    # verl's own key names are TrainStep aliases; a killed writer's torn last line is dropped
    lines = [json.dumps({"training/global_step": i, "critic/score/mean": 0.1 * i}) for i in range(1, 6)]
    curve.write_text("\n".join(lines) + '\n{"training/global_step": 6, "crit')
    broken = layout.train_cell("0.9.1", 1).train_metrics
    broken.parent.mkdir(parents=True)
    broken.write_text("\n".join([lines[0], "not json", lines[1]]) + "\n")  # not torn: invalid, a warning

    run = load_run(rd)
    assert run.run_key == "2026-11-21_r-1" and run.curves == {
        "0.9.1": {"0": [(float(i), 0.1 * i) for i in range(1, 6)]}
    }
    assert any("seed=1/metrics.jsonl:2: not a valid TrainStep" in w for w in run.read_warnings)
    html = render_run_report(run)
    _check_page(html)
    assert 'class="badge s-failed"' in html and "no summary.json" in html and "train:0.9.1:seed=0" in html
    assert "expect_column_values_to_not_be_null [prompt]: 3 nulls" in html and "2 shared prompts" in html
    assert "r&lt;1&gt;" in html and "summary.json: not a valid StudySummary" in html
    entry = index_entry(run)
    assert entry.status == "failed" and entry.validation == "failed" and entry.summary is None


def test_history_page(tmp_path):
    entries = []
    for i, date in enumerate(("2026-11-18", "2026-11-19", "2026-11-20")):
        rd = make_rundir(
            tmp_path / date, run_id=f"nightly-{i}", date=date, shift=0.03 * i, rng_seed=i, seeds=(0, 1)
        )
        entries.append(index_entry(load_run(rd)))
    # index.json dicts (as read from the published index) are accepted as well as IndexEntry objects
    extra = entries[2].model_copy(
        update={"run_id": "extra<run>", "date": "2026-11-21", "run_key": "2026-11-21_x"}
    )
    html = render_history(
        [entries[0], entries[1].model_dump(mode="json"), entries[2], extra.model_dump(mode="json")]
    )
    tags = _check_page(html)
    # trend charts: held-out success overall + (success, reward) for each held-out family, bands included
    assert tags["svg_docs"] == 5
    assert "code_generation: Success Rate (mean ± seed std)" in html and "humaneval: Reward Mean" in html
    assert html.count('<path class="band"') == 4 * 2  # 4 family charts x 2 versions (sft has one seed)
    assert html.count('<table class="runs">') == 1
    assert (
        html.index("2026-11-21")
        < html.index("extra&lt;run&gt;")
        < html.index("nightly-2")
        < html.index("nightly-0")
    )
    assert 'href="runs/2026-11-19_nightly-1/report.html"' in html and 'href="latest/report.html"' in html
    assert "<h1>genbench nightly history</h1>" in render_history(
        []
    ) and "No runs published yet" in render_history([])


def test_comparison_rows_and_shown_diff(tmp_path):
    """The report reads comparison.json with its model; the shown difference is the paired one when the
    verdict rests on it."""
    rd = make_rundir(tmp_path / "run", seeds=(0, 1))
    comparison = read_model(RunLayout(rd).comparison, ComparisonFile)
    rows, warnings = comparison_rows(comparison)
    assert {(r.candidate, r.baseline) for r in rows} == {("0.9.1", "0.8.0")}
    assert warnings == ["0.9.1: item-level data missing for humaneval; Welch only"]
    paired = rows[0].model_copy(
        update={"paired_test": "mcnemar", "diff_paired": -0.05, "diff_ci_paired": (-0.08, -0.01)}
    )
    assert paired.shown_diff() == (-0.05, (-0.08, -0.01)) and rows[0].shown_diff() == (
        rows[0].diff,
        rows[0].diff_ci,
    )


def test_fixture_reads_back_with_the_pipeline_models(tmp_path):
    """Every file of the synthetic RUNDIR reads back with its model (the fixture is built with them)."""
    rd = make_rundir(tmp_path / "run", seeds=(0, 1))
    run = load_run(rd)
    assert run.study is not None and run.read_warnings == [] and run.validation.status == "passed"
    assert len(run.datasets) == 8 and run.manifest.status == "success"
    layout = RunLayout(rd)
    assert sorted(layout.eval_cells()) == ["0.8.0", "0.9.1", "sft"]
    for seeds in layout.eval_cells().values():
        for cell in seeds.values():
            read_model(cell.metrics, EvalMetrics)
            read_model(cell.manifest, EvalManifest)
    for seeds in layout.train_cells().values():
        for cell in seeds.values():
            read_model(cell.manifest, TrainManifest)


@pytest.mark.integration
def test_reports_render_in_chromium_from_s3(tmp_path, s3_server, chromium):
    """Publish three nightlies, then load report.html and index.html from the S3 endpoint in Chromium."""
    from genbench_tasks.publish import publish_run
    from genbench_tasks.report import RunPages
    from genbench_tasks.s3_client import S3Store, s3_client

    bucket = f"gb-{uuid.uuid4().hex[:12]}"
    s3_client(s3_server).create_bucket(Bucket=bucket)
    store = S3Store.from_boto3(s3_server)
    results = []
    for i, date in enumerate(("2026-11-18", "2026-11-19", "2026-11-20")):
        rd = make_rundir(
            tmp_path / date, run_id=f"nightly-{i}", date=date, shift=0.03 * i, rng_seed=i, seeds=(0, 1)
        )
        results.append(
            publish_run(rd, f"s3://{bucket}/genbench", RunPages.load(rd), store=store, presign_expires=900)
        )

    report_dom = chromium.dump_dom(results[-1].report_url)
    assert "genbench nightly: 2026-11-20_nightly-2" in report_dom
    for needle in (
        '<table class="regressions">',
        '<table class="t1">',
        '<table class="gap">',
        "Study tables per family",
    ):
        assert needle in report_dom, needle
    assert report_dom.count("<svg") == 3 and '<path class="series" d="M' in report_dom
    assert 'class="badge v-regression"' in report_dom

    history_url = store.presign(results[-1].history_uri, 900)
    history_dom = chromium.dump_dom(history_url)
    assert history_dom.count("<svg") == 5 and '<path class="band"' in history_dom
    assert '<path class="series" d="M' in history_dom and "nightly-0" in history_dom
    assert history_dom.count('href="runs/') == 3

    # a screenshot renders the page for real (layout, SVG painting); the report's only when asked for
    keep = os.environ.get("GENBENCH_KEEP_SCREENSHOTS")  # a directory: look at the pages by eye
    shots = {"history": chromium.screenshot(history_url, tmp_path / "history.png", size=(1280, 1400))}
    if keep:
        shots["report"] = chromium.screenshot(
            results[-1].report_url, tmp_path / "report.png", size=(1280, 2600)
        )
    for path in shots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name, path in shots.items():
            shutil.copy(path, Path(keep) / f"{name}.png")
