"""EventBridge-scheduled reconciliation of messages left sent or unknown: a thin handler over
smsgate.reconcile."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from smsgate.observability import flush_metrics, logger
from smsgate.wiring import reconcile_service


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return {"counts": reconcile_service().run(context.get_remaining_time_in_millis)}
    finally:
        flush_metrics()
