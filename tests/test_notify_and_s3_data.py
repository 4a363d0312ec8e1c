"""Run notifications (webhook POST) and user data read from a real S3 endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from genbench_tasks.artifacts.io import write_model
from genbench_tasks.artifacts.layout import RunLayout
from genbench_tasks.data.sources import CustomDataset, load_custom
from genbench_tasks.errors import GenbenchError
from genbench_tasks.pipeline import notify
from genbench_tasks.s3_client import s3_client
from tests.fixtures.rundir import run_manifest


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"type": self.headers["Content-Type"], "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_notify_run_posts_summary_to_webhook(tmp_path, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("AIRFLOW_VAR_GENBENCH_WEBHOOK_URL", url)
    manifest = run_manifest(
        status="partial", validation="passed", verdicts={"regression": 1}, missing_cells=["x"]
    )
    write_model(RunLayout(tmp_path).manifest, manifest)
    plan = SimpleNamespace(rundir=str(tmp_path), run_name="2026-11-26_r1")
    payload = notify.notify_run(plan, {"report_url": "http://s3/report.html"})
    assert received == [{"type": "application/json", "json": payload}]
    assert payload["status"] == "partial" and payload["verdicts"] == {"regression": 1}
    assert payload["report_url"] == "http://s3/report.html"


def test_notify_never_fails_the_run_when_the_webhook_is_down(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_GENBENCH_WEBHOOK_URL", "http://127.0.0.1:9/unreachable")
    plan = SimpleNamespace(rundir=str(tmp_path), run_name="r")
    assert notify.notify_run(plan, None)["status"] is None


def test_custom_dataset_from_s3(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    s3 = s3_client(s3_server)
    s3.create_bucket(Bucket="user-data")
    rows = [
        {"q": f"Rewrite the text. Rule: Convert the text to upper case.\nText: cat {i}", "a": f"CAT {i}"}
        for i in range(3)
    ]
    s3.put_object(Bucket="user-data", Key="sets/mine.jsonl", Body="".join(json.dumps(r) + "\n" for r in rows))
    spec = CustomDataset(
        name="mine",
        family="rewriting",
        uri="s3://user-data/sets/mine.jsonl",
        field_map={"prompt": "q", "reference": "a", "ground_truth": "a"},
    )
    examples = load_custom(spec)
    assert [e.reference for e in examples] == ["CAT 0", "CAT 1", "CAT 2"]
    with pytest.raises(GenbenchError, match="cannot read s3://user-data/nope.jsonl"):
        load_custom(spec.model_copy(update={"uri": "s3://user-data/nope.jsonl"}))
