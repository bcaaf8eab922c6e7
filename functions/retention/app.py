"""EventBridge-scheduled inbound text retention: a thin handler over smsgate.retention."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from smsgate.observability import flush_metrics, logger
from smsgate.retention import scheduled_run
from smsgate.wiring import store


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return scheduled_run(store(), context.get_remaining_time_in_millis).as_dict()
    finally:
        flush_metrics()
