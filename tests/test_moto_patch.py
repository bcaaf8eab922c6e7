"""The tests' patch of moto's TransactWriteItems rollback (smsgate_local.harness): a cancelled
transaction leaves the tables and their streams exactly as they were, as DynamoDB does."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from smsgate_local.runtime import streams_client


def stream_records(table_name: str) -> int:
    db = boto3.client("dynamodb")
    arn = db.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    streams = streams_client(boto3.Session())
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return len(streams.get_records(ShardIterator=iterator)["Records"])


def test_a_cancelled_transaction_changes_no_item_and_no_stream(stack: Any) -> None:
    db = boto3.client("dynamodb")
    messages, status = stack.tables["MessagesTable"], stack.tables["StatusTable"]
    db.put_item(TableName=messages, Item={"id": {"S": "m1"}, "status": {"S": "sent"}})
    before = stream_records(messages)
    with pytest.raises(ClientError) as caught:
        db.transact_write_items(
            TransactItems=[
                # applied first by moto, then undone when the next item's condition fails
                {
                    "Update": {
                        "TableName": messages,
                        "Key": {"id": {"S": "m1"}},
                        "UpdateExpression": "SET #s = :d",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":d": {"S": "delivered"}},
                    }
                },
                {
                    "Put": {
                        "TableName": status,
                        "Item": {"message_id": {"S": "m1"}, "at": {"S": "x"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": messages,
                        "Key": {"id": {"S": "nobody"}},
                        "ConditionExpression": "attribute_exists(id)",
                    }
                },
            ]
        )
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    item = db.get_item(TableName=messages, Key={"id": {"S": "m1"}})["Item"]
    assert item["status"] == {"S": "sent"}
    assert "Item" not in db.get_item(
        TableName=status, Key={"message_id": {"S": "m1"}, "at": {"S": "x"}}
    )
    assert stream_records(messages) == before  # no record of the undone update
