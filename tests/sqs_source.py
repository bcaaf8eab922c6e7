"""Lambda's SQS event source, for tests: receive a batch from the real (moto) queue, invoke the
handler with the event Lambda would build, delete what succeeded, leave failures to reappear."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from conftest import LambdaContext


def send_bodies(queue_url: str, bodies: Iterable[Any]) -> list[str]:
    sqs = boto3.client("sqs")
    ids = []
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        ids.append(sqs.send_message(QueueUrl=queue_url, MessageBody=text)["MessageId"])
    return ids


def to_event(queue_arn: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    k: {
                        "stringValue": v.get("StringValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": v.get("DataType"),
                    }
                    for k, v in (m.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def receive_event(queue_url: str, queue_arn: str, max_messages: int = 10) -> dict[str, Any]:
    sqs = boto3.client("sqs")
    answer = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        WaitTimeSeconds=0,
    )
    return to_event(queue_arn, answer.get("Messages", []))


def lanes() -> dict[str, tuple[str, str]]:
    """The providers' lane queues of the stack in os.environ: provider -> (url, arn)."""
    sqs = boto3.client("sqs")
    found = {}
    for key, url in os.environ.items():
        if key.endswith("_LANE_URL") and url:
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            found[key[: -len("_LANE_URL")].lower()] = (url, arn["Attributes"]["QueueArn"])
    return found


def poll_once(
    queue_url: str,
    queue_arn: str,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    remaining_ms: int = 30_000,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One poll of the queue, as its event source would, then of every lane it routed
    records to, until they have nothing visible (the lanes' event sources): returns the
    queue's event and the responses' batch item failures together."""
    event, response = poll_queue_once(queue_url, queue_arn, handler, remaining_ms)
    failures = list(response.get("batchItemFailures", []))
    for _ in range(10):
        busy = False
        for url, arn in lanes().values():
            lane_event, lane_response = poll_queue_once(url, arn, handler, remaining_ms)
            busy = busy or bool(lane_event["Records"])
            failures.extend(lane_response.get("batchItemFailures", []))
        if not busy:
            break
    return event, {"batchItemFailures": failures}


def poll_queue_once(
    queue_url: str,
    queue_arn: str,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    remaining_ms: int = 30_000,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One poll: returns (event, response). Successful records are deleted from the queue."""
    event = receive_event(queue_url, queue_arn)
    if not event["Records"]:
        return event, {"batchItemFailures": []}
    response = handler(event, LambdaContext(remaining_ms))
    failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    sqs = boto3.client("sqs")
    for record in event["Records"]:
        if record["messageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])
    return event, response
