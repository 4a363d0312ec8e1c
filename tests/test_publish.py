"""Publishing a run directory to a real (moto) S3 server over HTTP: layout, checksums, content types,
privacy, ordering under failure, idempotency, presigned URLs, the Airflow S3Hook path and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from genbench_tasks.errors import GenbenchError
from genbench_tasks.publish.s3 import PublishError, publish_run
from genbench_tasks.report import RunPages
from genbench_tasks.s3_client import (
    S3Store,
    S3Uri,
    TransferSettings,
    content_type_for,
    file_digests,
    s3_client,
)
from tests.fixtures.rundir import make_rundir

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
LIGHT = {"seeds": (0,)}  # ~45 files instead of ~85: enough for ordering/idempotency/transport tests
TINY = {"seeds": (0,), "versions": ("0.9.1",)}
SMALL_MULTIPART = TransferSettings(multipart_threshold=1 * MiB, multipart_chunksize=5 * MiB)


def _publish(rundir, uri, **kwargs):
    """publish_run with the run's pages rendered by the report layer (as the CLI and the DAG do)."""
    return publish_run(rundir, uri, RunPages.load(rundir), **kwargs)


PUBLIC_GRANTEES = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)


@pytest.fixture()
def s3(s3_server):
    return s3_client(s3_server, max_attempts=1)


@pytest.fixture()
def bucket(s3) -> str:
    name = f"gb-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture()
def store(s3_server) -> S3Store:
    return S3Store.from_boto3(s3_server, transfer=SMALL_MULTIPART)


