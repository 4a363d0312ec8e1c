"""Publishing run artifacts and reports to S3 (objects through ``genbench_tasks.s3_client``'s store)."""

from genbench_tasks.publish.s3 import PublishError, PublishResult, presign, publish_run

__all__ = ["PublishError", "PublishResult", "presign", "publish_run"]
