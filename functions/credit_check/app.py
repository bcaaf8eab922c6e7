"""EventBridge-scheduled credit check: a thin handler over smsgate.credit."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from smsgate.observability import flush_metrics, logger
from smsgate.wiring import credit_service


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return {"balances": credit_service().check_all()}
    finally:
        flush_metrics()
