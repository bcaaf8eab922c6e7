"""API Gateway (REST, proxy) callback ingestion: a thin handler over smsgate.callbacks.

Routes are DESIGN.md §2.5. The `{token}` path segment is checked (constant time) before any
routing or parsing, so a forged request gets 403 and touches nothing.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from smsgate.callbacks import BadCallback
from smsgate.config import settings
from smsgate.observability import flush_metrics, logger
from smsgate.wiring import callback_service, callback_token

MAX_BODY = 16 * 1024  # bytes; a receipt or an MO is a few hundred
TEXT = "text/plain; charset=utf-8"
Digits = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]

app = APIGatewayRestResolver(enable_validation=True)


class DeliveryReceipt(BaseModel):
    """TextingHouse's status callback (seeds/002 §4.5)."""

    model_config = ConfigDict(extra="ignore")
    apimsgid: str = Field(default="", max_length=64)
    climsgid: str = Field(default="", max_length=64)
    status: Annotated[Digits, Field(pattern=r"^\d{1,3}$")]


class InboundMessage(BaseModel):
    """TextingHouse's SMS MO callback (seeds/002 §4.6)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    apimsgid: str = Field(default="", max_length=64)
    climsgid: str = Field(default="", max_length=64)
    sender: Annotated[Digits, Field(alias="from", pattern=r"^\+?\d{3,20}$")]
    txt: str = Field(max_length=1600)
    date: str = Field(default="", max_length=40)


def _text(body: str, status: int = 200) -> Response[str]:
    return Response(status_code=status, content_type=TEXT, body=body)


@app.exception_handler(BadCallback)
def _bad_callback(exc: BadCallback) -> Response[str]:
    logger.info("callback refused", extra={"reason": str(exc)})
    return _text(f"bad request: {exc}", 400)


def _inbound(provider: str, kind: str) -> Response[str]:
    params = app.current_event.query_string_parameters or {}
    reply = callback_service().keyword_or_inbox(provider, kind, params)
    return _text(reply)


# Query parameters are read case-insensitively (`from`/`From`); they are declared here for
# the OpenAPI document in the spelling each provider's document uses.
@app.get("/hooks/<token>/clubtexting/keyword", summary="Club Texting keyword submission")
def clubtexting_keyword(
    token: str,
    phone: Annotated[str | None, Query(alias="PhoneNumber", max_length=20)] = None,
    message: Annotated[str | None, Query(alias="Message", max_length=1600)] = None,
) -> Response[str]:
    return _inbound("clubtexting", "keyword")


@app.get("/hooks/<token>/clubtexting/inbox", summary="Club Texting inbox forwarding")
def clubtexting_inbox(
    token: str,
    sender: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    message: Annotated[str | None, Query(alias="message", max_length=1600)] = None,
) -> Response[str]:
    return _inbound("clubtexting", "inbox")


@app.get("/hooks/<token>/grouptexting/keyword", summary="Group Texting keyword submission")
def grouptexting_keyword(
    token: str,
    phone: Annotated[str | None, Query(alias="PhoneNumber", max_length=20)] = None,
    message: Annotated[str | None, Query(alias="Message", max_length=1600)] = None,
) -> Response[str]:
    return _inbound("grouptexting", "keyword")


@app.get("/hooks/<token>/grouptexting/inbox", summary="Group Texting inbox reply")
def grouptexting_inbox(
    token: str,
    sender: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    message: Annotated[str | None, Query(alias="message", max_length=1600)] = None,
) -> Response[str]:
    return _inbound("grouptexting", "inbox")


@app.post("/hooks/<token>/textinghouse/dlr", summary="TextingHouse delivery receipt")
def textinghouse_dlr(token: str, receipt: Annotated[DeliveryReceipt, Body()]) -> dict[str, str]:
    return {"result": callback_service().dlr(receipt.model_dump())}


@app.post("/hooks/<token>/textinghouse/mo", summary="TextingHouse inbound message")
def textinghouse_mo(token: str, message: Annotated[InboundMessage, Body()]) -> dict[str, str]:
    stored = callback_service().mo(message.model_dump(by_alias=True))
    return {"result": "stored" if stored else "duplicate"}


def _token_ok(event: dict[str, Any]) -> bool:
    given = str((event.get("pathParameters") or {}).get("token") or "")
    expected = callback_token(settings())
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not _token_ok(event):
        logger.warning("callback with a wrong token refused", extra={"path": event.get("resource")})
        return {"statusCode": 403, "headers": {"Content-Type": TEXT}, "body": "forbidden"}
    if len((event.get("body") or "").encode()) > MAX_BODY:
        return {"statusCode": 413, "headers": {"Content-Type": TEXT}, "body": "body too large"}
    try:
        return app.resolve(event, context)
    finally:
        flush_metrics()
