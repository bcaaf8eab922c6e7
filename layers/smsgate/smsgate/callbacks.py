"""What the providers' callbacks mean (issue 4): inbound messages, keywords, opt-outs, receipts.

The callbacks function is a thin HTTP layer over this module. Nothing here trusts the caller:
the token was checked before we get here, and every field is validated before anything is
written, so a bad request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .observability import count, logger, mask
from .phones import InvalidNumber, from_provider
from .providers import grouptexting, textinghouse
from .providers.clubtexting import FORBIDDEN as CT_FORBIDDEN
from .providers.clubtexting import MAX_MESSAGE as CT_MAX_REPLY
from .status import Status
from .store import Store, now_iso

STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE", "ARRET"}
)
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})
STOP_REPLY = "You are unsubscribed and will get no more messages. Reply START to resubscribe."
START_REPLY = "You are subscribed again. Reply STOP to unsubscribe, HELP for help."
DUPLICATE_WINDOW = 120  # seconds in which the same text from the same number is one message
MAX_TEXT = 1600  # longest inbound text stored (a 10-part concatenated SMS)


class BadCallback(ValueError):
    """The request is not what the provider sends: answered 400, nothing written."""


@dataclass(frozen=True)
class Inbound:
    provider: str
    kind: str  # "keyword", "inbox" or "mo"
    sender: str  # E.164
    text: str
    reply_to: str | None = None  # our outbound message id this answers (TextingHouse MO)
    reply_to_provider_id: str | None = None
    received_at: str | None = None  # the provider's own timestamp (ISO-8601 UTC), if given
    received_at_raw: str | None = None  # ... as the provider wrote it


def lower_keys(params: Mapping[str, str] | None) -> dict[str, str]:
    """Query parameters by lower-case name: the providers vary the case (`from`/`From`)."""
    return {k.lower(): v for k, v in (params or {}).items() if isinstance(v, str)}


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


def fit_reply(provider: str, text: str) -> str:
    """The longest prefix of `text` the provider can send back: Club Texting 130 characters
    without quotes; Group Texting 160 weighted characters of its charset."""
    if provider == "clubtexting":
        return "".join(ch for ch in text if ch not in CT_FORBIDDEN)[:CT_MAX_REPLY]
    kept = "".join(ch for ch in grouptexting.normalise(text) if ch in grouptexting.CHARSET)
    while grouptexting.weighted_length(kept) > grouptexting.MAX_TOTAL:
        kept = kept[:-1]
    return kept


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

    # --- Club Texting / Group Texting: GET with a text/plain answer -----------------------

    def keyword_or_inbox(self, provider: str, kind: str, params: Mapping[str, str]) -> str:
        """Store the inbound message, act on STOP/START/HELP, return the reply text."""
        fields = lower_keys(params)
        number = fields.get("phonenumber") if kind == "keyword" else fields.get("from")
        number = number or fields.get("from") or fields.get("phonenumber")
        text = fields.get("message")
        if not number:
            raise BadCallback("missing sender number (PhoneNumber / from)")
        if text is None:
            raise BadCallback("missing message")
        inbound = Inbound(provider, kind, self._number(number, "us10"), text)
        action = intent(text)
        self._store_inbound(inbound, self._dedupe_ids(inbound), action)
        return fit_reply(provider, self._reply(text, action))

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

    # --- TextingHouse: JSON POSTs ---------------------------------------------------------

    def mo(self, body: Mapping[str, Any]) -> bool:
        """An inbound message from TextingHouse. Returns False for a repeat of one we have."""
        sender = self._number(str(body["from"]), "intl")
        raw_date = str(body.get("date") or "").strip() or None
        inbound = Inbound(
            "textinghouse",
            "mo",
            sender,
            str(body["txt"]),
            reply_to=str(body.get("climsgid") or "") or None,
            reply_to_provider_id=str(body.get("apimsgid") or "") or None,
            received_at=textinghouse_date(raw_date) if raw_date else None,
            received_at_raw=raw_date,
        )
        key = "|".join(
            [
                "textinghouse",
                inbound.reply_to_provider_id or "",
                sender,
                inbound.text,
                inbound.received_at_raw or "",
            ]
        )
        return self._store_inbound(inbound, [_hashed(key)], intent(inbound.text))

    def dlr(self, body: Mapping[str, Any]) -> str:
        """Apply a TextingHouse delivery receipt. Returns what happened: `applied`,
        `ignored` (duplicate, late or regressing) or `unmatched` (kept for later)."""
        code = str(body["status"]).strip()
        climsgid = str(body.get("climsgid") or "").strip()
        apimsgid = str(body.get("apimsgid") or "").strip()
        if not (climsgid or apimsgid):
            raise BadCallback("receipt names no message (apimsgid / climsgid)")
        message_id = climsgid or self.store.find_by_provider_id("textinghouse", apimsgid)
        mapped = textinghouse.map_status(code)
        if mapped is None:
            return self._unlisted_receipt(message_id, apimsgid, climsgid, code)
        new, meaning = mapped
        attrs: dict[str, Any] = {"provider_message_id": apimsgid or None}
        if new in (Status.UNDELIVERED, Status.FAILED):
            # the receipt's own code and the document's meaning of it
            attrs.update({"error_code": code, "error": meaning})
        if message_id and self.store.advance(
            message_id, new, source="dlr", raw=code, attrs=attrs, expect_provider="textinghouse"
        ):
            count(f"Messages{new.value.capitalize()}", "textinghouse")
            logger.info("receipt applied", extra={"message_id": message_id, "status": new.value})
            return "applied"
        if message_id and self.store.get_message(message_id) is not None:
            return "ignored"
        if self.store.keep_unmatched_receipt("textinghouse", apimsgid, climsgid, code):
            logger.warning("receipt for an unknown message kept", extra={"code": code})
        return "unmatched"

    def _unlisted_receipt(
        self, message_id: str | None, apimsgid: str, climsgid: str, code: str
    ) -> str:
        """A status code TextingHouse's document does not list: answered 2xx (a 4xx makes
        TextingHouse retry or give up on the endpoint), kept in the message's history with
        its raw code, the status left as it is."""
        count("ReceiptStatusUnlisted", "textinghouse")
        logger.warning(
            "receipt with a status code the document does not list: kept, status unchanged",
            extra={"code": code, "message_id": message_id},
        )
        message = self.store.get_message(message_id) if message_id else None
        if message is not None and message.get("provider") == "textinghouse":
            self.store.keep_receipt_note(str(message_id), "textinghouse", code)
            return "noted"
        self.store.keep_unmatched_receipt("textinghouse", apimsgid, climsgid, code)
        return "unmatched"

    # --- shared ---------------------------------------------------------------------------

    @staticmethod
    def _number(raw: str, kind: str) -> str:
        try:
            return from_provider(raw, kind)
        except InvalidNumber as exc:
            raise BadCallback(f"sender number is not valid: {exc}") from None

    def _dedupe_ids(self, inbound: Inbound) -> list[str]:
        """Group Texting may call both the keyword and the inbox URL for one message: the same
        number and text within DUPLICATE_WINDOW is the same message, whichever URL it came to."""
        now = self.clock()
        bucket = int(now // DUPLICATE_WINDOW)
        key = f"{inbound.provider}|{inbound.sender}|{inbound.text}"
        ids = [_hashed(f"{key}|{bucket}")]
        if now - bucket * DUPLICATE_WINDOW < DUPLICATE_WINDOW / 2:
            ids.append(_hashed(f"{key}|{bucket - 1}"))  # a twin just before the boundary
        return ids

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
                ids[0], Status.RECEIVED, source=inbound.kind, create=record, also=consent
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


# TextingHouse API §4.6 shows `2019-04-01T13:09:16Z` and says `YYYY-MM-DD HH:mm:ss`, UTC.
TEXTINGHOUSE_DATES = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S")


def textinghouse_date(raw: str) -> str:
    """An MO's `date` in either of the document's formats, as smsgate's ISO-8601 UTC."""
    for layout in TEXTINGHOUSE_DATES:
        try:
            moment = datetime.strptime(raw, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
        return now_iso(moment)
    raise BadCallback("date is neither YYYY-MM-DDTHH:MM:SSZ nor YYYY-MM-DD HH:MM:SS (UTC)")


def _hashed(key: str) -> str:
    return "in-" + hashlib.sha256(key.encode()).hexdigest()[:29]


def parse_json(body: str | None) -> dict[str, Any]:
    try:
        value = json.loads(body or "")
    except json.JSONDecodeError:
        raise BadCallback("body is not JSON") from None
    if not isinstance(value, dict):
        raise BadCallback("body is not a JSON object")
    return value
