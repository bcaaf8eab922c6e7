"""TextingHouse's callback routes, for the callbacks function (behind its token guard)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from ..inbound import SinkSource
from ..web import JSON_REPLY, route_path
from .client import TextingHouse
from .inbound import DeliveryReceipt, InboundMessage, mo, receipt

DLR, MO = TextingHouse.callbacks


def router(sink: SinkSource) -> Router:
    routes = Router()  # type: ignore[no-untyped-call]

    @routes.post(route_path(DLR), summary="TextingHouse delivery receipt", responses=JSON_REPLY)
    def textinghouse_dlr(token: str, body: Annotated[DeliveryReceipt, Body()]) -> dict[str, str]:
        return {"result": sink().receipt(receipt(body.model_dump()))}

    @routes.post(route_path(MO), summary="TextingHouse inbound message", responses=JSON_REPLY)
    def textinghouse_mo(token: str, body: Annotated[InboundMessage, Body()]) -> dict[str, str]:
        stored = sink().receive(mo(body.model_dump(by_alias=True)))
        return {"result": "stored" if stored else "duplicate"}

    return routes
