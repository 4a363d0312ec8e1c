"""Publish a run directory to S3: immutable run prefix first, then ``index.json``, ``latest/`` and the history
page last, so a failed publish never exposes a half-written run.

Layout under ``s3://bucket/<prefix>``::

    runs/<date>_<run_id>/...            mirror of RUNDIR + report.html + published.json (object manifest)
    index.json                          every published run: date, run_id, status, headline numbers, verdicts
    latest/report.html|summary.json|run.json   newest run (report with <base> pointing at its run prefix)
    index.html                          history page
    history/<run_key>.jsonl             the run's rows of the per-version history (evaluation/history.py)

Every object is uploaded with ``ChecksumAlgorithm=SHA256`` (multipart above a threshold) and verified against
S3's checksum (full-object SHA-256, or the composite of part SHA-256s for multipart uploads); where the store
returns no checksum, the object is read back and hashed. The full-file sha256 goes into ``published.json``
and the object's ``x-amz-meta-sha256`` (re-publishing skips unchanged objects). No ACL is ever set: objects
stay private (bucket-owner only); share with :func:`presign`.

Publishing renders nothing: the pages come rendered from the report layer (:class:`Pages`, e.g.
``genbench_tasks.report.RunPages``), publish uploads them. One code path over a boto3 S3 client, which comes from plain boto3 (CLI) or the Airflow amazon provider's
``S3Hook(aws_conn_id=...).get_conn()``. boto3/botocore/airflow are imported lazily.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import mimetypes
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key
from genbench_tasks.s3_client import s3_client

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 limit
INDEX_SCHEMA = "genbench.index/1"
PUBLISHED_SCHEMA = "genbench.published/1"
#: Written by publish itself at the run root (a stale local copy is never uploaded).
GENERATED = ("report.html", "published.json")
NO_CACHE = "no-cache, max-age=0"

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


class PublishError(GenbenchError):
    """Publishing failed (the run's index entry and latest/ were not touched)."""


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
def _b64(digest: bytes) -> str:
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
        return full.hexdigest(), _b64(full.digest()), 1
    if not parts:  # an empty file is never multipart, but stay total
        parts.append(hashlib.sha256(b"").digest())
    composite = hashlib.sha256(b"".join(parts)).digest()
    return full.hexdigest(), f"{_b64(composite)}-{len(parts)}", len(parts)


def _same_checksum(reported: str, expected: str) -> bool:
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


def _is_code(exc: BaseException, *codes: str) -> bool:
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
            if _is_code(exc.__cause__, "404", "NoSuchKey", "NotFound"):  # type: ignore[arg-type]
                return None
            raise

    def get(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """(body, ETag); None when the object does not exist."""
        try:
            with _s3_errors("get", f"s3://{bucket}/{key}", self.endpoint):
                resp = self.client.get_object(Bucket=bucket, Key=key)
                return resp["Body"].read(), resp.get("ETag", "")
        except GenbenchError as exc:
            if _is_code(exc.__cause__, "404", "NoSuchKey", "NotFound"):  # type: ignore[arg-type]
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
                    raise PublishError(
                        f"cannot delete s3://{bucket}/{first.get('Key')}: {first.get('Message')}"
                    )

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


# -------------------------------------------------------------------------------------------- publish
class PublishedObject(BaseModel):
    key: str  # relative to the run prefix
    size: int
    sha256: str
    content_type: str
    parts: int = 1
    checksum_sha256: str | None = None  # as reported by S3 (composite for multipart)
    verified: Literal["checksum", "readback"]
    uploaded: bool  # False: an identical object was already there


class PublishedManifest(BaseModel):
    schema_: str = Field(PUBLISHED_SCHEMA, alias="schema")
    run_key: str
    run_id: str
    date: str
    prefix: str
    published_at: str
    objects: list[PublishedObject]

    model_config = {"populate_by_name": True}


class PublishResult(BaseModel):
    """What a publish did (small: fits an Airflow XCom)."""

    run_key: str
    run_uri: str
    report_uri: str
    index_uri: str
    history_uri: str
    latest_uri: str | None
    history_rows_uri: str | None = None  # history/<run_key>.jsonl, when the run has history rows
    report_url: str | None = None  # presigned
    objects: int
    bytes: int
    uploaded: int
    skipped: int
    deleted: int
    seconds: float


def _rundir_files(root: Path) -> list[tuple[str, Path]]:
    """(relative posix key, path) of every regular file, minus dot-entries and files publish generates."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if not path.is_file():
            continue
        key = rel.as_posix()
        if key in GENERATED:
            continue
        out.append((key, path))
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Pages(Protocol):
    """What publish uploads beside RUNDIR's files, rendered by the report layer (``report.RunPages``)."""

    run: Any  # the run's report data (report.RunData): key, id, date, status, summary

    def run_report(self, base_href: str | None = None) -> str: ...

    def history(self, entries: list[Any]) -> str: ...


def publish_run(
    rundir: str | Path,
    uri: str,
    pages: Pages,
    *,
    store: S3Store | None = None,
    endpoint_url: str | None = None,
    verify: Literal["checksum", "readback"] = "checksum",
    max_workers: int = 4,
    history_limit: int = 365,
    presign_expires: int | None = MAX_PRESIGN_SECONDS,
    on_object: Callable[[str], None] | None = None,
) -> PublishResult:
    """Publish RUNDIR under ``uri`` (``s3://bucket/prefix``) with its rendered ``pages``; see the module
    docstring for layout and order.

    ``verify="readback"`` re-downloads every object instead of trusting S3's checksum. ``on_object`` is
    called with each relative key after it is stored and verified (progress, tests).
    """
    from genbench_tasks.evaluation.history import HISTORY_DIR
    from genbench_tasks.report.data import IndexEntry, index_entry

    t0 = time.monotonic()
    dest = S3Uri.parse(uri)
    root = Path(rundir)
    if not root.is_dir():
        raise GenbenchError(f"run directory not found: {root}")
    run = pages.run
    if not run.date:
        raise GenbenchError(f"{root}/manifest.json has no date")
    store = store or S3Store.from_boto3(endpoint_url)
    bucket = dest.bucket
    store.check_bucket(bucket)

    run_prefix = dest.join("runs", run.run_key)
    published_at = _now()
    log.info("publishing %s -> %s", root, run_prefix)

    # 1. the immutable run prefix: every file, then report.html, each verified
    report_html = pages.run_report().encode()
    files = _rundir_files(root)
    existing = store.list_keys(bucket, run_prefix.key + "/")  # head only keys that may be unchanged

    def put_file(rel: str, path: Path) -> PublishedObject:
        key = f"{run_prefix.key}/{rel}"
        size = path.stat().st_size
        ctype = content_type_for(rel)
        part_size = store.transfer.part_size(size)
        sha, expected, parts = file_digests(path, part_size=part_size)
        head = store.head(bucket, key) if existing.get(key) == size else None
        uploaded = not (
            head is not None
            and head.get("Metadata", {}).get("sha256") == sha
            and head.get("ContentLength") == size
            and head.get("ContentType") == ctype
        )
        if uploaded:
            store.upload_file(path, bucket, key, content_type=ctype, sha256=sha)
            head = store.head(bucket, key)
        obj = _verify(store, bucket, key, head, sha, expected, size, verify)
        obj = obj.model_copy(update={"key": rel, "content_type": ctype, "parts": parts, "uploaded": uploaded})
        if on_object:
            on_object(rel)
        return obj

    objects: list[PublishedObject] = []
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="genbench-publish") as pool:
        futures = [pool.submit(put_file, rel, path) for rel, path in files]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            for f in futures:
                f.cancel()
            exc = failed.exception()
            if isinstance(exc, GenbenchError):
                raise PublishError(
                    f"publish of {run.run_key} aborted (index and latest untouched): {exc}"
                ) from exc
            raise PublishError(
                f"publish of {run.run_key} aborted (index and latest untouched): {type(exc).__name__}: {exc}"
            ) from exc
        objects = [f.result() for f in futures]
    objects.append(_put_verified(store, bucket, run_prefix, "report.html", report_html, verify))
    if on_object:
        on_object("report.html")

    # 2. drop objects of an earlier publish of this run that RUNDIR no longer has
    wanted = {f"{run_prefix.key}/{o.key}" for o in objects} | {f"{run_prefix.key}/published.json"}
    stale = sorted(set(existing) - wanted)
    if stale:
        log.info("deleting %d stale objects under %s", len(stale), run_prefix)
        store.delete_keys(bucket, stale)

    # 3. the object manifest closes the run prefix
    manifest = PublishedManifest(
        run_key=run.run_key,
        run_id=run.run_id,
        date=run.date,
        prefix=str(run_prefix) + "/",
        published_at=published_at,
        objects=sorted(objects, key=lambda o: o.key),
    )
    body = manifest.model_dump_json(by_alias=True, indent=1).encode()
    _put_verified(store, bucket, run_prefix, "published.json", body, verify)

    # 4. the run's history rows next to the reports (rewriting them is idempotent)
    history_rows_uri = None
    rows_file = run.layout.history_rows
    if rows_file.is_file():
        history_dir = dest.join(HISTORY_DIR)
        _put_verified(store, bucket, history_dir, f"{run.run_key}.jsonl", rows_file.read_bytes(), verify)
        history_rows_uri = str(history_dir.join(f"{run.run_key}.jsonl"))

    # 5. index.json (compare-and-swap), 6. latest/ (only when this is the newest run), 7. history page
    entry = index_entry(run, published_at=published_at)
    runs = _update_index(store, dest, entry)
    newest = max(runs, key=IndexEntry.order_key)
    latest_uri = None
    if newest.run_key == run.run_key:
        latest = dest.join("latest")
        latest_html = pages.run_report(base_href=f"../runs/{run.run_key}/").encode()
        _put_verified(store, bucket, latest, "report.html", latest_html, verify, cache_control=NO_CACHE)
        if run.study is not None:
            summary_bytes = run.layout.summary.read_bytes()
            _put_verified(
                store, bucket, latest, "summary.json", summary_bytes, verify, cache_control=NO_CACHE
            )
        elif store.head(bucket, latest.join("summary.json").key) is not None:
            store.delete_keys(bucket, [latest.join("summary.json").key])  # never pair with an older summary
        pointer = {
            "run_key": run.run_key,
            "run_id": run.run_id,
            "date": run.date,
            "status": run.status,
            "prefix": f"runs/{run.run_key}/",
            "report": f"runs/{run.run_key}/report.html",
            "published_at": published_at,
        }
        _put_verified(
            store, bucket, latest, "run.json", json.dumps(pointer, indent=1).encode(), verify, NO_CACHE
        )
        latest_uri = str(latest) + "/"
    else:
        log.info("latest/ stays on %s (newer than %s)", newest.run_key, run.run_key)
    shown = sorted(runs, key=IndexEntry.order_key)[-history_limit:]
    history = pages.history(shown).encode()
    _put_verified(store, bucket, dest, "index.html", history, verify, cache_control=NO_CACHE)

    report_uri = run_prefix.join("report.html")
    report_url = store.presign(report_uri, presign_expires) if presign_expires else None
    result = PublishResult(
        run_key=run.run_key,
        run_uri=str(run_prefix) + "/",
        report_uri=str(report_uri),
        index_uri=str(dest.join("index.json")),
        history_uri=str(dest.join("index.html")),
        latest_uri=latest_uri,
        history_rows_uri=history_rows_uri,
        report_url=report_url,
        objects=len(objects) + 1,
        bytes=sum(o.size for o in objects) + len(body),
        uploaded=sum(o.uploaded for o in objects),
        skipped=sum(not o.uploaded for o in objects),
        deleted=len(stale),
        seconds=round(time.monotonic() - t0, 3),
    )
    log.info(
        "published %s: %d objects (%d uploaded, %d unchanged, %d stale deleted) in %.1fs",
        result.run_uri,
        result.objects,
        result.uploaded,
        result.skipped,
        result.deleted,
        result.seconds,
    )
    return result


def _verify(
    store: S3Store,
    bucket: str,
    key: str,
    head: dict[str, Any] | None,
    sha: str,
    expected: str,
    size: int,
    mode: str,
) -> PublishedObject:
    uri = f"s3://{bucket}/{key}"
    if head is None:
        raise PublishError(f"{uri} missing right after upload")
    if head.get("ContentLength") != size:
        raise PublishError(f"{uri}: size {head.get('ContentLength')} != {size}")
    reported = head.get("ChecksumSHA256")
    if mode == "checksum" and reported:
        if not _same_checksum(reported, expected):
            raise PublishError(f"{uri}: S3 SHA256 checksum {reported} != expected {expected}")
        how: Literal["checksum", "readback"] = "checksum"
    else:
        got = store.sha256_of(bucket, key)
        if got != sha:
            raise PublishError(f"{uri}: read-back sha256 {got} != {sha}")
        how = "readback"
    return PublishedObject(
        key=key,
        size=size,
        sha256=sha,
        content_type=str(head.get("ContentType") or ""),
        checksum_sha256=reported,
        verified=how,
        uploaded=True,
    )


def _put_verified(
    store: S3Store,
    bucket: str,
    prefix: S3Uri,
    rel: str,
    data: bytes,
    verify: str,
    cache_control: str | None = None,
) -> PublishedObject:
    """PUT generated bytes (skipped when an identical object is there) and verify them."""
    key = prefix.join(rel).key
    ctype = content_type_for(rel)
    sha = content_key(data, length=None)
    head = store.head(bucket, key)
    uploaded = not (
        head is not None
        and head.get("Metadata", {}).get("sha256") == sha
        and head.get("ContentLength") == len(data)
        and head.get("ContentType") == ctype
        and (head.get("CacheControl") or None) == cache_control
    )
    if uploaded:
        store.put_bytes(data, bucket, key, content_type=ctype, cache_control=cache_control)
        head = store.head(bucket, key)
    obj = _verify(store, bucket, key, head, sha, _b64(bytes.fromhex(sha)), len(data), verify)
    return obj.model_copy(update={"key": rel, "content_type": ctype, "uploaded": uploaded})


def _update_index(store: S3Store, dest: S3Uri, entry: Any, attempts: int = 8) -> list[Any]:
    """Insert/replace ``entry`` in index.json with a conditional PUT (retried on a concurrent writer)."""
    from genbench_tasks.report.data import IndexEntry

    key = dest.join("index.json").key
    conditional = True
    for attempt in range(attempts):
        current = store.get(dest.bucket, key)
        runs: list[IndexEntry] = []
        if current is not None:
            try:
                doc = json.loads(current[0])
                runs = [IndexEntry.model_validate(r) for r in doc.get("runs", [])]
            except (ValueError, AttributeError) as exc:
                raise PublishError(f"s3://{dest.bucket}/{key} is not a genbench index: {exc}") from exc
        runs = [r for r in runs if r.run_key != entry.run_key] + [entry]
        runs.sort(key=IndexEntry.order_key, reverse=True)
        doc = {
            "schema": INDEX_SCHEMA,
            "updated": _now(),
            "runs": [r.model_dump(mode="json") for r in runs],
        }
        data = json.dumps(doc, indent=1).encode()
        cond: dict[str, str] = {}
        if conditional:
            cond = {"if_match": current[1]} if current is not None else {"if_none_match": "*"}
        try:
            store.put_bytes(data, dest.bucket, key, content_type=JSON_TYPE, cache_control=NO_CACHE, **cond)
            return runs
        except GenbenchError as exc:
            cause = exc.__cause__
            if _is_code(cause, "PreconditionFailed", "412", "ConditionalRequestConflict", "409"):  # type: ignore[arg-type]
                log.info("index.json changed concurrently; retrying (%d)", attempt + 1)
                time.sleep(0.2 * (attempt + 1))
                continue
            if conditional and _is_code(cause, "NotImplemented", "501"):  # type: ignore[arg-type]
                log.warning("store has no conditional writes; updating index.json unconditionally")
                conditional = False
                continue
            raise
    raise PublishError(
        f"index.json kept changing under s3://{dest.bucket}/{key}; gave up after {attempts} tries"
    )


def presign(
    uri: str, expires: int = 3600, *, store: S3Store | None = None, endpoint_url: str | None = None
) -> str:
    """Presigned GET URL of an existing object (``s3://bucket/key``)."""
    target = S3Uri.parse(uri)
    store = store or S3Store.from_boto3(endpoint_url)
    return store.presign(target, expires, check_exists=True)


__all__ = [
    "JSON_TYPE",
    "PublishError",
    "PublishResult",
    "PublishedManifest",
    "PublishedObject",
    "S3Store",
    "S3Uri",
    "TransferSettings",
    "content_type_for",
    "file_digests",
    "presign",
    "Pages",
    "publish_run",
]
