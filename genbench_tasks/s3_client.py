"""S3 access in one place: the boto3 client factory (endpoint, addressing style, region and retries configured
once), ``s3://`` URIs, content types and checksums, and :class:`S3Store`, the object store over one client.

Every S3 user (publishing, the history reader, custom datasets, verl input staging, the embedded moto server,
tests) calls :func:`s3_client` or :class:`S3Store`; the Airflow path gets its client from ``S3Hook``
(:meth:`S3Store.from_airflow`). boto3 is imported lazily.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import mimetypes
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel

from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key

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


# ================================================================================ objects: URIs, store
# (moved here from publish.s3 so analysis code reads published objects without importing publishing)


class S3Error(GenbenchError):
    """An S3 operation failed (one line: action, URI, endpoint, S3's message)."""


MiB = 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 limit

JSON_TYPE = "application/json"
#: The standard library's built-in table (not the host's /etc/mime.types, so every host agrees), plus the
#: types it lacks; ``.gz`` objects are served as gzip files, not as transfer-encoded content.
_MIME = mimetypes.MimeTypes()
for _ext, _type in {
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".md": "text/markdown",
    ".log": "text/plain",
    ".js": "text/javascript",
    ".woff2": "font/woff2",
    ".gz": "application/gzip",
}.items():
    _MIME.add_type(_type, _ext)


def content_type_for(name: str) -> str:
    """Content-Type of an object by file name (``application/octet-stream`` when unknown)."""
    guessed = _MIME.types_map[True].get(PurePosixPath(name).suffix.lower())
    if guessed is None:
        return "application/octet-stream"
    return guessed + "; charset=utf-8" if guessed.startswith("text/") else guessed


# ---------------------------------------------------------------------------------------------- URIs
class S3Uri(BaseModel):
    """``s3://bucket/key``; ``key`` has no leading or trailing slash (may be empty)."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise GenbenchError(f"bad S3 URI {uri!r}: expected s3://bucket[/prefix]")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if (
            not (3 <= len(bucket) <= 63)
            or not all(c.isalnum() or c in "-." for c in bucket)
            or bucket != bucket.lower()
        ):
            raise GenbenchError(f"bad S3 URI {uri!r}: {bucket!r} is not a valid bucket name")
        key = key.strip("/")
        if "//" in key or any(part in (".", "..") for part in key.split("/")):
            raise GenbenchError(f"bad S3 URI {uri!r}: empty or relative path segments")
        return cls(bucket=bucket, key=key)

    def join(self, *parts: str) -> S3Uri:
        segs = [self.key] if self.key else []
        segs += [p.strip("/") for p in parts if p and p.strip("/")]
        return S3Uri(bucket=self.bucket, key="/".join(segs))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


# ------------------------------------------------------------------------------------------ checksums
def b64_digest(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def file_digests(path: Path, *, part_size: int | None) -> tuple[str, str, int]:
    """(sha256 hex, the SHA256 checksum S3 will report, number of parts) in one read of the file.

    ``part_size`` None: single PUT (S3 reports base64 sha256 of the whole object); else multipart with that
    part size (S3 reports the base64 sha256 of the concatenated part digests, ``-N`` suffixed).
    """
    full = hashlib.sha256()
    parts: list[bytes] = []
    block = part_size or 8 * MiB
    with open(path, "rb") as f:
        while chunk := f.read(block):
            full.update(chunk)
            if part_size:
                parts.append(hashlib.sha256(chunk).digest())
    if not part_size:
        return full.hexdigest(), b64_digest(full.digest()), 1
    if not parts:  # an empty file is never multipart, but stay total
        parts.append(hashlib.sha256(b"").digest())
    composite = hashlib.sha256(b"".join(parts)).digest()
    return full.hexdigest(), f"{b64_digest(composite)}-{len(parts)}", len(parts)


def same_checksum(reported: str, expected: str) -> bool:
    """Compare S3-reported and expected SHA256 checksums (composite: part count suffix optional)."""
    r, _, r_parts = reported.partition("-")
    x, _, x_parts = expected.partition("-")
    return r == x and (not r_parts or not x_parts or r_parts == x_parts)


# ------------------------------------------------------------------------------------------- storage
class TransferSettings(BaseModel):
    """boto3 ``TransferConfig`` knobs (S3 parts are >= 5 MiB; s3transfer enforces it)."""

    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 16 * MiB
    max_concurrency: int = 4

    def config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
        )

    def part_size(self, size: int) -> int | None:
        """The part size s3transfer will use for a file of ``size`` bytes; None when it is a single PUT."""
        if size < self.multipart_threshold:
            return None
        from s3transfer.utils import ChunksizeAdjuster

        return ChunksizeAdjuster().adjust_chunksize(self.multipart_chunksize, size)


@contextlib.contextmanager
def _s3_errors(action: str, uri: str, endpoint: str | None) -> Iterator[None]:
    """Turn botocore failures into one-line :class:`GenbenchError` messages."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = f" at {endpoint}" if endpoint else ""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise GenbenchError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
            "or use an Airflow aws connection"
        ) from exc
    except EndpointConnectionError as exc:
        raise GenbenchError(f"cannot reach the S3 endpoint{where}: {exc}") from exc
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        bucket = S3Uri.parse(uri).bucket if uri.startswith("s3://") else uri
        if code in ("NoSuchBucket",) or (
            action == "check bucket" and (code in ("404", "NotFound") or status == 404)
        ):
            raise GenbenchError(f"bucket {bucket!r} does not exist{where}") from exc
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            raise GenbenchError(
                f"S3 rejected the credentials{where} ({code}) while trying to {action} {uri}"
            ) from exc
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            raise GenbenchError(f"access denied{where}: cannot {action} {uri}") from exc
        if code in ("NoSuchKey", "404", "NotFound"):
            raise GenbenchError(f"not found: {uri}") from exc
        msg = err.get("Message") or code or str(exc)
        raise GenbenchError(f"S3 {action} failed for {uri}{where}: {code}: {msg}") from exc
    except BotoCoreError as exc:
        raise GenbenchError(f"S3 {action} failed for {uri}{where}: {exc}") from exc


