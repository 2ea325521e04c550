"""The SQS calls of a backfill, through botocore, against AWS or the local server alike.

`metrics-agg serve` answers SQS's JSON protocol on its own port (`local.server.queues`),
so the CLI and the worker run one code path whichever side they talk to: a queue URL on
127.0.0.1 or localhost gets that host as endpoint and placeholder credentials (the local
server checks none); any other URL is a real queue, signed with the default credential
chain in the region its host names (``sqs.<region>.amazonaws.com``).

botocore's own retries (standard mode) absorb throttling; what still fails becomes a
`QueueError` here, in one place, without message bodies or credentials.
"""

from __future__ import annotations

__all__ = ["LOCAL_ACCOUNT", "QueueClient", "ReceivedMessage", "is_local_url", "local_queue_url"]

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from metrics_agg.errors import QueueError

LOCAL_ACCOUNT = "000000000000"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_REGION_IN_HOST = re.compile(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com", re.ASCII)
_BATCH = 10  # SQS's limit per SendMessageBatch / DeleteMessageBatch / ReceiveMessage


def is_local_url(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOCAL_HOSTS


def local_queue_url(endpoint: str, name: str) -> str:
    """The URL of queue ``name`` on the local server that serves GraphQL at ``endpoint``."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}/{LOCAL_ACCOUNT}/{name}"


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


class QueueClient:
    """One botocore SQS client; ``for_url`` picks endpoint, region and credentials."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def for_url(cls, queue_url: str, *, region: str | None = None) -> QueueClient:
        """A client for the queues on ``queue_url``'s side (AWS or the local server)."""
        import botocore.config
        import botocore.session

        session = botocore.session.get_session()
        parts = urlsplit(queue_url)
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=30,  # above ReceiveMessage's longest wait (20 s)
        )
        if is_local_url(queue_url):
            client = session.create_client(
                "sqs",
                region_name="us-east-1",
                endpoint_url=f"{parts.scheme}://{parts.netloc}",
                aws_access_key_id="local",
                aws_secret_access_key="local",
                config=config,
            )
        else:
            m = _REGION_IN_HOST.match(parts.hostname or "")
            name = region or (m.group(1) if m else None) or session.get_config_variable("region")
            client = session.create_client("sqs", region_name=name, config=config)
        return cls(client)

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result: dict[str, Any] = getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise QueueError(
                f"SQS {operation} failed: {error.get('Code', '?')}: {error.get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:
            raise QueueError(f"SQS {operation} failed: {type(exc).__name__}: {exc}") from exc
        return result

    def send(self, queue_url: str, bodies: Sequence[str], *, delay_seconds: int = 0) -> int:
        """Send every body (10 per request); a body SQS refuses fails the call.

        ``delay_seconds`` (0-900, SQS's DelaySeconds): each message is received no sooner.

        Raises:
            QueueError: a request failed, or SQS refused an entry.
        """
        for i in range(0, len(bodies), _BATCH):
            chunk = bodies[i : i + _BATCH]
            entries: list[dict[str, Any]] = [
                {"Id": str(j), "MessageBody": b} for j, b in enumerate(chunk)
            ]
            if delay_seconds:
                for e in entries:
                    e["DelaySeconds"] = delay_seconds
            out = self._call("send_message_batch", QueueUrl=queue_url, Entries=entries)
            failed = out.get("Failed") or []
            if failed:
                first = failed[0]
                raise QueueError(
                    f"SQS refused {len(failed)} message(s): {first.get('Code')}: "
                    f"{first.get('Message', '')}"
                )
        return len(bodies)

    def receive(
        self,
        queue_url: str,
        *,
        max_messages: int = _BATCH,
        wait_seconds: int = 0,
        visibility_timeout: int | None = None,
    ) -> list[ReceivedMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": max(1, min(_BATCH, max_messages)),
            "WaitTimeSeconds": wait_seconds,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        out = self._call("receive_message", **kwargs)
        return [
            ReceivedMessage(
                m["MessageId"],
                m["ReceiptHandle"],
                m["Body"],
                int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in out.get("Messages") or []
        ]

    def delete(self, queue_url: str, receipt_handles: Sequence[str]) -> None:
        for i in range(0, len(receipt_handles), _BATCH):
            chunk = receipt_handles[i : i + _BATCH]
            entries = [{"Id": str(j), "ReceiptHandle": h} for j, h in enumerate(chunk)]
            self._call("delete_message_batch", QueueUrl=queue_url, Entries=entries)

    def attributes(self, queue_url: str, names: Sequence[str]) -> Mapping[str, str]:
        out = self._call("get_queue_attributes", QueueUrl=queue_url, AttributeNames=list(names))
        attrs: Mapping[str, str] = out.get("Attributes") or {}
        return attrs

    def url_of_arn(self, arn: str) -> str:
        """The URL of the queue ``arn`` names (a redrive policy gives ARNs)."""
        parts = arn.split(":")
        if len(parts) != 6:
            raise QueueError(f"not an SQS queue ARN: {arn[:200]!r}")
        out = self._call("get_queue_url", QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
        return str(out["QueueUrl"])

    def close(self) -> None:
        self._client.close()
