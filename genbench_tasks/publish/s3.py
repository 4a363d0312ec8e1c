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

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from genbench_tasks.artifacts.published import IndexEntry, PublishIndex
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key
from genbench_tasks.s3_client import (
    JSON_TYPE,
    MAX_PRESIGN_SECONDS,
    S3Error,
    S3Store,
    S3Uri,
    b64_digest,
    content_type_for,
    file_digests,
    is_error_code,
    same_checksum,
)

log = logging.getLogger(__name__)

PUBLISHED_SCHEMA = "genbench.published/1"
#: Written by publish itself at the run root (a stale local copy is never uploaded).
GENERATED = ("report.html", "published.json")
NO_CACHE = "no-cache, max-age=0"


class PublishError(S3Error):
    """Publishing failed (the run's index entry and latest/ were not touched)."""


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
    from genbench_tasks.report.data import index_entry

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
        if not same_checksum(reported, expected):
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
    obj = _verify(store, bucket, key, head, sha, b64_digest(bytes.fromhex(sha)), len(data), verify)
    return obj.model_copy(update={"key": rel, "content_type": ctype, "uploaded": uploaded})


def _update_index(store: S3Store, dest: S3Uri, entry: Any, attempts: int = 8) -> list[Any]:
    """Insert/replace ``entry`` in index.json with a conditional PUT (retried on a concurrent writer)."""
    key = dest.join("index.json").key
    conditional = True
    for attempt in range(attempts):
        current = store.get(dest.bucket, key)
        runs: list[IndexEntry] = []
        if current is not None:
            try:
                runs = PublishIndex.model_validate_json(current[0]).runs
            except ValueError as exc:
                first = str(exc).splitlines()[0]
                raise PublishError(f"s3://{dest.bucket}/{key} is not a genbench index: {first}") from exc
        runs = [r for r in runs if r.run_key != entry.run_key] + [entry]
        runs.sort(key=IndexEntry.order_key, reverse=True)
        data = PublishIndex(updated=_now(), runs=runs).model_dump_json(indent=1, by_alias=True).encode()
        cond: dict[str, str] = {}
        if conditional:
            cond = {"if_match": current[1]} if current is not None else {"if_none_match": "*"}
        try:
            store.put_bytes(data, dest.bucket, key, content_type=JSON_TYPE, cache_control=NO_CACHE, **cond)
            return runs
        except GenbenchError as exc:
            cause = exc.__cause__
            if is_error_code(cause, "PreconditionFailed", "412", "ConditionalRequestConflict", "409"):  # type: ignore[arg-type]
                log.info("index.json changed concurrently; retrying (%d)", attempt + 1)
                time.sleep(0.2 * (attempt + 1))
                continue
            if conditional and is_error_code(cause, "NotImplemented", "501"):  # type: ignore[arg-type]
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
    "PublishError",
    "PublishResult",
    "PublishedManifest",
    "PublishedObject",
    "presign",
    "Pages",
    "publish_run",
]
