"""Lanes: the router puts each message of the send queue on the lane (SQS queue) of the
first provider that can carry it now; each lane's sender sends through its own provider only."""

from __future__ import annotations

import json

from ..observability import logger
from ..providers import (
    PROVIDERS,
)
from ..queue_body import Job
from ..queues import SQS_BATCH
from ..retries import describe
from ..sending import (
    ROUTE_ATTRIBUTE,
    Forward,
    LaneChoice,
)
from .candidates import Candidates


class Lanes(Candidates):
    """Routing messages to the providers' lanes."""

    @property
    def routes_to_lanes(self) -> bool:
        """True when the send queue's messages go on to the providers' lanes (the stack has
        them); without lanes the send function sends from the send queue itself."""
        return bool(self.settings.lane_urls)

    def lane_of(self, queue_arn: str) -> str | None:
        """The provider whose lane `queue_arn` is (None: the producers' send queue)."""
        name = queue_arn.rsplit(":", 1)[-1]
        for provider, url in self.settings.lane_urls.items():
            if name and url.rstrip("/").endswith("/" + name):
                return provider
        return None

    def parallelism(self, provider: str | None) -> int:
        """Messages of one batch sent at once: one per connection the provider allows."""
        if provider is not None and PROVIDERS[provider].max_connections:
            return 1
        return self.settings.send_parallelism

    def choose_lane(self, item: Job) -> LaneChoice:
        """Where the router sends `item`: the lane of the first provider that can carry it
        now (its rules accept it and it is not cooling down), with the candidates after it
        (for failover). A message no provider can take goes to its first choice's lane,
        which records why it cannot be sent."""
        route = self.route(item, item.sms())
        ready = [o.provider for o in route.ready]
        healthy = [p for p in ready if self.health is None or not self.health.cooling(p)]
        if healthy:
            first = healthy[0]
        elif ready:
            first = ready[0]
        else:
            first = route.refused[0].provider
        rest = [p for p in ready if p != first]
        return LaneChoice(first, (first, *rest), route.plan.rule)

    def forward(self, provider: str, entries: list[Forward], delay: int = 0) -> set[str]:
        """Put `entries` on `provider`'s lane (SendMessageBatch, 10 per call), visible after
        `delay` seconds. Returns the keys of the entries SQS did not take (their records come
        back and are routed again; a copy that did get through is one the claim lets send
        only once)."""
        url = self.settings.lane_urls[provider]
        failed: set[str] = set()
        for start in range(0, len(entries), SQS_BATCH):
            chunk = entries[start : start + SQS_BATCH]
            routes = [
                {ROUTE_ATTRIBUTE: json.dumps({"providers": list(e.providers), "rule": e.rule})}
                for e in chunk
            ]
            try:
                refused = self.queues.send_batch(url, [e.body for e in chunk], routes, delay)
            except Exception as exc:
                logger.warning(
                    "could not route to the lane", extra={"lane": provider, "error": describe(exc)}
                )
                refused = set(range(len(chunk)))
            failed.update(chunk[n].key for n in refused)
        return failed

    def change_visibility(self, receipt_handle: str, delay: int, lane: str | None = None) -> None:
        url = self.settings.lane_urls.get(lane, "") if lane else self.settings.send_queue_url
        if url:
            self.queues.change_visibility(url, receipt_handle, delay)
