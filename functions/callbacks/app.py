"""API Gateway (REST, proxy) callback ingestion: a thin handler over smsgate.callbacks.

Routes are DESIGN.md §2.5. The `{token}` path segment is checked (constant time) before any
routing or parsing, so a forged request gets 403 and touches nothing.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from smsgate.callbacks import BadCallback
from smsgate.config import settings
from smsgate.observability import count, flush_metrics, logger
from smsgate.tokens import PREVIOUS
from smsgate.wiring import callback_service, callback_tokens

MAX_BODY = 16 * 1024  # bytes; a receipt or an MO is a few hundred
REFRESH_SECONDS = 30.0
TEXT = "text/plain; charset=utf-8"
Digits = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]

app = APIGatewayRestResolver(enable_validation=True)

_REFUSALS: dict[int, Any] = {
    400: {
        "description": "Missing or unreadable field",
        "content": {TEXT: {"schema": {"type": "string"}}},
    },
    403: {"description": "Wrong callback token", "content": {TEXT: {"schema": {"type": "string"}}}},
    413: {"description": "Body too large", "content": {TEXT: {"schema": {"type": "string"}}}},
}
TEXT_REPLY: dict[int, Any] = {
    200: {
        "description": "The reply texted back to the sender (may be empty)",
        "content": {TEXT: {"schema": {"type": "string"}}},
    },
    **_REFUSALS,
}
JSON_REPLY: dict[int, Any] = {
    200: {
        "description": "Taken: applied, ignored (duplicate or late), unmatched, stored",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"result": {"type": "string"}}}
            }
        },
    },
    **_REFUSALS,
    415: {"description": "Not JSON", "content": {TEXT: {"schema": {"type": "string"}}}},
}


class DeliveryReceipt(BaseModel):
    """TextingHouse's status callback (seeds/002 §4.5)."""

    model_config = ConfigDict(extra="ignore")
    apimsgid: str = Field(default="", max_length=64)
    climsgid: str = Field(default="", max_length=64)
    status: Annotated[Digits, Field(pattern=r"^[0-9]{1,3}$")]


class InboundMessage(BaseModel):
    """TextingHouse's SMS MO callback (seeds/002 §4.6)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    apimsgid: str = Field(default="", max_length=64)
    climsgid: str = Field(default="", max_length=64)
    sender: Annotated[Digits, Field(alias="from", pattern=r"^\+?[0-9]{3,20}$")]
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
@app.get(
    "/hooks/<token>/clubtexting/keyword",
    summary="Club Texting keyword submission",
    responses=TEXT_REPLY,
)
def clubtexting_keyword(
    token: str,
    phone: Annotated[str | None, Query(alias="PhoneNumber", max_length=20)] = None,
    message: Annotated[str | None, Query(alias="Message", max_length=1600)] = None,
) -> Response[str]:
    return _inbound("clubtexting", "keyword")


@app.get(
    "/hooks/<token>/clubtexting/inbox",
    summary="Club Texting inbox forwarding",
    responses=TEXT_REPLY,
)
def clubtexting_inbox(
    token: str,
    sender: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    message: Annotated[str | None, Query(alias="message", max_length=1600)] = None,
) -> Response[str]:
    return _inbound("clubtexting", "inbox")


@app.get(
    "/hooks/<token>/grouptexting/keyword",
    summary="Group Texting keyword submission",
    responses=TEXT_REPLY,
)
def grouptexting_keyword(
    token: str,
    phone: Annotated[str | None, Query(alias="PhoneNumber", max_length=20)] = None,
    message: Annotated[str | None, Query(alias="Message", max_length=1600)] = None,
) -> Response[str]:
    return _inbound("grouptexting", "keyword")


@app.get(
    "/hooks/<token>/grouptexting/inbox", summary="Group Texting inbox reply", responses=TEXT_REPLY
)
def grouptexting_inbox(
    token: str,
    sender: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    message: Annotated[str | None, Query(alias="message", max_length=1600)] = None,
) -> Response[str]:
    return _inbound("grouptexting", "inbox")


@app.post(
    "/hooks/<token>/textinghouse/dlr", summary="TextingHouse delivery receipt", responses=JSON_REPLY
)
def textinghouse_dlr(token: str, receipt: Annotated[DeliveryReceipt, Body()]) -> dict[str, str]:
    return {"result": callback_service().dlr(receipt.model_dump())}


@app.post(
    "/hooks/<token>/textinghouse/mo", summary="TextingHouse inbound message", responses=JSON_REPLY
)
def textinghouse_mo(token: str, message: Annotated[InboundMessage, Body()]) -> dict[str, str]:
    stored = callback_service().mo(message.model_dump(by_alias=True))
    return {"result": "stored" if stored else "duplicate"}


class _Refresh:
    """When a token matches neither cached token, the secret is read again — at most once per
    REFRESH_SECONDS per instance (so a flood of forged requests costs no Secrets Manager
    calls): a just-rotated token works at once instead of after the secret's cache age."""

    last = 0.0

    @classmethod
    def allowed(cls) -> bool:
        now = time.monotonic()
        if now - cls.last < REFRESH_SECONDS:
            return False
        cls.last = now
        return True


def _token_ok(event: dict[str, Any]) -> bool:
    given = str((event.get("pathParameters") or {}).get("token") or "")
    which = callback_tokens(settings()).check(given)
    if which is None and _Refresh.allowed():
        which = callback_tokens(settings(), fresh=True).check(given)
    if which == PREVIOUS:
        # still accepted until its time runs out: this metric shows who is not updated yet
        provider = str(event.get("resource") or "").split("/")[3:4] or ["unknown"]
        count("CallbackPreviousToken", provider[0])
        logger.warning("callback with the previous token", extra={"provider": provider[0]})
    return which is not None


def _refuse(status: int, reason: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": TEXT}, "body": reason}


def _json_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """Read a POST body as TextingHouse sends it (JSON, UTF-8) before the router sees it, so
    every unreadable body is a 4xx: an undecodable, too deep or otherwise unparsable body
    would make Powertools' own parsing raise (a 502). Returns a refusal, or None when fine."""
    raw = event.get("body") or ""
    try:
        data = (
            base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode()
        )
        text = data.decode("utf-8")
    except (ValueError, UnicodeError):
        return _refuse(400, "bad request: body is not UTF-8 text")
    if len(data) > MAX_BODY:
        return _refuse(413, "body too large")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    content_type = str(headers.get("content-type") or "application/json").lower()
    if not content_type.startswith("application/json"):
        return _refuse(415, "unsupported media type: send application/json")
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return _refuse(400, "bad request: body is not JSON")
    event["body"], event["isBase64Encoded"] = text, False
    event["headers"] = {**(event.get("headers") or {}), "Content-Type": "application/json"}
    event["multiValueHeaders"] = None  # the single-value headers above are the request's
    return None


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not _token_ok(event):
        logger.warning("callback with a wrong token refused", extra={"path": event.get("resource")})
        return _refuse(403, "forbidden")
    if event.get("httpMethod") == "POST":
        refusal = _json_body(event)
        if refusal is not None:
            return refusal
    elif len((event.get("body") or "").encode()) > MAX_BODY:
        return _refuse(413, "body too large")
    try:
        return app.resolve(event, context)
    finally:
        flush_metrics()
