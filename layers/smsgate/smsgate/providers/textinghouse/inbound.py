"""TextingHouse's callbacks (API SMS PRO §4.5 status callback, §4.6 SMS replies): JSON POSTs
answered 2xx, whose body TextingHouse does not read.

A receipt's status code is mapped by the document's table (§5.1); a code the table does not
list is still answered 2xx and kept. An MO names the message it answers (`climsgid`,
`apimsgid`) and its `date` comes in either of the document's two formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ...phones import from_international_digits
from ...timestamps import now_iso
from ..inbound import BadCallback, Inbound, Receipt, sender_number
from .client import NAME, map_status

Digits = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]
# §4.6 shows `2019-04-01T13:09:16Z` and says `YYYY-MM-DD HH:mm:ss`, UTC.
DATE_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S")


class DeliveryReceipt(BaseModel):
    """The status callback's body (§4.5)."""

    model_config = ConfigDict(extra="ignore")
    apimsgid: str = Field(default="", max_length=64)
    climsgid: str = Field(default="", max_length=64)
    status: Annotated[Digits, Field(pattern=r"^[0-9]{1,3}$")]


class InboundMessage(BaseModel):
    """The SMS MO callback's body (§4.6)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    apimsgid: str = Field(default="", max_length=64)
    climsgid: str = Field(default="", max_length=64)
    sender: Annotated[Digits, Field(alias="from", pattern=r"^\+?[0-9]{3,20}$")]
    txt: str = Field(max_length=1600)
    date: str = Field(default="", max_length=40)


def read_date(raw: str) -> str:
    """An MO's `date` in either of the document's formats, as smsgate's ISO-8601 UTC."""
    for layout in DATE_FORMATS:
        try:
            moment = datetime.strptime(raw, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
        return now_iso(moment)
    raise BadCallback("date is neither YYYY-MM-DDTHH:MM:SSZ nor YYYY-MM-DD HH:MM:SS (UTC)")


def receipt(body: Mapping[str, Any]) -> Receipt:
    code = str(body["status"]).strip()
    client_id = str(body.get("climsgid") or "").strip()
    provider_id = str(body.get("apimsgid") or "").strip()
    if not (client_id or provider_id):
        raise BadCallback("receipt names no message (apimsgid / climsgid)")
    mapped = map_status(code)
    status, meaning = mapped if mapped is not None else (None, "status code not documented")
    return Receipt(NAME, code, status, meaning, client_id, provider_id)


def mo(body: Mapping[str, Any]) -> Inbound:
    sender = sender_number(str(body["from"]), from_international_digits)
    text = str(body["txt"])
    raw_date = str(body.get("date") or "").strip() or None
    provider_id = str(body.get("apimsgid") or "") or None
    # TextingHouse resends an MO it got no 2xx for: the same message, number, text and date
    key = "|".join([NAME, provider_id or "", sender, text, raw_date or ""])
    return Inbound(
        NAME,
        "mo",
        sender,
        text,
        reply_to=str(body.get("climsgid") or "") or None,
        reply_to_provider_id=provider_id,
        received_at=read_date(raw_date) if raw_date else None,
        received_at_raw=raw_date,
        dedupe_key=key,
    )
