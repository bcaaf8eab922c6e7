"""Personal data: erase one number's data on request.

Erasure (`erase`) finds a number's messages with a Query on MessagesTable's `ByPhone` index
(`phone` = the E.164 number of an outbound `to` or an inbound `from`), never a scan:

- inbound messages are deleted with their status history (an inbound id is derived from the
  sender and the text, so keeping it would keep a pseudonym of the number);
- outbound messages are anonymised: the number (`to`, `phone`), the text, subject, sender id
  and readable error are removed and `erased_at` set; the record keeps its id, status, provider
  and timestamps, so the id is still never sent twice (docs/contract.md, The send queue body)
  and the history (statuses and provider codes only, no personal data) stays with it;
- the opt-out, if any, is kept: it is what stops messages to that number;
- an audit record goes into the status table under `message_id = "audit#erasure"`: when and
  how many items, never the number nor a hash of it.

A message leaves the index once erased, so a second run finds nothing.

The inbound-text retention sweep (InboundTextRetentionDays), which removes the text of
inbound messages past `text_expires_at`, is `smsgate.retention`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .store import Store, now_iso

AUDIT_ID = "audit#erasure"
# Outbound attributes that hold the number or what was said to it.
PERSONAL_OUT = ("to", "phone", "text", "subject", "sender", "error")


@dataclass
class ErasureReport:
    messages_found: int = 0
    inbound_deleted: int = 0
    outbound_anonymised: int = 0
    history_deleted: int = 0
    opt_out_kept: bool = False
    erased_at: str = ""

    @property
    def nothing_left(self) -> bool:
        return self.messages_found == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nothing_left": self.nothing_left}


def erase(store: Store, phone: str) -> ErasureReport:
    """Erase every message of `phone` (E.164) and write the audit record. Idempotent."""
    report = ErasureReport(erased_at=now_iso())
    for message_id in store.ids_of_phone(phone):
        message = store.get_message(message_id)
        if message is None or message.get("phone") != phone:  # gone or erased meanwhile
            continue
        report.messages_found += 1
        if message.get("direction") == "in":
            report.history_deleted += store.delete_message(message_id)
            report.inbound_deleted += 1
        elif store.anonymise(message_id, PERSONAL_OUT, report.erased_at):
            report.outbound_anonymised += 1
    report.opt_out_kept = bool(store.opted_out([phone]))
    audit = {
        "message_id": AUDIT_ID,
        "at": report.erased_at,
        "source": "erasure",
        "note": "erasure of one number's messages on request (the number is not recorded)",
        "messages_found": report.messages_found,
        "inbound_deleted": report.inbound_deleted,
        "outbound_anonymised": report.outbound_anonymised,
        "history_deleted": report.history_deleted,
        "opt_out_kept": report.opt_out_kept,
    }
    store.put_audit(audit)
    return report
