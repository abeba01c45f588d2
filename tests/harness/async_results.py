"""S3 as the async watch (aws/async_watch.py) reads it, for its unit tests: GetObject of what SageMaker wrote,
NoSuchKey (botocore's error) before, its reads counted; and a run's resume locations."""

from __future__ import annotations

import io
import time

from botocore.exceptions import ClientError


class Results:
    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}
        self.gets = 0

    def get_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803 (boto3's names)
        self.gets += 1
        if (Bucket, Key) not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."}},
                              "GetObject")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def resume(run: str) -> dict:
    """Where SageMaker writes `run`'s result or failure (bucket `bkt`), given up in an hour."""
    return {"output": f"s3://bkt/out/{run}.out", "failure": f"s3://bkt/fail/{run}.out", "until": time.time() + 3600}
