"""Retrying an AWS call whose failure says nothing about its effect.

botocore already retries throttling, 5xx answers and dropped connections (standard mode, five
attempts). What reaches us after that is either an answer (a condition that did not hold, a bad
request: never retried here) or a transient failure that may have hidden an applied write: the
request went out, the answer was lost. Every write smsgate makes is safe to replay — a
conditional write that already happened answers "condition failed", an unconditional one writes
the same values, a transaction carries its idempotency token — so a transient failure is worth
a couple more attempts before the caller gives the record back to SQS or the provider.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from .observability import logger

T = TypeVar("T")
ATTEMPTS = 3
FIRST_PAUSE = 0.05  # seconds; doubled after each failed attempt

# Error codes that are answers, not faults: the request was read and refused, replaying it
# would be refused again.
ANSWERS = frozenset(
    {
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
        "ValidationException",
        "ResourceNotFoundException",
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "ConflictException",
        "IdempotentParameterMismatchException",
        "InvalidParameterValue",
        "ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    }
)


def is_transient(exc: BaseException) -> bool:
    """True when `exc` may be a lost answer or a passing fault (worth another attempt)."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") not in ANSWERS
    return isinstance(exc, BotoCoreError)


def describe(exc: BaseException) -> str:
    """A short name for an AWS failure, safe to log and store: the error code and operation,
    never the message (a service's message may echo a key or a value)."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "error")
        return f"{code} ({exc.operation_name})"
    return type(exc).__name__


def with_retries(call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`call(*args, **kwargs)`, attempted up to ATTEMPTS times while it fails transiently."""
    pause = FIRST_PAUSE
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if attempt == ATTEMPTS or not is_transient(exc):
                raise
            logger.warning(
                "AWS call failed, trying again",
                extra={"error": describe(exc), "attempt": attempt},
            )
            time.sleep(pause)
            pause *= 2
    raise AssertionError("unreachable")
