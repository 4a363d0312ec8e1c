"""The one place a boto3 S3 client is made: endpoint, addressing style, region and retries configured once.

Every S3 user (publishing, history, custom datasets, verl input staging, the embedded moto server, tests)
calls :func:`s3_client`; the Airflow path gets its client from ``S3Hook`` instead (``publish.s3``).
boto3 is imported lazily.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import urlsplit

from genbench_tasks.errors import GenbenchError

ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
DEFAULT_REGION = "us-east-1"


def endpoint_problem(url: str) -> str | None:
    """Why `url` cannot be an S3 endpoint (None when it is an http(s)://host[:port] URL)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return "expected an http(s)://host[:port] URL"
    return None


def s3_client(
    endpoint_url: str | None = None,
    *,
    region_name: str | None = None,
    profile_name: str | None = None,
    addressing_style: Literal["auto", "path", "virtual"] | None = None,
    max_attempts: int = 5,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
) -> Any:
    """A boto3 S3 client (SigV4, standard retries). ``endpoint_url`` defaults to ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``; with a custom endpoint, path-style addressing (what MinIO and moto expect)."""
    import boto3
    from botocore.config import Config

    source = "endpoint_url"
    if not endpoint_url:
        source = next((v for v in ENDPOINT_ENV if os.environ.get(v)), source)
        endpoint_url = os.environ.get(source) if source != "endpoint_url" else None
    problem = endpoint_problem(endpoint_url) if endpoint_url else None
    if problem:
        raise GenbenchError(f"S3 endpoint {endpoint_url!r} (from {source}): {problem}")
    session = boto3.session.Session(profile_name=profile_name)
    return session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region_name or session.region_name or DEFAULT_REGION,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
            retries={"max_attempts": max_attempts, "mode": "standard"},
        ),
    )