def _get(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _get_json(s3, bucket: str, key: str):
    return json.loads(_get(s3, bucket, key))


def _keys(s3, bucket: str, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    return keys


def _grants(s3, bucket: str, key: str) -> list[dict]:
    """Object ACL grants. moto 5 stores no ACL for multipart uploads made without an ACL header (real S3:
    the default private ACL) and then fails GetObjectAcl with a 500; read its in-process backend instead."""
    from botocore.exceptions import ClientError

    try:
        return s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    except ClientError:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        obj = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys[key]
        assert obj.acl is None, f"{key}: unexpected ACL {obj.acl}"
        return [{"Permission": "FULL_CONTROL", "Grantee": {"Type": "CanonicalUser"}}]  # S3's default ACL


def _local_files(rd: Path) -> set[str]:
    return {p.relative_to(rd).as_posix() for p in rd.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------ unit bits
def test_uri_and_content_types():
    assert S3Uri.parse("s3://my-bucket/a/b/") == S3Uri(bucket="my-bucket", key="a/b")
    assert str(S3Uri.parse("s3://my-bucket").join("runs", "x")) == "s3://my-bucket/runs/x"
    for bad in (
        "http://x/y",
        "s3://",
        "s3://B_ad/x",
        "s3://ok-bucket/a//b",
        "s3://ok-bucket/../x",
        "bucket/key",
    ):
        with pytest.raises(GenbenchError, match="bad S3 URI"):
            S3Uri.parse(bad)
    assert content_type_for("report.html") == "text/html; charset=utf-8"
    assert content_type_for("summary.json") == "application/json"
    assert content_type_for("eval/0.9.1/seed=0/samples.reasoning.jsonl") == "application/x-ndjson"
    assert content_type_for("data/rl/x/test.parquet") == "application/vnd.apache.parquet"
    assert content_type_for("a/logo.svg") == "image/svg+xml"
    assert content_type_for("a/style.CSS") == "text/css; charset=utf-8"
    assert content_type_for("checkpoint/model.safetensors") == "application/octet-stream"
    assert content_type_for("weird.unknownext") == "application/octet-stream"


def test_composite_checksum_matches_parts(tmp_path):
    data = os.urandom(3 * 1000 + 7)
    (tmp_path / "f").write_bytes(data)
    sha, single, n = file_digests(tmp_path / "f", part_size=None)
    assert sha == hashlib.sha256(data).hexdigest() and n == 1
    _, composite, n = file_digests(tmp_path / "f", part_size=1000)
    parts = [hashlib.sha256(data[i : i + 1000]).digest() for i in range(0, len(data), 1000)]
    import base64

    assert n == 4 and composite == base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode() + "-4"


# ------------------------------------------------------------------------------------------ publishing
def test_publish_layout_checksums_types_privacy(tmp_path, s3, bucket, store):
    rd = make_rundir(tmp_path / "run", big_file_bytes=6 * MiB + 123)
    result = _publish(rd, f"s3://{bucket}/nightly", store=store)

    run_prefix = "nightly/runs/2026-11-20_manual__nightly-1/"
    assert result.run_uri == f"s3://{bucket}/{run_prefix}"
    local = _local_files(rd)
    stored = {k[len(run_prefix) :] for k in _keys(s3, bucket, run_prefix)}
    assert stored == local | {"report.html", "published.json"}
    for rel in (
        "manifest.json",
        "summary.json",
        "comparison.json",
        "data/datasets.json",
        "validation/html/index.html",
        "train/0.8.0/seed=0/metrics.jsonl",
        "train/0.9.1/seed=2/checkpoint/model.safetensors",
        "eval/sft/seed=0/samples.humaneval.jsonl",
        "eval/0.9.1/seed=1/samples.code_generation.jsonl",
    ):
        assert rel in stored

    # every object's bytes hash to what published.json records (and to the local file)
    manifest = _get_json(s3, bucket, run_prefix + "published.json")
    assert manifest["schema"] == "genbench.published/1" and manifest["run_key"] == result.run_key
    recorded = {o["key"]: o for o in manifest["objects"]}
    assert set(recorded) == local | {"report.html"}
    for rel, obj in recorded.items():
        body = _get(s3, bucket, run_prefix + rel)
        assert hashlib.sha256(body).hexdigest() == obj["sha256"], rel
        assert obj["size"] == len(body) and obj["verified"] == "checksum"
        if rel != "report.html":
            assert obj["sha256"] == hashlib.sha256((rd / rel).read_bytes()).hexdigest()

    # the large checkpoint went multipart, and its composite checksum was verified
    big = recorded["train/0.8.0/seed=0/checkpoint/model-big.safetensors"]
    assert big["parts"] == 2 and big["checksum_sha256"]
    head = s3.head_object(
        Bucket=bucket, Key=run_prefix + "train/0.8.0/seed=0/checkpoint/model-big.safetensors"
    )
    assert head["ETag"].strip('"').endswith("-2")
    assert head["Metadata"]["sha256"] == big["sha256"]

    # content types
    expected_types = {
        "report.html": "text/html; charset=utf-8",
        "summary.json": "application/json",
        "eval/0.9.1/seed=0/samples.reasoning.jsonl": "application/x-ndjson",
        "data/rl/reasoning/train.parquet": "application/vnd.apache.parquet",
        "validation/html/static/images/logo.svg": "image/svg+xml",
        "validation/html/static/styles/data_docs.css": "text/css; charset=utf-8",
        "train/0.9.1/seed=0/checkpoint/model.safetensors": "application/octet-stream",
        "published.json": "application/json",
    }
    for rel, ctype in expected_types.items():
        assert s3.head_object(Bucket=bucket, Key=run_prefix + rel)["ContentType"] == ctype, rel

    # private: only the owner's FULL_CONTROL grant, nothing public, on every object
    for key in _keys(s3, bucket):
        grants = _grants(s3, bucket, key)
        assert [g["Permission"] for g in grants] == ["FULL_CONTROL"], key
        assert all(g["Grantee"].get("URI") not in PUBLIC_GRANTEES for g in grants), key

    # index.json, latest/, history page
    index = _get_json(s3, bucket, "nightly/index.json")
    assert [r["run_key"] for r in index["runs"]] == [result.run_key]
    entry = index["runs"][0]
    assert entry["status"] == "success" and entry["validation"] == "passed"
    assert entry["verdict_counts"] == {
        "regression": 3,
        "improvement": 3,
        "no change": 3,
        "insufficient data": 3,
    }
    assert entry["report"] == f"runs/{result.run_key}/report.html"
    assert entry["headline"]["humaneval"]["role"] == "heldout"
    assert entry["headline"]["humaneval"]["versions"]["0.9.1"]["success_rate"]["n"] == 3
    assert set(entry["gap"]) == {"sft", "0.8.0", "0.9.1"}
    pointer = _get_json(s3, bucket, "nightly/latest/run.json")
    assert pointer["run_key"] == result.run_key and pointer["report"] == entry["report"]
    latest_html = _get(s3, bucket, "nightly/latest/report.html").decode()
    assert f'<base href="../runs/{result.run_key}/">' in latest_html
    assert _get(s3, bucket, "nightly/latest/summary.json") == (rd / "summary.json").read_bytes()
    history = _get(s3, bucket, "nightly/index.html").decode()
    assert f'href="runs/{result.run_key}/report.html"' in history
    for key in ("nightly/index.json", "nightly/index.html", "nightly/latest/report.html"):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["CacheControl"].startswith("no-cache")


def test_failed_publish_leaves_index_and_latest_untouched(tmp_path, s3, bucket, store, monkeypatch):
    uri = f"s3://{bucket}/p"
    first = _publish(
        make_rundir(tmp_path / "a", run_id="night-a", date="2026-11-19", **LIGHT), uri, store=store
    )
    index_before = _get(s3, bucket, "p/index.json")
    latest_before = _get(s3, bucket, "p/latest/run.json")
    history_etag = s3.head_object(Bucket=bucket, Key="p/index.html")["ETag"]

    rd_b = make_rundir(tmp_path / "b", run_id="night-b", date="2026-11-20", rng_seed=5, **LIGHT)
    real_upload = S3Store.upload_file
    seen: list[str] = []

    def flaky(self, path, bucket_, key, **kw):
        if key.endswith("eval/0.9.1/seed=0/samples.humaneval.jsonl"):
            raise GenbenchError("simulated network failure")
        return real_upload(self, path, bucket_, key, **kw)

    monkeypatch.setattr(S3Store, "upload_file", flaky)
    with pytest.raises(PublishError, match="simulated network failure"):
        _publish(rd_b, uri, store=store, on_object=seen.append)
    assert seen, "some objects were uploaded before the failure"
    assert _get(s3, bucket, "p/index.json") == index_before
    assert _get(s3, bucket, "p/latest/run.json") == latest_before
    assert s3.head_object(Bucket=bucket, Key="p/index.html")["ETag"] == history_etag
    b_keys = _keys(s3, bucket, "p/runs/2026-11-20_night-b/")
    assert "p/runs/2026-11-20_night-b/published.json" not in b_keys
    assert "p/runs/2026-11-20_night-b/report.html" not in b_keys

    # the retry completes the run and only then moves index and latest
    monkeypatch.setattr(S3Store, "upload_file", real_upload)
    second = _publish(rd_b, uri, store=store)
    assert [r["run_key"] for r in _get_json(s3, bucket, "p/index.json")["runs"]] == [
        second.run_key,
        first.run_key,
    ]
    assert _get_json(s3, bucket, "p/latest/run.json")["run_key"] == second.run_key

    # publishing an older night afterwards adds it to the index but leaves latest/ on the newest
    older = _publish(
        make_rundir(tmp_path / "c", run_id="night-c", date="2026-11-18", **LIGHT), uri, store=store
    )
    assert older.latest_uri is None
    runs = [r["run_key"] for r in _get_json(s3, bucket, "p/index.json")["runs"]]
    assert runs == [second.run_key, first.run_key, older.run_key]
    assert _get_json(s3, bucket, "p/latest/run.json")["run_key"] == second.run_key


def test_republish_is_idempotent_and_prunes_stale_objects(tmp_path, s3, bucket, store):
    rd = make_rundir(tmp_path / "run", **LIGHT)
    uri = f"s3://{bucket}/r"
    (rd / "eval" / "0.9.1" / "seed=0" / "debug.txt").write_text("temporary\n")
    first = _publish(rd, uri, store=store)
    assert first.skipped == 0 and first.uploaded == first.objects - 1  # published.json is not counted
    prefix = f"r/runs/{first.run_key}/"
    etags = {k: s3.head_object(Bucket=bucket, Key=k)["ETag"] for k in _keys(s3, bucket, prefix)}

    (rd / "eval" / "0.9.1" / "seed=0" / "debug.txt").unlink()
    second = _publish(rd, uri, store=store)
    assert second.uploaded == 0 and second.deleted == 1
    assert prefix + "eval/0.9.1/seed=0/debug.txt" not in _keys(s3, bucket, prefix)
    for key, etag in etags.items():
        if not key.endswith(("published.json", "debug.txt")):
            assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == etag, key
    index = _get_json(s3, bucket, "r/index.json")
    assert [r["run_key"] for r in index["runs"]] == [first.run_key]


def test_verification_catches_a_corrupted_object(tmp_path, s3, bucket, store, monkeypatch):
    """A stored object whose S3 checksum differs from the local sha256 aborts the publish; readback too."""
    rd = make_rundir(tmp_path / "run", versions=("0.9.1",), seeds=(0,))
    real_upload = S3Store.upload_file

    def corrupting(self, path, bucket_, key, **kw):
        if key.endswith("summary.json"):
            self.client.put_object(
                Bucket=bucket_, Key=key, Body=b"{}", ChecksumAlgorithm="SHA256", Metadata={}
            )
            return None
        return real_upload(self, path, bucket_, key, **kw)

    monkeypatch.setattr(S3Store, "upload_file", corrupting)
    for mode in ("checksum", "readback"):
        with pytest.raises(PublishError, match="summary.json"):
            _publish(rd, f"s3://{bucket}/{mode}", store=store, verify=mode)
        assert not _keys(s3, bucket, f"{mode}/index.json")
    monkeypatch.setattr(S3Store, "upload_file", real_upload)
    result = _publish(rd, f"s3://{bucket}/readback", store=store, verify="readback")
    objects = _get_json(s3, bucket, f"readback/runs/{result.run_key}/published.json")["objects"]
    assert {o["verified"] for o in objects} == {"readback"}


def test_index_update_survives_a_concurrent_writer(tmp_path, s3, bucket, store, monkeypatch):
    """index.json is replaced with a conditional PUT: a writer sneaking in between read and write is kept."""
    uri = f"s3://{bucket}/cas"
    _publish(make_rundir(tmp_path / "a", run_id="night-a", date="2026-11-19", **TINY), uri, store=store)
    real_get = S3Store.get
    raced: list[str] = []

    def racing_get(self, bucket_, key):
        got = real_get(self, bucket_, key)
        if key == "cas/index.json" and not raced:  # another publisher commits right after our read
            doc = json.loads(got[0])
            doc["runs"].append(
                {**doc["runs"][0], "run_key": "2026-11-01_other", "run_id": "other", "date": "2026-11-01"}
            )
            s3.put_object(
                Bucket=bucket_, Key=key, Body=json.dumps(doc).encode(), ContentType="application/json"
            )
            raced.append(key)
        return got

    monkeypatch.setattr(S3Store, "get", racing_get)
    result = _publish(
        make_rundir(tmp_path / "b", run_id="night-b", date="2026-11-20", **TINY), uri, store=store
    )
    assert raced
    runs = [r["run_key"] for r in _get_json(s3, bucket, "cas/index.json")["runs"]]
    assert runs == [result.run_key, "2026-11-19_night-a", "2026-11-01_other"]


def test_presigned_url_fetchable(tmp_path, s3_server, bucket, store, capsys):
    result = _publish(
        make_rundir(tmp_path / "run", **LIGHT), f"s3://{bucket}/x", store=store, presign_expires=600
    )
    with urllib.request.urlopen(result.report_url, timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b"<svg" in resp.read()

    from genbench_tasks.cli import main

    assert main(["presign", result.history_uri, "--expires", "120", "--endpoint-url", s3_server]) == 0
    url = capsys.readouterr().out.strip()
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=120" in url
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert b"genbench nightly history" in resp.read()


def test_s3hook_store(tmp_path, tmp_path_factory, s3_server, s3, bucket, monkeypatch):
    pytest.importorskip("airflow.providers.amazon")
    if "airflow" not in sys.modules:  # keep a first airflow import off ~/airflow
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    conn = {
        "conn_type": "aws",
        "login": "x",
        "password": "y",
        "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_GENBENCH_S3", json.dumps(conn))
    store = S3Store.from_airflow("genbench_s3", transfer=SMALL_MULTIPART)
    assert store.endpoint == s3_server
    result = _publish(make_rundir(tmp_path / "run", **TINY), f"s3://{bucket}/hook", store=store)
    assert result.uploaded > 20
    assert _get_json(s3, bucket, "hook/index.json")["runs"][0]["run_key"] == result.run_key
    with urllib.request.urlopen(store.presign(result.report_uri, 300), timeout=30) as resp:
        assert resp.status == 200

    monkeypatch.delenv("AIRFLOW_CONN_GENBENCH_S3")
    with pytest.raises(GenbenchError, match="connection 'genbench_missing' unusable"):
        S3Store.from_airflow("genbench_missing")


# ---------------------------------------------------------------------------------------------- CLI
def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from genbench_tasks.cli import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str, needle: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("genbench: error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_cli_publish_and_errors(tmp_path, s3_server, bucket, capsys, monkeypatch):
    rd = make_rundir(tmp_path / "run", **LIGHT)
    rc, out, _ = _cli(capsys, "publish", str(rd), f"s3://{bucket}/cli", "--endpoint-url", s3_server, "--json")
    assert rc == 0 and json.loads(out)["run_key"] == "2026-11-20_manual__nightly-1"

    rc, _, err = _cli(
        capsys, "publish", str(tmp_path / "nope"), f"s3://{bucket}/cli", "--endpoint-url", s3_server
    )
    assert rc == 2
    _one_line_error(err, "run directory not found")
    rc, _, err = _cli(capsys, "publish", str(rd), "https://example.com/x", "--endpoint-url", s3_server)
    assert rc == 2
    _one_line_error(err, "bad S3 URI")
    rc, _, err = _cli(capsys, "publish", str(rd), "s3://no-such-bucket-here/x", "--endpoint-url", s3_server)
    assert rc == 2
    _one_line_error(err, "bucket 'no-such-bucket-here' does not exist")
    rc, _, err = _cli(capsys, "presign", f"s3://{bucket}/cli/missing.html", "--endpoint-url", s3_server)
    assert rc == 2
    _one_line_error(err, "no such object")
    rc, _, err = _cli(
        capsys, "presign", f"s3://{bucket}/cli/index.html", "--expires", "0", "--endpoint-url", s3_server
    )
    assert rc == 2
    _one_line_error(err, "between 1 and 604800")

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    rc, _, err = _cli(capsys, "publish", str(rd), f"s3://{bucket}/cli", "--endpoint-url", s3_server)
    assert rc == 2
    _one_line_error(err, "no AWS credentials")
