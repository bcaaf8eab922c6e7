"""DynamoDB: messages, their status history and opt-outs (docs/contract.md, Tables).

The data-access layer: nothing above it touches boto3. `Store` is the three tables' one entry
point, in parts by concern —

- `messages`: claiming an id, leases, status changes (`advance` with a `Transition`), dead
  letters;
- `waiting`: the reconciliation index, receipts, the status history;
- `optouts`: who must never be texted;
- `sweeps`: retention and erasure;

over `expressions` (the one builder of update requests and their named conditions), `tables`
(client, indexes, retention) and `records` (the typed message record, `Claim`, `Transition`).
"""

from __future__ import annotations

from ..timestamps import now_iso
from .expressions import to_item
from .messages import MessageWrites
from .optouts import OptOuts
from .records import Claim, MessageRecord, Transition
from .sweeps import Sweeps
from .tables import (
    BATCH_GET_LIMIT,
    CLAIMABLE,
    DAY,
    DEFAULT_INBOUND_TEXT_RETENTION_DAYS,
    DEFAULT_MESSAGE_RETENTION_DAYS,
    PENDING_INDEX,
    PHONE_INDEX,
    PROVIDER_ID_INDEX,
    TEXT_EXPIRY_INDEX,
    WAITING,
    from_item,
    update_if,
)
from .waiting import Waiting


class Store(MessageWrites, Waiting, OptOuts, Sweeps):
    """The messages, status and opt-outs tables."""


__all__ = [
    "BATCH_GET_LIMIT",
    "CLAIMABLE",
    "DAY",
    "DEFAULT_INBOUND_TEXT_RETENTION_DAYS",
    "DEFAULT_MESSAGE_RETENTION_DAYS",
    "PENDING_INDEX",
    "PHONE_INDEX",
    "PROVIDER_ID_INDEX",
    "TEXT_EXPIRY_INDEX",
    "WAITING",
    "Claim",
    "MessageRecord",
    "Store",
    "Transition",
    "from_item",
    "now_iso",
    "to_item",
    "update_if",
]