def is_error_code(exc: BaseException, *codes: str) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    err = exc.response.get("Error", {})
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return str(err.get("Code")) in codes or status in codes


class S3Store:
    """Object storage over one boto3 S3 client (thread-safe; shared by the upload workers).

    Build with :meth:`from_boto3` (CLI: env/profile credentials, optional endpoint URL for MinIO/moto) or
    :meth:`from_airflow` (the amazon provider's ``S3Hook``); everything else is the same code.
    """

    def __init__(self, client: Any, *, transfer: TransferSettings | None = None):
        self.client = client
        self.transfer = transfer or TransferSettings()
        self._config = self.transfer.config()

    @property
    def endpoint(self) -> str | None:
        return getattr(getattr(self.client, "meta", None), "endpoint_url", None)

    @classmethod
    def from_boto3(
        cls,
        endpoint_url: str | None = None,
        *,
        region_name: str | None = None,
        profile_name: str | None = None,
        addressing_style: Literal["auto", "path", "virtual"] | None = None,
        transfer: TransferSettings | None = None,
    ) -> S3Store:
        """Plain boto3 client (:func:`genbench_tasks.s3_client.s3_client`: endpoint from the environment by
        default, path-style addressing with a custom endpoint, standard retries)."""
        client = s3_client(
            endpoint_url,
            region_name=region_name,
            profile_name=profile_name,
            addressing_style=addressing_style,
        )
        return cls(client, transfer=transfer)

    @classmethod
    def from_airflow(
        cls, aws_conn_id: str = "genbench_s3", *, transfer: TransferSettings | None = None
    ) -> S3Store:
        """Client of ``S3Hook(aws_conn_id=...)`` (endpoint_url, region, config_kwargs from the connection)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        try:
            # S3Hook silently falls back to ambient boto3 credentials for an unknown conn id: refuse that.
            S3Hook.get_connection(aws_conn_id)
            client = S3Hook(aws_conn_id=aws_conn_id).get_conn()
        except Exception as exc:  # AirflowNotFoundException and friends: report as one line
            raise GenbenchError(f"Airflow connection {aws_conn_id!r} unusable: {exc}") from exc
        return cls(client, transfer=transfer)

    # -- primitives
    def check_bucket(self, bucket: str) -> None:
        with _s3_errors("check bucket", f"s3://{bucket}", self.endpoint):
            self.client.head_bucket(Bucket=bucket)

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """HEAD with checksums; None when the object does not exist."""
        try:
            with _s3_errors("head", f"s3://{bucket}/{key}", self.endpoint):
                return self.client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except GenbenchError as exc:
            if is_error_code(exc.__cause__, "404", "NoSuchKey", "NotFound"):  # type: ignore[arg-type]
                return None
            raise

    def get(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """(body, ETag); None when the object does not exist."""
        try:
            with _s3_errors("get", f"s3://{bucket}/{key}", self.endpoint):
                resp = self.client.get_object(Bucket=bucket, Key=key)
                return resp["Body"].read(), resp.get("ETag", "")
        except GenbenchError as exc:
            if is_error_code(exc.__cause__, "404", "NoSuchKey", "NotFound"):  # type: ignore[arg-type]
                return None
            raise

    def sha256_of(self, bucket: str, key: str) -> str:
        """Read an object back and hash it (streamed)."""
        h = hashlib.sha256()
        with _s3_errors("read back", f"s3://{bucket}/{key}", self.endpoint):
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            for chunk in iter(lambda: body.read(MiB), b""):
                h.update(chunk)
        return h.hexdigest()

    def upload_file(
        self,
        path: Path,
        bucket: str,
        key: str,
        *,
        content_type: str,
        sha256: str,
        cache_control: str | None = None,
    ) -> None:
        """Upload a file: one PUT below the multipart threshold, else a multipart upload (boto3
        TransferConfig); either way botocore sends SHA-256 checksums of the bytes on the wire, S3 checks them
        and stores the object's checksum (whole-object, or composite of the parts)."""
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": {"sha256": sha256}}
        if cache_control:
            extra["CacheControl"] = cache_control
        uri = f"s3://{bucket}/{key}"
        with _s3_errors("upload", uri, self.endpoint):
            if self.transfer.part_size(path.stat().st_size) is None:
                with open(path, "rb") as body:
                    self.client.put_object(
                        Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256", **extra
                    )
            else:
                extra["ChecksumAlgorithm"] = "SHA256"
                self.client.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=self._config)

    def put_bytes(
        self,
        data: bytes,
        bucket: str,
        key: str,
        *,
        content_type: str,
        cache_control: str | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> dict[str, Any]:
        """Single PUT with a SHA-256 checksum; conditional (``IfMatch``/``IfNoneMatch``) when asked."""
        args: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Body": data,
            "ContentType": content_type,
            "ChecksumAlgorithm": "SHA256",
            "Metadata": {"sha256": content_key(data, length=None)},
        }
        if cache_control:
            args["CacheControl"] = cache_control
        if if_match:
            args["IfMatch"] = if_match
        if if_none_match:
            args["IfNoneMatch"] = if_none_match
        with _s3_errors("put", f"s3://{bucket}/{key}", self.endpoint):
            return self.client.put_object(**args)

    def list_keys(self, bucket: str, prefix: str) -> dict[str, int]:
        """key -> size of every object under ``prefix``."""
        out: dict[str, int] = {}
        with _s3_errors("list", f"s3://{bucket}/{prefix}", self.endpoint):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    out[obj["Key"]] = obj["Size"]
        return out

    def delete_keys(self, bucket: str, keys: list[str]) -> None:
        with _s3_errors("delete", f"s3://{bucket}", self.endpoint):
            for i in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[i : i + 1000]]
                resp = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                if resp.get("Errors"):
                    first = resp["Errors"][0]
                    raise S3Error(f"cannot delete s3://{bucket}/{first.get('Key')}: {first.get('Message')}")

    def presign(self, uri: str | S3Uri, expires: int = 3600, *, check_exists: bool = False) -> str:
        """A presigned GET URL for ``s3://bucket/key`` valid ``expires`` seconds (1 s .. 7 days)."""
        target = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        if not target.key:
            raise GenbenchError(f"presign needs an object key: {target}")
        if not 1 <= int(expires) <= MAX_PRESIGN_SECONDS:
            raise GenbenchError(f"--expires must be between 1 and {MAX_PRESIGN_SECONDS} seconds (7 days)")
        if check_exists and self.head(target.bucket, target.key) is None:
            self.check_bucket(target.bucket)
            raise GenbenchError(f"no such object: {target}")
        with _s3_errors("presign", str(target), self.endpoint):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": target.bucket, "Key": target.key}, ExpiresIn=int(expires)
            )
