"""The shard exchange on S3 (:mod:`unlearn_ops.workflow.shard_exchange`): objects under a prefix.

boto3 finds credentials and the endpoint as it always does (the environment, a profile,
an instance role; `AWS_ENDPOINT_URL` for moto or MinIO): each Dask worker builds its own
client from its own environment; the exchange pickles without one.
"""

from __future__ import annotations

import uuid
from typing import Any

from unlearn_ops.errors import StoreError

__all__ = ["S3Exchange"]


class S3Exchange:
    """Objects under `s3://bucket/prefix/` (an :class:`~unlearn_ops.workflow.shard_exchange.
    ObjectExchange`).

    Example:
        >>> exchange = S3Exchange.for_run("s3://my-bucket/unlearn-ops/exchange")
        >>> exchange.prefix  # doctest: +SKIP
        'unlearn-ops/exchange/run-3f2a.../'
    """

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client

    @classmethod
    def for_run(cls, uri: str) -> S3Exchange:
        """A new prefix of its own under `uri` (`s3://bucket/prefix`) for one flow run."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        run = f"run-{uuid.uuid4().hex}"
        return cls(bucket, f"{prefix.strip('/')}/{run}" if prefix.strip("/") else run)

    def __repr__(self) -> str:
        return f"S3Exchange(s3://{self.bucket}/{self.prefix})"

    def __getstate__(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "prefix": self.prefix, "_client": None}

    @property
    def client(self) -> Any:
        """This process's S3 client (built on first use)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
        return self._client

    def _fail(self, action: str, key: str, exc: Exception) -> StoreError:
        return StoreError(f"s3://{self.bucket}/{self.prefix}{key}", f"{action} failed: {exc}")

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`.

        Raises:
            StoreError: S3 refused or could not be reached.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("writing", key, exc) from exc

    def get(self, key: str) -> bytes:
        """The object under `key`.

        Raises:
            KeyError: no such object.
            StoreError: S3 refused or could not be reached.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return bytes(answer["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyError(key) from exc
            raise self._fail("reading", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("reading", key, exc) from exc

    def contains(self, key: str) -> bool:
        """Whether an object is stored under `key`.

        Raises:
            StoreError: S3 refused or could not be reached.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._fail("looking up", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("looking up", key, exc) from exc

    def keys(self) -> list[str]:
        """Every key under the prefix (relative to it)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        return [
            item["Key"].removeprefix(self.prefix)
            for page in pages
            for item in page.get("Contents", [])
        ]

    def clear(self) -> None:
        """Delete every object under the prefix.

        Raises:
            StoreError: S3 refused or could not be reached (objects may remain).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            keys = self.keys()
            for start in range(0, len(keys), 1000):
                batch = [{"Key": self.prefix + key} for key in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("clearing", "", exc) from exc
