"""SQS-triggered sender: a thin handler over smsgate.send (partial batch responses)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from smsgate.observability import flush_metrics, logger
from smsgate.wiring import send_service


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records", [])
    batch = send_service().batch(records, context.get_remaining_time_in_millis)
    batch.run()  # routes the send queue's records to the lanes, or sends a lane's
    # An all-failed batch is returned as failures, not raised: the records come back either
    # way, and each keeps the visibility timeout its outcome asked for. One processor per
    # invocation: it holds the batch's state, and costs nothing to build.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    try:
        response = process_partial_response(
            event=event, record_handler=batch.handle, processor=processor, context=context
        )
        batch.finish(response, records)
        return response
    finally:
        flush_metrics()
