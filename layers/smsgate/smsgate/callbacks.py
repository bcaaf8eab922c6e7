"""What the providers' callbacks mean, whichever provider sent them: inbound messages,
keywords, opt-outs, receipts.

Each provider package reads its own requests into `Inbound` and `Receipt` values
(`providers/<name>/inbound.py`) and serves its routes; this module stores them. Nothing here
trusts the caller: the token was checked before, and every field was validated before anything
is written, so a bad request changes nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from .observability import count, logger, mask
from .providers.inbound import BadCallback, Inbound, Receipt
from .status import Status
from .store import Store, Transition, now_iso

__all__ = ["BadCallback", "CallbackService", "Inbound", "Receipt"]

STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE", "ARRET"}
)
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})
STOP_REPLY = "You are unsubscribed and will get no more messages. Reply START to resubscribe."
START_REPLY = "You are subscribed again. Reply STOP to unsubscribe, HELP for help."
DUPLICATE_WINDOW = 120  # seconds in which the same text from the same number is one message
MAX_TEXT = 1600  # longest inbound text stored (a 10-part concatenated SMS)


def split_keyword(text: str) -> tuple[str, str]:
    """`"PIZZA extra cheese"` -> `("PIZZA", "extra cheese")`: the keyword is the first word."""
    words = text.strip().split(None, 1)
    if not words:
        return "", ""
    return words[0].upper(), words[1] if len(words) > 1 else ""


def intent(text: str) -> str | None:
    """`stop`, `start` or `help` when the text is that word alone or after the keyword."""
    words = [w.strip(".!").upper() for w in text.split()]
    for candidate in words if len(words) == 1 else words[1:2] if len(words) == 2 else []:
        if candidate in STOP_WORDS:
            return "stop"
        if candidate in START_WORDS:
            return "start"
        if candidate in HELP_WORDS:
            return "help"
    return None


class CallbackService:
    def __init__(
        self,
        store: Store,
        keyword_replies: Callable[[], Mapping[str, str]],
        help_text: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.keyword_replies, self.help_text = store, keyword_replies, help_text
        self.clock = clock

    # --- what every provider's routes hand over ------------------------------------------

    def receive(self, inbound: Inbound) -> bool:
        """Store the inbound message once, with the opt-out or opt-in it asks for. Returns
        False for a copy of one already stored."""
        ids = [_hashed(inbound.dedupe_key)] if inbound.dedupe_key else self._dedupe_ids(inbound)
        return self._store_inbound(inbound, ids, intent(inbound.text))

    def reply_for(self, inbound: Inbound) -> str:
        """What to text back (before the provider's own limits): the STOP / START
        confirmation, the help text, or the keyword's configured reply ("" for none)."""
        return self._reply(inbound.text, intent(inbound.text))

    def _reply(self, text: str, action: str | None) -> str:
        if action == "stop":
            return STOP_REPLY
        if action == "start":
            return START_REPLY
        if action == "help":
            return self.help_text
        keyword, _ = split_keyword(text)
        replies = {k.upper(): v for k, v in self.keyword_replies().items()}
        return str(replies.get(keyword, ""))

    def receipt(self, receipt: Receipt) -> str:
        """Apply a delivery receipt. Returns what happened: `applied`, `ignored` (duplicate,
        late or regressing), `noted` (a status code the provider does not document) or
        `unmatched` (no message of ours: kept for later)."""
        provider = receipt.provider
        message_id = receipt.client_id or self.store.find_by_provider_id(
            provider, receipt.provider_id
        )
        if receipt.status is None:
            return self._unlisted_receipt(message_id, receipt)
        attrs: dict[str, Any] = {"provider_message_id": receipt.provider_id or None}
        if receipt.status in (Status.UNDELIVERED, Status.FAILED):
            # the receipt's own code and the document's meaning of it
            attrs.update({"error_code": receipt.code, "error": receipt.meaning})
        new = receipt.status
        if message_id and self.store.advance(
            message_id,
            Transition(new, source="dlr", raw=receipt.code, attrs=attrs, expect_provider=provider),
        ):
            count(f"Messages{new.value.capitalize()}", provider)
            logger.info("receipt applied", extra={"message_id": message_id, "status": new.value})
            return "applied"
        if message_id and self.store.get_message(message_id) is not None:
            return "ignored"
        if self.store.keep_unmatched_receipt(
            provider, receipt.provider_id, receipt.client_id, receipt.code
        ):
            logger.warning("receipt for an unknown message kept", extra={"code": receipt.code})
        return "unmatched"

    def _unlisted_receipt(self, message_id: str | None, receipt: Receipt) -> str:
        """A status code the provider's document does not list: answered 2xx (a 4xx makes a
        provider retry or give up on the endpoint), kept in the message's history with its
        raw code, the status left as it is."""
        provider, code = receipt.provider, receipt.code
        count("ReceiptStatusUnlisted", provider)
        logger.warning(
            "receipt with a status code the document does not list: kept, status unchanged",
            extra={"code": code, "message_id": message_id},
        )
        message = self.store.get_message(message_id) if message_id else None
        if message is not None and message.get("provider") == provider:
            self.store.keep_receipt_note(str(message_id), provider, code)
            return "noted"
        self.store.keep_unmatched_receipt(provider, receipt.provider_id, receipt.client_id, code)
        return "unmatched"

    # --- shared ---------------------------------------------------------------------------

    def _dedupe_ids(self, inbound: Inbound) -> list[str]:
        """A provider may call two URLs for one message (a keyword and an inbox route):
        the same number and text within DUPLICATE_WINDOW is the same message, whichever URL it
        came to. The previous window is always looked at too (a twin just before the
        boundary), so every inbound message costs the same reads whenever it comes."""
        bucket = int(self.clock() // DUPLICATE_WINDOW)
        key = f"{inbound.provider}|{inbound.sender}|{inbound.text}"
        return [_hashed(f"{key}|{bucket}"), _hashed(f"{key}|{bucket - 1}")]

    def _store_inbound(self, inbound: Inbound, ids: list[str], action: str | None) -> bool:
        """Store the inbound message once, with the opt-out or opt-in it asks for in the same
        transaction: a redelivered STOP finds both stored or neither, so an opt-out is never
        lost behind a "duplicate" and never applied by a late copy over a later START.
        Returns False for a copy of a message already stored."""
        keyword, _ = split_keyword(inbound.text)
        record = {
            "direction": "in",
            "provider": inbound.provider,
            "kind": inbound.kind,
            "from": inbound.sender,
            "keyword": keyword or None,
            "text": inbound.text[:MAX_TEXT],
            "reply_to": inbound.reply_to,
            "reply_to_provider_id": inbound.reply_to_provider_id,
            "received_at": inbound.received_at,
            "received_at_raw": inbound.received_at_raw,
            "created_at": now_iso(),
        }
        consent: list[dict[str, Any]] = []
        if action == "stop":
            consent = [self.store.opt_out_write(inbound.sender, "STOP keyword", inbound.provider)]
        elif action == "start":
            consent = [self.store.opt_in_write(inbound.sender)]
        if any(self.store.get_message(i) is not None for i in ids[1:]):
            stored = False
        else:
            stored = self.store.advance(
                ids[0],
                Transition(Status.RECEIVED, source=inbound.kind, create=record, also=consent),
            )
        extra = {
            "message_id": ids[0],
            "provider": inbound.provider,
            "kind": inbound.kind,
            "from": mask(inbound.sender),
            "duplicate": not stored,
        }
        logger.info("inbound message", extra=extra)
        if stored:
            count("MessagesReceived", inbound.provider)
            if action == "stop":
                count("OptOuts", inbound.provider)
                logger.info("opted out", extra={"from": mask(inbound.sender)})
            elif action == "start":
                count("OptIns", inbound.provider)
                logger.info("opted back in", extra={"from": mask(inbound.sender)})
        return stored


def _hashed(key: str) -> str:
    return "in-" + hashlib.sha256(key.encode()).hexdigest()[:29]
