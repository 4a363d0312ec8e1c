"""The content-key helper and the S3 client factory (no network: clients are only configured)."""

from __future__ import annotations

import hashlib

import pytest

from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import KEY_LENGTH, content_key, file_sha256
from genbench_tasks.s3_client import endpoint_problem, s3_client


def test_content_key_is_canonical_and_truncated():
    key = content_key({"b": 1, "a": [1, 2]}, "x", b"y")
    assert len(key) == KEY_LENGTH and key == content_key({"a": [1, 2], "b": 1}, "x", b"y")
    assert key != content_key({"a": [1, 2], "b": 2}, "x", b"y")
    assert content_key("ab", "c") != content_key("a", "bc")  # parts are separated
    assert len(content_key("x", length=10)) == 10 and len(content_key("x", length=None)) == 64


def test_one_bytes_part_is_its_sha256(tmp_path):
    data = b"genbench" * 1000
    assert content_key(data, length=None) == hashlib.sha256(data).hexdigest()
    path = tmp_path / "f.bin"
    path.write_bytes(data * 300)  # several read chunks
    assert file_sha256(path) == hashlib.sha256(data * 300).hexdigest()


def test_s3_client_configuration(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    client = s3_client(max_attempts=2)
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.s3 == {"addressing_style": "path"}
    # botocore's max_attempts counts retries: 2 retries are 3 attempts in all
    assert client.meta.config.retries == {"total_max_attempts": 3, "mode": "standard"}
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert s3_client(region_name="eu-west-1").meta.config.s3 == {"addressing_style": "auto"}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "ftp://x")
    with pytest.raises(GenbenchError, match="from AWS_ENDPOINT_URL_S3"):
        s3_client()
    assert endpoint_problem("http://h:1") is None and endpoint_problem("http://h:x") is not None
