"""One SQS batch of the send function: routed to the lanes, or sent from a lane.

Records from the producers' send queue are parsed and routed: each goes to the lane of the
provider that will carry it (one SendMessageBatch per lane), a body that can never be sent is
recorded `failed` there and then. Records from a provider's lane are sent: up to the lane's
parallelism at once (one kept-alive connection per worker; a provider with a connection limit
one at a time, holding one of the deployment's connection slots), each through
`SendService.process` — claimed before its request, recorded after it. Every record's result
is decided in `run()`; Powertools' batch processor then reads them one by one (`handle`), so a
partial batch response still names exactly the records that come back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from ..clients import NoConnectionSlot
from ..observability import count, logger
from ..providers import PROVIDERS, is_test_number
from ..queue_body import BadBody, Cancel, Job, parse
from ..retries import describe
from ..sending import Done, Forward, Result, Retry, lane_route
from ..status import Status
from .base import DEADLINE_MARGIN_MS
from .outcomes import backoff
from .service import SendService

SLOT_WAIT_SECONDS = 2.0  # how long a sender waits for a connection slot
SLOT_REQUEUE_DELAY = 10  # seconds before a message put back for want of a slot is seen again


class DeadlineReached(Exception):
    """Too little time is left in the invocation to send another message safely."""


class OptOutsUnreadable(Exception):
    """The batch's opt-outs could not be read: no message of it may be sent."""


class RetryLater(Exception):
    def __init__(self, retry: Retry) -> None:
        super().__init__(retry.reason)
        self.retry = retry


_executors: dict[tuple[int, int], ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def executor(workers: int) -> ThreadPoolExecutor:
    """The invoking thread's pool of `workers` send threads, kept across warm invocations
    (each keeps its own provider connections). On Lambda one thread invokes; where several
    instances share a process (the local stack, tests) each has its own pool, as it would
    have its own process."""
    key = (workers, threading.get_ident())
    with _executors_lock:
        pool = _executors.get(key)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send-worker")
            _executors[key] = pool
        return pool


def close_executors() -> None:
    """Stop every send pool of this process (a local stack or a test run ending)."""
    with _executors_lock:
        pools = list(_executors.values())
        _executors.clear()
    for pool in pools:
        pool.shutdown(wait=True)


def receive_count(record: Mapping[str, Any]) -> int:
    return int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))


