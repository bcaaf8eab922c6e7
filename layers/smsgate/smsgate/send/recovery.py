"""Recovery of stale leases: a message whose id is claimed by a sender that stopped between
its provider request and its record. What it sent is unknown; a provider with a status lookup
can say, the others cannot, and nothing is resent on a guess."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..observability import count, logger
from ..queue_body import Job
from ..sending import (
    Done,
    Result,
    Retry,
)
from ..status import Status
from ..store import Transition
from .outcomes import Outcomes

# The fields that make a message: another value under the same id is another message.
CONFLICT_FIELDS = ("to", "text", "subject", "express", "commercial", "sender")


class Recovery(Outcomes):
    """Claims lost to a redelivery, a concurrent copy or a sender that stopped."""

    def _not_ours(self, item: Job, existing: Mapping[str, Any]) -> Result:
        """The id has a record we could not claim: a redelivery, a producer's retry, or a
        concurrent copy of this message — or another message under the same id."""
        status = existing.get("status")
        conflict = self._refuse_conflict(item, existing)
        if conflict is not None:
            return conflict
        if status not in (Status.QUEUED.value, Status.SCHEDULED.value):
            count("DuplicatesDropped", item.provider)
            logger.info("duplicate dropped", extra={"message_id": item.id, "status": status})
            return Done(str(status), "duplicate")
        until = int(existing.get("lease_until", 0))
        now = int(time.time())
        if until > now:  # another sender is on it right now; look again after its lease
            return Retry(until - now + 1, "message is being sent by another invocation")
        return self._recover_stale(item, existing)

    def _recover_stale(self, item: Job, existing: Mapping[str, Any]) -> Result:
        """A sender stopped between its request and its record. What it sent is unknown;
        a provider with a status lookup can tell us, the others cannot. The record names the
        provider it was sending through (routing may have picked another than this delivery
        would)."""
        lease = str(existing.get("lease", ""))
        item = replace(item, provider=str(existing.get("provider") or item.provider))
        client = self.client(item.provider)
        lookup = self._lookup(client, item.id) if client is not None else None
        if lookup is not None and not lookup.found:
            self.store.release(
                item.id, lease, {"error": "previous attempt never reached the provider"}
            )
            return Retry(1, "previous attempt never reached the provider")
        if lookup is not None and lookup.status is not None:
            self.store.advance(
                item.id, Transition(lookup.status, source="poll", raw=lookup.code, lease=lease)
            )
            return Done(lookup.status.value, lookup.code)
        self.store.advance(
            item.id,
            Transition(
                Status.UNKNOWN,
                source="send",
                raw="interrupted",
                attrs={
                    "error_code": "interrupted",
                    "error": "sender stopped before recording the provider's answer",
                },
                lease=lease,
            ),
        )
        count("SendUnknown", item.provider)
        return Done(Status.UNKNOWN.value, "interrupted")

    def _refuse_conflict(self, item: Job, record: Mapping[str, Any]) -> Done | None:
        """A body under an id whose record holds another message (a different number, text
        or option) is never sent: the record's own message is the one the id stands for.
        Counted (`IdConflict`), logged without the values, and kept in the record's history.
        None when the bodies agree (a redelivery or a producer's retry)."""
        if record.get("erased_at"):
            return None  # the erased record no longer says what it held
        mine = self._record(item)
        fields = [k for k in CONFLICT_FIELDS if (mine.get(k) or None) != (record.get(k) or None)]
        if not fields:
            return None
        canonical = json.dumps({k: mine.get(k) for k in CONFLICT_FIELDS}, sort_keys=True)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:20]
        if self.store.keep_id_conflict(item.id, fields, digest):
            count("IdConflict", str(record.get("provider") or item.provider))
        logger.warning(
            "id reused with a different body: not sent",
            extra={"message_id": item.id, "fields": fields, "status": record.get("status")},
        )
        return Done(str(record.get("status")), "id_conflict")
