"""API Gateway (REST, proxy) callback ingestion: a thin handler over smsgate.callbacks.

Each provider package serves its own routes (`smsgate/providers/<name>/routes.py`; the URLs are
in docs/contract.md). The `{token}` path segment is checked (constant time) before any routing
or parsing, so a forged request gets 403 and touches nothing.
"""

from __future__ import annotations

import base64
import json
import time
from importlib import import_module
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from smsgate.callbacks import BadCallback
from smsgate.config import settings
from smsgate.observability import count, flush_metrics, logger
from smsgate.providers import PROVIDER_NAMES
from smsgate.providers.web import TEXT, text
from smsgate.tokens import PREVIOUS
from smsgate.wiring import callback_service, callback_tokens

MAX_BODY = 16 * 1024  # bytes; a receipt or an MO is a few hundred
REFRESH_SECONDS = 30.0

app = APIGatewayRestResolver(enable_validation=True)
for _name in PROVIDER_NAMES:  # each provider package serves its own callback routes
    app.include_router(import_module(f"smsgate.providers.{_name}.routes").router(callback_service))


@app.exception_handler(BadCallback)
def _bad_callback(exc: BadCallback) -> Response[str]:
    logger.info("callback refused", extra={"reason": str(exc)})
    return text(f"bad request: {exc}", 400)


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
    """Read a JSON callback body (UTF-8) before the router sees it, so
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
