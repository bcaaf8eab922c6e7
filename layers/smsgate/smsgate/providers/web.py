"""What every provider's callback routes share: their answers and how OpenAPI describes them,
and the GET routes of providers that call with query parameters (a text reply is texted back).

Imported by the callbacks function only (Powertools' event handler is not a sender's cost).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from .base import CallbackRoute, ProviderClient
from .inbound import SinkSource, keyword_or_inbox

TEXT = "text/plain; charset=utf-8"
_PLAIN = {TEXT: {"schema": {"type": "string"}}}
REFUSALS: dict[int, Any] = {
    400: {"description": "Missing or unreadable field", "content": _PLAIN},
    403: {
        "description": "Wrong callback token, or a caller outside the provider's addresses",
        "content": _PLAIN,
    },
    413: {"description": "Body too large", "content": _PLAIN},
}
TEXT_REPLY: dict[int, Any] = {
    200: {"description": "The reply texted back to the sender (may be empty)", "content": _PLAIN},
    **REFUSALS,
}
JSON_REPLY: dict[int, Any] = {
    200: {
        "description": "Taken: applied, ignored (duplicate or late), noted, unmatched, stored",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"result": {"type": "string"}}}
            }
        },
    },
    **REFUSALS,
    415: {"description": "Not JSON", "content": _PLAIN},
}


def text(body: str, status: int = 200) -> Response[str]:
    return Response(status_code=status, content_type=TEXT, body=body)


def route_path(route: CallbackRoute) -> str:
    """`/hooks/{token}/...` in Powertools' spelling (`<token>`)."""
    return route.path.replace("{token}", "<token>")


def text_reply_routes(
    router: Router,
    provider: str,
    title: str,
    routes: tuple[CallbackRoute, ...],
    read_sender: Callable[[str], str],
    fit_reply: Callable[[str], str],
    sink: SinkSource,
) -> None:
    """The keyword URL (`PhoneNumber`, `Message`) and the inbox URL (`from`, `message`): GET,
    names in any case, the reply fitted to what the provider can text back."""

    def answer(kind: str) -> Response[str]:
        params = router.current_event.query_string_parameters or {}
        inbound = keyword_or_inbox(provider, kind, params, read_sender)
        service = sink()
        service.receive(inbound)  # a copy is answered as the first was
        return text(fit_reply(service.reply_for(inbound)))

    for route in routes:
        kind = route.path.rsplit("/", 1)[-1]
        if kind == "keyword":

            def keyword(
                token: str,
                phone: Annotated[str | None, Query(alias="PhoneNumber", max_length=20)] = None,
                message: Annotated[str | None, Query(alias="Message", max_length=1600)] = None,
            ) -> Response[str]:
                return answer("keyword")

            handler: Callable[..., Response[str]] = keyword
        else:

            def inbox(
                token: str,
                sender: Annotated[str | None, Query(alias="from", max_length=20)] = None,
                message: Annotated[str | None, Query(alias="message", max_length=1600)] = None,
            ) -> Response[str]:
                return answer("inbox")

            handler = inbox
        handler.__name__ = f"{provider}_{kind}"
        router.route(
            route_path(route),
            [route.method],
            summary=f"{title} {route.purpose}",
            responses=TEXT_REPLY,
        )(handler)


def text_reply_router(
    client: type[ProviderClient],
    title: str,
    read_sender: Callable[[str], str],
    fit_reply: Callable[[str], str],
) -> Callable[[SinkSource], Router]:
    """A provider's `router(sink)` for its keyword and inbox GET routes."""

    def router(sink: SinkSource) -> Router:
        routes = Router()  # type: ignore[no-untyped-call]
        text_reply_routes(
            routes, client.name, title, client.callbacks, read_sender, fit_reply, sink
        )
        return routes

    return router