class Batch:
    def __init__(
        self,
        service: SendService,
        records: list[Mapping[str, Any]],
        remaining_ms: Callable[[], int],
    ) -> None:
        self.service, self.remaining_ms = service, remaining_ms
        self.records = list(records)
        arn = str(self.records[0].get("eventSourceARN", "")) if self.records else ""
        self.lane = service.lane_of(arn)
        self.routing = self.lane is None and service.routes_to_lanes
        default = service.settings.default_provider
        self.items: dict[str, Job | BadBody | Cancel] = {
            r["messageId"]: parse(r.get("body", ""), r["messageId"], default) for r in records
        }
        jobs = [i for i in self.items.values() if isinstance(i, Job)]
        numbers = [i.to for i in jobs if not is_test_number(i.to)]
        self.opted_out: set[str] = set()
        self.guard = service.new_guard([], service.clock())
        # Why no record of this batch can be sent (its opt-outs could not be read), if so:
        # each record then fails on its own, with that reason, rather than the invocation.
        self.unavailable = ""
        try:
            # The router reads nothing: the lane reads its batch's opt-outs and health (and
            # hands a message on when its provider turns out to be cooling down).
            if not self.routing:
                self._read_opt_outs_and_health(numbers)
        except Exception as exc:
            self.unavailable = describe(exc)
        self.delays: dict[str, int] = {}
        self.results: dict[str, Result | BaseException] = {}

    def _read_opt_outs_and_health(self, numbers: list[str]) -> None:
        service = self.service
        health = service.health
        providers = service.clients.configured() if health is not None else []
        if numbers or (providers and any(isinstance(i, Job) for i in self.items.values())):
            # One round trip for the batch: its opt-outs, its providers' health and the
            # protection counters of its recipients and providers (both in the health table).
            now = service.clock()
            also = dict(health.request(providers)) if health is not None else {}
            counter_keys = service.guard_keys(numbers, now)
            if counter_keys and service.counters is not None:
                table = service.counters.table
                keys = [*also.get(table, {}).get("Keys", []), *counter_keys]
                also[table] = {"Keys": keys, "ConsistentRead": True}
            self.opted_out, other = service.store.opted_out_and(numbers, also)
            items = other.get(health.table, []) if health is not None else []
            counters = service.counters
            counted = [i for i in items if counters is not None and counters.is_counter(i)]
            if health is not None:
                health.accept(providers, [i for i in items if i not in counted])
            self.guard = service.new_guard(counted, now, read_spend=bool(counter_keys))
        # how many of the batch's messages go to each number (protection's fast path)
        self.guard.planned.update(i.to for i in self.items.values() if isinstance(i, Job))

    # --- deciding every record ---------------------------------------------------------------

    def run(self) -> None:
        """Decide every record's result (before Powertools asks for them)."""
        if self.routing:
            self._route_all()
        else:
            self._send_all()

    def _route_all(self) -> None:
        lanes: dict[str, list[Forward]] = {}
        for record in self.records:
            message_id, item = record["messageId"], self.items[record["messageId"]]
            if isinstance(item, BadBody | Cancel):  # decided here: no lane would take it
                self._decide(record, partial(self.service.process, item, False, 1))
                continue
            try:
                choice = self.service.choose_lane(item)
            except Exception as exc:
                self._decide_failure(record, exc)
                continue
            lanes.setdefault(choice.provider, []).append(
                Forward(message_id, item.body, choice.providers, choice.rule)
            )
        records = {r["messageId"]: r for r in self.records}
        for provider, entries in lanes.items():
            failed = self.service.forward(provider, entries)
            for entry in entries:
                record = records[entry.key]
                if entry.key in failed:
                    retry = Retry(backoff(0, receive_count(record)), "could not reach its lane")
                    self._settle(record, retry)
                else:
                    self.results[entry.key] = Done(Status.QUEUED.value, "routed")
            count("MessagesRouted", provider, value=len(entries) - len(failed))

    def _send_all(self) -> None:
        work = self._defer_repeats(self.records)
        service = self.service
        workers = service.parallelism(self.lane)
        jobs = [r for r in work if isinstance(self.items[r["messageId"]], Job)]
        if self.lane is not None and jobs and service.clients.limited(self.lane):
            hold = self.remaining_ms() / 1000 + 5
            try:
                with service.clients.connection(self.lane, hold, wait=SLOT_WAIT_SECONDS):
                    self._each(work, 1)
            except NoConnectionSlot:
                self._wait_for_a_slot(work)
            return
        self._each(work, workers)

    def _wait_for_a_slot(self, work: list[Mapping[str, Any]]) -> None:
        """No connection slot of the lane's provider came free: the batch comes back in a few
        seconds. A record at its last receive is put back on a lane instead (a fresh receive
        count), so waiting for a slot never walks a message to the dead-letter queue."""
        reason = f"waiting for a {self.lane} connection slot"
        logger.info("no connection slot free: the batch comes back", extra={"lane": self.lane})
        last = self.service.max_receive_count - 1
        lanes: dict[str, list[Forward]] = {}
        for record in work:
            key, item = record["messageId"], self.items[record["messageId"]]
            if key in self.results or not isinstance(item, Job) or receive_count(record) < last:
                continue
            route = lane_route(record)
            if route is None:  # put on the lane by hand: routed again
                choice = self.service.choose_lane(item)
                target, route = choice.provider, (choice.providers, choice.rule)
            else:
                target = str(self.lane)
            lanes.setdefault(target, []).append(Forward(key, item.body, *route))
        put_back: set[str] = set()
        for target, entries in lanes.items():
            failed = self.service.forward(target, entries, delay=SLOT_REQUEUE_DELAY)
            put_back.update(e.key for e in entries if e.key not in failed)
        for record in work:
            if record["messageId"] in put_back:
                self.results[record["messageId"]] = Done(Status.QUEUED.value, reason)
            elif record["messageId"] not in self.results:
                self._settle(record, Retry(2, reason))

    def _each(self, work: list[Mapping[str, Any]], workers: int) -> None:
        if workers <= 1 or len(work) <= 1:
            for record in work:
                self._send_one(record)
            return
        list(executor(workers).map(self._send_one, work))

    def _defer_repeats(self, records: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """A provider that refuses the same text to the same number within a few seconds
        (its `same_text_interval`) gets only the first of such repeats from one batch; the others
        come back after that interval instead of being refused."""
        interval = PROVIDERS[self.lane].same_text_interval if self.lane else 0
        if not interval:
            return records
        seen: set[tuple[str, str]] = set()
        work = []
        for record in records:
            item = self.items[record["messageId"]]
            key = (item.to, item.message.text) if isinstance(item, Job) else None
            if key is not None and key in seen:
                self._settle(
                    record, Retry(interval, "the same text to the same number is sent once a batch")
                )
                continue
            if key is not None:
                seen.add(key)
            work.append(record)
        return work

    def _send_one(self, record: Mapping[str, Any]) -> None:
        service = self.service
        message_id = record["messageId"]
        item = self.items[message_id]
        if self.remaining_ms() < service.slowest_call_ms + DEADLINE_MARGIN_MS:
            self.delays[message_id] = 0
            self._failed(item, receive_count(record), "deadline", "too little time left")
            self.results[message_id] = DeadlineReached("too little time left in this invocation")
            return
        opted = isinstance(item, Job) and item.to in self.opted_out
        routed = lane_route(record) if self.lane is not None else None

        def process() -> Result:
            if self.unavailable and isinstance(item, Job):
                raise OptOutsUnreadable(self.unavailable)
            return service.process(
                item, opted, receive_count(record), self.lane, routed, self.guard
            )

        self._decide(record, process)

    def _decide(self, record: Mapping[str, Any], work: Callable[[], Result]) -> None:
        try:
            result = work()
        except Exception as exc:
            self._decide_failure(record, exc)
            return
        self._settle(record, result)

    def _settle(self, record: Mapping[str, Any], result: Result) -> None:
        message_id = record["messageId"]
        self.results[message_id] = result
        if isinstance(result, Retry):
            self.delays[message_id] = result.delay
            self._failed(
                self.items[message_id], receive_count(record), "retries_exhausted", result.reason
            )

    def _decide_failure(self, record: Mapping[str, Any], exc: Exception) -> None:
        message_id = record["messageId"]
        reason = self.unavailable if isinstance(exc, OptOutsUnreadable) else describe(exc)
        self._failed(self.items[message_id], receive_count(record), "internal_error", reason)
        self.results[message_id] = exc

    def _failed(
        self, item: Job | BadBody | Cancel, receive_count: int, code: str, reason: str
    ) -> None:
        """A record goes back to SQS. On its last receive it goes on to the dead-letter queue
        next: say so in an ERROR line and on the record, so the reason is never lost."""
        service = self.service
        last = receive_count >= service.max_receive_count
        if isinstance(item, Cancel):  # the cancel comes back (or is dead-lettered), not a message
            log = logger.error if last else logger.warning
            log("cancel not applied", extra={"message_id": item.id, "reason": reason, "last": last})
            return
        extra = {
            "message_id": item.id,
            "reason": reason,
            "receive_count": receive_count,
            "provider": item.provider,
        }
        if not last:
            if code == "internal_error":
                logger.warning("send failed: the message comes back later", extra=extra)
            return
        logger.error("the message goes to the dead-letter queue", extra=extra)
        create = service.dead_letter_record(item)
        try:
            service.store.note_dead_letter(item.id, code, reason, create)
        except Exception as exc:  # the ERROR line above still says why
            logger.error(
                "could not record the dead-letter reason",
                extra={"message_id": item.id, "error": describe(exc)},
            )

    # --- Powertools' side ----------------------------------------------------------------------

    def handle(self, record: Any) -> str:
        """Powertools' record handler: returns on success, raises to fail the record."""
        message_id = record["messageId"]
        result = self.results.get(message_id)
        if result is None:  # never reached: the invocation ran out of time
            self.delays[message_id] = 0
            raise DeadlineReached("too little time left in this invocation")
        if isinstance(result, BaseException):
            raise result
        if isinstance(result, Retry):
            raise RetryLater(result)
        return result.status

    def finish(self, response: Mapping[str, Any], records: list[Mapping[str, Any]]) -> None:
        """Set each failed record's visibility from its outcome's delay."""
        handles = {r["messageId"]: r.get("receiptHandle", "") for r in records}
        if self.service.health is not None:
            try:
                self.service.health.flush()
            except Exception:  # health is advice: losing one batch's counts loses no message
                logger.exception("could not record provider health")
        try:
            self.service.flush_protection(self.guard)
        except Exception:  # the next batch of this sender writes them (they stay in its ledger)
            logger.exception("could not record the batch's spend")
        for failure in response.get("batchItemFailures", []):
            message_id = failure["itemIdentifier"]
            delay = self.delays.get(message_id)
            if delay is None:  # an unexpected error: back off like any retry
                delay = backoff(0, 1)
            try:
                self.service.change_visibility(handles[message_id], delay, self.lane)
            except Exception:  # the record still returns, just sooner
                logger.exception("could not set the retry delay", extra={"message_id": message_id})
