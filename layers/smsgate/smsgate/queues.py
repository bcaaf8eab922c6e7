"""The send path's other AWS calls, behind the data-access line: SQS (lanes, re-queues,
visibility) and EventBridge Scheduler (commercial holds). Each client is built on first use."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from .retries import with_retries

SQS_BATCH = 10  # SendMessageBatch's entries per call
MAX_VISIBILITY = 43_200  # SQS's ceiling for a visibility timeout (12 h)


class Queues:
    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send_batch(
        self,
        url: str,
        bodies: Sequence[Mapping[str, Any]],
        attributes: Sequence[Mapping[str, str]],
        delay: int = 0,
    ) -> set[int]:
        """Put at most SQS_BATCH bodies on `url` (one SendMessageBatch), each with its string
        attributes. Returns the indexes of the entries SQS did not take."""
        answer = with_retries(
            self.client.send_message_batch,
            QueueUrl=url,
            Entries=[
                {
                    "Id": str(n),
                    "MessageBody": json.dumps(body),
                    "DelaySeconds": delay,
                    "MessageAttributes": {
                        name: {"DataType": "String", "StringValue": value}
                        for name, value in attrs.items()
                    },
                }
                for n, (body, attrs) in enumerate(zip(bodies, attributes, strict=True))
            ],
        )
        return {int(f["Id"]) for f in answer.get("Failed", [])}

    def send(self, url: str, body: Mapping[str, Any], delay: int = 0) -> None:
        with_retries(
            self.client.send_message, QueueUrl=url, MessageBody=json.dumps(body), DelaySeconds=delay
        )

    def change_visibility(self, url: str, receipt_handle: str, delay: int) -> None:
        self.client.change_message_visibility(
            QueueUrl=url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(0, min(delay, MAX_VISIBILITY)),
        )


class Schedules:
    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("scheduler")
        return self._client

    def create_once(
        self, name: str, group: str, at: datetime, target: Mapping[str, str], body: Any
    ) -> bool:
        """A one-off schedule that puts `body` on `target` (Arn, RoleArn) at `at` (UTC) and
        deletes itself. False when a schedule of that name exists already: an earlier attempt
        whose answer was lost made it."""
        try:
            with_retries(
                self.client.create_schedule,
                Name=name,
                GroupName=group,
                ScheduleExpression=f"at({at.strftime('%Y-%m-%dT%H:%M:%S')})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={**target, "Input": json.dumps(body)},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
            return False
        return True

    def delete(self, name: str, group: str) -> bool:
        """False when the schedule is gone already (fired or deleted)."""
        try:
            self.client.delete_schedule(Name=name, GroupName=group)
        except Exception:  # gone, or unreachable: a schedule that fires finds the message final
            return False
        return True
