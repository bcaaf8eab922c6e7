"""The send path, in the order a message meets it:

- `queue_body` (beside this package): the body producers put on the queue, parsed into a `Job`
  or a `BadBody`;
- `batch`: the SQS batch, its opt-out and health reads, its records sent in parallel;
- `service`: `SendService.process`, one message's story — claim, check, send, record;
- `candidates`: the providers that may carry it, checked against their rules and health;
- `lanes`: the router's hand-off to the provider's own queue;
- `holds`: commercial windows and cancelling;
- `outcomes`: the record's transitions for every provider answer;
- `recovery`: leases left by a sender that stopped mid-request.
"""

from __future__ import annotations

from ..queue_body import BadBody, Job, QueueMessage, parse
from .base import DEADLINE_MARGIN_MS
from .outcomes import backoff, failure_reason
from .service import SendService

__all__ = [
    "DEADLINE_MARGIN_MS",
    "BadBody",
    "Job",
    "QueueMessage",
    "SendService",
    "backoff",
    "failure_reason",
    "parse",
]
