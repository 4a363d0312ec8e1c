"""Publishing run artifacts and reports to S3 (boto3 or the Airflow S3Hook; boto3 imported lazily)."""

from genbench_tasks.publish.s3 import (
    PublishError,
    PublishResult,
    S3Store,
    S3Uri,
    TransferSettings,
    content_type_for,
    presign,
    publish_run,
)

__all__ = [
    "PublishError",
    "PublishResult",
    "S3Store",
    "S3Uri",
    "TransferSettings",
    "content_type_for",
    "presign",
    "publish_run",
]
