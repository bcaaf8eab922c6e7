"""DynamoDB Streams (messages and opt-outs tables) -> the stack's EventBridge bus: a thin
handler over smsgate.events (partial batch responses: a record whose event did not reach the
bus comes back, with every record after it, so each shard keeps its order)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from smsgate.observability import flush_metrics, logger
from smsgate.wiring import event_publisher


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        published = event_publisher().publish(event.get("Records", []))
        # An all-failed batch is returned as failures, not raised: Lambda retries from the
        # lowest failed sequence number either way.
        processor = BatchProcessor(
            event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
        )
        return process_partial_response(
            event=event, record_handler=published.check, processor=processor, context=context
        )
    finally:
        flush_metrics()
