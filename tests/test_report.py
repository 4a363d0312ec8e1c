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

from genbench_tasks.report import index_entry, load_run, render_history, render_run_report
from genbench_tasks.report.data import normalize_comparison
from tests.fixtures.rundir import NASTY, make_rundir

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
    rd = tmp_path / "failed"
    (rd / "validation").mkdir(parents=True)
    (rd / "manifest.json").write_text(
        json.dumps(
            {
                "run_id": "r<1>",
                "date": "2026-11-21",
                "status": "failed",
                "missing_cells": ["train:0.9.1:seed=0"],
            }
        )
    )
    report = {
        "success": False,
        "datasets": [
            {
                "name": "reasoning/train",
                "failed_expectations": [
                    {
                        "expectation": "expect_column_values_to_not_be_null",
                        "column": "prompt",
                        "details": "3 nulls",
                    }
                ],
            }
        ],
        "cross_checks": [{"name": "heldout_prompt_leak", "success": False, "details": "2 shared prompts"}],
    }
    (rd / "validation" / "validation_report.json").write_text(json.dumps(report))
    curve = rd / "train" / "0.9.1" / "seed=0" / "metrics.jsonl"
    curve.parent.mkdir(parents=True)
    lines = [json.dumps({"training/global_step": i, "critic/score/mean": 0.1 * i}) for i in range(1, 6)]
    curve.write_text("\n".join([*lines[:2], "not json", "[]", *lines[2:]]) + "\n")

    run = load_run(rd)
    assert run.run_key == "2026-11-21_r-1" and run.curves == {
        "0.9.1": {"0": [(float(i), 0.1 * i) for i in range(1, 6)]}
    }
    html = render_run_report(run)
    _check_page(html)
    assert 'class="badge s-failed"' in html and "no summary.json" in html and "train:0.9.1:seed=0" in html
    assert "expect_column_values_to_not_be_null [prompt]: 3 nulls" in html and "2 shared prompts" in html
    assert "r&lt;1&gt;" in html
    entry = index_entry(run)
    assert entry.status == "failed" and entry.validation == "failed" and entry.summary is None


def test_history_page(tmp_path):
    entries = []
    for i, date in enumerate(("2026-11-18", "2026-11-19", "2026-11-20")):
        rd = make_rundir(
            tmp_path / date, run_id=f"nightly-{i}", date=date, shift=0.03 * i, rng_seed=i, seeds=(0, 1)
        )
        entries.append(index_entry(load_run(rd)))
    # index.json dicts and summary.json-like dicts are accepted as well as IndexEntry objects
    raw_summary = json.loads((tmp_path / "2026-11-20" / "summary.json").read_text())
    raw_summary.update(run_id="extra<run>", date="2026-11-21")
    html = render_history([entries[0], entries[1].model_dump(mode="json"), entries[2], raw_summary])
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


def test_comparison_shapes():
    row = {"family": "f", "metric": "success_rate", "verdict": "regression", "diff_ci": [-0.1, -0.02]}
    rows, _ = normalize_comparison([{**row, "candidate": "0.9.1", "baseline": "0.8.0"}])
    assert (rows[0].candidate, rows[0].diff_ci) == ("0.9.1", (-0.1, -0.02))
    rows, _ = normalize_comparison({"baseline_version": "0.8.0", "0.9.1": [row]})
    assert (rows[0].candidate, rows[0].baseline) == ("0.9.1", "0.8.0")
    file_shape = {
        "format_version": 1,
        "comparisons": [
            {
                "candidate": {"rundir": "/r", "label": "0.9.1", "seeds": [0]},
                "baseline": {"rundir": "/r", "label": "0.8.0", "seeds": [0]},
                "rows": [
                    {**row, "paired_test": "mcnemar", "diff_paired": -0.05, "diff_ci_paired": [-0.08, -0.01]}
                ],
                "warnings": ["w1"],
            }
        ],
    }
    rows, warnings = normalize_comparison(file_shape)
    assert (rows[0].candidate, rows[0].baseline, warnings) == ("0.9.1", "0.8.0", ["w1"])
    assert rows[0].shown_diff() == (-0.05, (-0.08, -0.01))
    assert normalize_comparison({"rows": [{"family": "x"}]}) == ([], [])


def test_fixture_matches_the_pipeline_schemas(tmp_path):
    """The synthetic RUNDIR's summary/comparison validate against the real models (keeps tests honest)."""
    pytest.importorskip("scipy")
    from genbench_tasks.evaluation.aggregate import StudySummary
    from genbench_tasks.evaluation.compare import ComparisonFile

    rd = make_rundir(tmp_path / "run", seeds=(0, 1))
    StudySummary.model_validate_json((rd / "summary.json").read_text())
    ComparisonFile.model_validate_json((rd / "comparison.json").read_text())


@pytest.mark.integration
def test_reports_render_in_chromium_from_s3(tmp_path, s3_server, chromium):
    """Publish three nightlies, then load report.html and index.html from the S3 endpoint in Chromium."""
    from genbench_tasks.publish import S3Store, publish_run
    from genbench_tasks.report import RunPages
    from genbench_tasks.s3_client import s3_client

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
