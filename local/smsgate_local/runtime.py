"""What Lambda, EventBridge and moto server do for the deployed stack, done in-process:
the moto server itself, the functions loaded from the template, the SQS event source of the
send function, the scheduled functions and the one-time schedules of held messages."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .harness import LambdaContext, import_file
from .stack import FUNCTION_TYPE, ROOT

log = logging.getLogger("smsgate_local")

Handler = Callable[[dict[str, Any], Any], Any]


# --------------------------------------------------------------------------- moto server


class ChangeSignal:
    """A counter moved by every change of one kind (moto server's DynamoDB writes, say),
    for workers that would otherwise poll: read ``value``, look, then ``wait_past(value)``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.value = 0

    def bump(self) -> None:
        with self._cond:
            self.value += 1
            self._cond.notify_all()

    def wait_past(self, seen: int, timeout: float) -> int:
        """Until ``value`` is not ``seen`` or ``timeout`` seconds passed; the value then."""
        with self._cond:
            self._cond.wait_for(lambda: self.value != seen, timeout)
            return self.value


# SQS actions that change what a queue holds (a receive only hides messages for a while)
_SQS_WRITES = frozenset(
    f"AmazonSQS.{action}"
    for action in (
        "SendMessage",
        "SendMessageBatch",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "PurgeQueue",
    )
)
# DynamoDB actions that change an item or a table (what a stream or a view may have to read)
_DYNAMODB_WRITES = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
        "CreateTable",
        "UpdateTable",
        "DeleteTable",
    }
)


class MotoServer:
    """moto server on a werkzeug thread: Nagle off (CONTRIBUTING.md, Running things), its socket
    closed on stop (moto's ThreadedMotoServer leaves it open). ``changes["dynamodb"]`` moves
    with every DynamoDB write it answers, ``changes["sqs"]`` with every SQS send, delete or
    visibility change, ``changes["scheduler"]`` with every change to a schedule, so the stream
    pollers, the view, the queue metrics and the hold scheduler wait instead of polling."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4566) -> None:
        self.host, self.port = host, port
        self.changes = {
            "dynamodb": ChangeSignal(),
            "sqs": ChangeSignal(),
            "scheduler": ChangeSignal(),
        }
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: list[Any] = []

    def start(self) -> str:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class Handler(MotoRequestHandler):  # type: ignore[misc, valid-type]
            disable_nagle_algorithm = True

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                return

        moto_app = DomainDispatcherApplication(create_backend_app)
        dynamodb_lock = threading.Lock()
        dynamodb_changed, schedules_changed = self.changes["dynamodb"], self.changes["scheduler"]
        sqs_changed = self.changes["sqs"]

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            # moto checks a DynamoDB condition, then writes, without a lock: two functions'
            # threads could both win a conditional write that DynamoDB serialises.
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target.startswith("DynamoDB"):
                with dynamodb_lock:
                    answer = list(moto_app(environ, start_response))
                if target.rpartition(".")[2] in _DYNAMODB_WRITES:
                    dynamodb_changed.bump()
                return answer
            if target in _SQS_WRITES:
                answer = list(moto_app(environ, start_response))
                sqs_changed.bump()
                return answer
            if environ.get("REQUEST_METHOD") != "GET" and "/scheduler/aws4_request" in (
                environ.get("HTTP_AUTHORIZATION", "")
            ):
                answer = list(moto_app(environ, start_response))
                schedules_changed.bump()
                return answer
            return moto_app(environ, start_response)

        self._server = make_server(self.host, self.port, app, True, request_handler=Handler)
        accept = self._server.get_request

        def get_request() -> Any:  # remember connections, to end kept-alive ones on stop
            conn, addr = accept()
            with self._lock:
                self._conns = [c for c in self._conns if c.fileno() != -1] + [conn]
            return conn, addr

        self._server.get_request = get_request
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="moto-server", daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:  # a kept-alive connection's handler thread waits for its next request
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# --------------------------------------------------------------------------- functions


@dataclass
class Function:
    logical_id: str
    name: str
    handler: Handler
    timeout: float
    events: dict[str, Any]
    lock: threading.Lock

    def invoke(self, event: dict[str, Any]) -> Any:
        """One invocation at a time, like one warm instance."""
        with self.lock:
            return self.invoke_instance(event)

    def invoke_instance(self, event: dict[str, Any]) -> Any:
        """An invocation beside others (an event source's concurrent instances)."""
        return self.handler(event, LambdaContext(int(self.timeout * 1000), self.name))


def load_module(code_uri: str, module: str) -> ModuleType:
    """Import functions/<dir>/<module>.py under a unique name, as Lambda loads it (the same
    name tests/conftest.py uses, so both share one module object)."""
    folder = (ROOT / code_uri).resolve()
    module_name = f"smsgate_function_{folder.name}"
    if module == "app" and module_name in sys.modules:
        return sys.modules[module_name]
    if module != "app":
        module_name += f"_{module}"
    return import_file(module_name, folder / f"{module}.py")


def load_functions(
    template: Mapping[str, Any], resolve: Callable[[Any], Any], prefix: str
) -> dict[str, Function]:
    globals_ = template.get("Globals", {}).get("Function", {})
    out = {}
    for lid, res in template.get("Resources", {}).items():
        if not isinstance(res, dict) or res.get("Type") != FUNCTION_TYPE:
            continue
        props = res.get("Properties", {})
        code_uri = str(props.get("CodeUri", globals_.get("CodeUri", "")))
        handler_spec = str(props.get("Handler", globals_.get("Handler", "app.lambda_handler")))
        module, _, attr = handler_spec.rpartition(".")
        if not (Path(ROOT / code_uri) / f"{module}.py").exists():
            log.warning("function %s: %s/%s.py not found, skipped", lid, code_uri, module)
            continue
        handler = getattr(load_module(code_uri, module), attr)
        events = {}
        for name, ev in (props.get("Events") or {}).items():
            try:
                events[name] = {
                    "Type": ev.get("Type"),
                    "Properties": resolve(ev.get("Properties", {})),
                }
            except KeyError:
                events[name] = {"Type": ev.get("Type"), "Properties": ev.get("Properties", {})}
        out[lid] = Function(
            lid,
            f"{prefix}-{lid}",
            handler,
            float(props.get("Timeout", globals_.get("Timeout", 3))),
            events,
            threading.Lock(),
        )
    return out


# --------------------------------------------------------------------------- SQS poller


class _Worker:
    """A daemon thread running the subclass's `_run` until `stop()` sets `stop_event`."""

    thread_name = "worker"
    stop_event: threading.Event
    thread: threading.Thread | None

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
            self.thread = None


class SqsPoller(_Worker):
    """Lambda's SQS event source for one function: long-polls, gathers up to ``batch_size``
    records within ``window`` seconds, invokes, deletes the successes; batch item failures (and
    every record of a failed invocation) stay, and come back when their visibility timeout
    ends (the handler may have changed it). The queue's own RedrivePolicy moves a message to
    the DLQ once received maxReceiveCount times (moto server applies it on receive).

    Up to ``concurrency`` invocations run at once (the event source's MaximumConcurrency), as
    Lambda scales a queue's consumers: the poller keeps receiving while fewer are busy. Each
    is one warm instance of the function; the function's code is shared, as its module is in
    one process (smsgate's send path keeps per-thread connections)."""

    thread_name = "sqs-poller"

    def __init__(
        self,
        sqs: Any,
        function: Function,
        queue_url: str,
        queue_arn: str,
        batch_size: int = 10,
        window: float = 0.0,
        on_batch: Callable[[dict[str, Any], Any], None] | None = None,
        concurrency: int = 1,
        wait_seconds: int = 1,
    ) -> None:
        self.sqs, self.function = sqs, function
        self.wait_seconds = max(0, min(20, wait_seconds))  # each receive's long poll
        self.queue_url, self.queue_arn = queue_url, queue_arn
        self.batch_size, self.window = max(1, batch_size), max(0.0, window)
        self.on_batch = on_batch
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.invocations = 0
        self.errors = 0
        self.concurrency = max(1, concurrency)
        self.in_flight = 0
        self.peak_in_flight = 0
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._count_lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, count),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=wait,
        )
        return list(answer.get("Messages", []))

    def _run(self) -> None:
        if self.concurrency > 1:
            self._run_concurrently()
            return
        while not self.stop_event.is_set():
            try:
                self.poll_once(self.wait_seconds)
            except Exception:
                self.errors += 1
                log.exception("send poller: poll failed")
                self.stop_event.wait(1.0)

    def _run_concurrently(self) -> None:
        """One thread receives; `concurrency` long-lived instance threads (a warm instance
        each, keeping its own connections) invoke the function with what it received."""
        batches: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
        self._workers = [
            threading.Thread(
                target=self._instance, args=(batches,), name="sqs-instance", daemon=True
            )
            for _ in range(self.concurrency)
        ]
        for worker in self._workers:
            worker.start()
        try:
            while not self.stop_event.is_set():
                if not self._slots.acquire(timeout=0.5):
                    continue  # every instance is busy
                try:
                    messages = self._gather(self.wait_seconds)
                except Exception:
                    self._slots.release()
                    self.errors += 1
                    log.exception("send poller: poll failed")
                    self.stop_event.wait(1.0)
                    continue
                if not messages:
                    self._slots.release()
                    continue
                batches.put(messages)
        finally:
            for _ in self._workers:
                batches.put(None)

    def _instance(self, batches: queue.Queue[list[dict[str, Any]] | None]) -> None:
        while True:
            messages = batches.get()
            if messages is None:
                return
            with self._count_lock:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                self._invoke(messages, exclusive=False)
            except Exception:
                self.errors += 1
                log.exception("send poller: batch failed")
            finally:
                with self._count_lock:
                    self.in_flight -= 1
                self._slots.release()

    def stop(self) -> None:
        super().stop()
        for worker in self._workers:
            worker.join(timeout=10)

    def _gather(self, wait: int) -> list[dict[str, Any]]:
        messages = self._receive(self.batch_size, wait)
        if not messages:
            return []
        deadline = time.monotonic() + self.window
        while len(messages) < self.batch_size and not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = self._receive(self.batch_size - len(messages), 0)
            if more:
                messages.extend(more)
            else:
                self.stop_event.wait(min(0.1, left))
        return messages

    def poll_once(self, wait: int = 1) -> int:
        messages = self._gather(wait)
        if not messages:
            return 0
        return self._invoke(messages)

    def _invoke(self, messages: list[dict[str, Any]], exclusive: bool = True) -> int:
        event = {"Records": [self._record(m) for m in messages]}
        failed: set[str]
        response: Any = None
        try:
            response = (
                self.function.invoke(event) if exclusive else self.function.invoke_instance(event)
            )
            failed = {
                str(f.get("itemIdentifier")) for f in (response or {}).get("batchItemFailures", [])
            }
        except Exception:
            self.errors += 1
            log.exception("send function raised: the batch stays on the queue")
            failed = {m["MessageId"] for m in messages}
        self.invocations += 1
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(done[i : i + 10])
                ],
            )
        if self.on_batch is not None:
            self.on_batch(event, response)
        return len(messages)

    def _record(self, m: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {
                k: {
                    "stringValue": v.get("StringValue"),
                    "binaryValue": v.get("BinaryValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": v.get("DataType"),
                }
                for k, v in (m.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": "us-east-1",
        }


# --------------------------------------------------------------------------- DynamoDB streams


class StreamPoller(_Worker):
    """Lambda's DynamoDB Streams event source for one function and one table's stream: reads
    each shard in order, invokes with up to ``batch_size`` records in Lambda's event shape
    (``eventSourceARN`` added, ``ApproximateCreationDateTime`` in epoch seconds), and reads
    again from the lowest batch item failure (or the batch's first record when the function
    raised), so a shard never skips ahead. After ``max_retries`` the batch's position goes to
    ``dlq_url`` (what an OnFailure destination receives: the shard and sequence range, not the
    records) and the shard moves on. Not done locally: BisectBatchOnFunctionError.

    Each read starts from a new iterator at the position kept here (after the last record
    done): moto replaces a table's stream object when it rolls back a failed transaction (a
    duplicate receipt), which strands every iterator handed out before. ``forget`` is told
    each iterator once used (moto keeps every one it hands out otherwise).

    With ``changes`` (moto server's DynamoDB writes), an idle poller waits for the next write
    (reading again at least every ``idle`` seconds) instead of reading every ``interval``."""

    thread_name = "stream-poller"

    def __init__(
        self,
        streams: Any,
        function: Function,
        stream_arn: str,
        batch_size: int = 100,
        window: float = 0.0,
        starting_position: str = "TRIM_HORIZON",
        max_retries: int = 3,
        sqs: Any = None,
        dlq_url: str | None = None,
        interval: float = 0.25,
        forget: Callable[[str], None] | None = None,
        changes: ChangeSignal | None = None,
        idle: float = 30.0,
    ) -> None:
        self.streams, self.function, self.stream_arn = streams, function, stream_arn
        self.batch_size, self.window = max(1, min(batch_size, 1000)), max(0.0, window)
        self.starting_position = starting_position
        self.max_retries = max_retries
        self.sqs, self.dlq_url = sqs, dlq_url
        self.interval = interval
        self.forget = forget or (lambda iterator: None)
        self.changes, self.idle = changes, idle
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        # shard id -> {"after": last sequence done, "at": sequence to read again, "tries",
        # "start": the first iterator (LATEST: a position no sequence number names yet)}
        self._shards: dict[str, dict[str, Any]] = {}
        self.invocations = 0
        self.errors = 0
        self.given_up = 0

    def _run(self) -> None:
        while not self.stop_event.is_set():
            seen = self.changes.value if self.changes is not None else 0
            try:
                if not self.poll_once():
                    self._idle(seen)
            except Exception:
                self.errors += 1
                log.exception("stream poller %s: poll failed", self.function.logical_id)
                self.stop_event.wait(1.0)

    def _idle(self, seen: int) -> None:
        """Until a write after ``seen`` (or ``idle`` seconds, or stop), then no sooner than
        ``interval`` after this empty read (a burst of writes is one more read, not many);
        without ``changes``, one interval."""
        started = time.monotonic()
        if self.changes is not None:
            deadline = started + self.idle
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                if self.changes.wait_past(seen, min(1.0, self.idle)) != seen:
                    break
        self.stop_event.wait(max(0.0, started + self.interval - time.monotonic()))

    def _iterator(self, shard: str, state: dict[str, Any]) -> str:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard}
        if state["at"] is not None:
            kwargs.update(ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=state["at"])
        elif state["after"] is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=state["after"])
        elif state["start"] is not None:
            return str(state["start"])  # LATEST before any record: the position first taken
        else:
            kwargs["ShardIteratorType"] = self.starting_position
        iterator = str(self.streams.get_shard_iterator(**kwargs)["ShardIterator"])
        if self.starting_position == "LATEST" and state["after"] is None and state["at"] is None:
            state["start"] = iterator
        return iterator

    def poll_once(self) -> int:
        """One read of every shard (and one invocation per shard that has records); returns
        how many records were handed to the function."""
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        handled = 0
        for shard in shards.get("Shards", []):
            state = self._shards.setdefault(
                shard["ShardId"], {"after": None, "at": None, "tries": 0, "start": None}
            )
            handled += self._poll_shard(shard["ShardId"], state)
        return handled

    def _read(self, shard: str, state: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        iterator = self._iterator(shard, state)
        answer = self.streams.get_records(ShardIterator=iterator, Limit=limit)
        records = list(answer.get("Records", []))
        following = answer.get("NextShardIterator")
        self.forget(iterator)
        if state["start"] is not None and not records and following:
            state["start"] = following  # LATEST, still nothing: keep that position
        elif following:
            self.forget(str(following))
        return records

    def _poll_shard(self, shard: str, state: dict[str, Any]) -> int:
        records = self._read(shard, state, self.batch_size)
        if not records:
            return 0
        deadline = time.monotonic() + self.window
        while (
            len(records) < self.batch_size
            and time.monotonic() < deadline
            and not self.stop_event.wait(min(0.1, self.window))
        ):
            more = {**state, "at": None, "after": records[-1]["dynamodb"]["SequenceNumber"]}
            records += self._read(shard, more, self.batch_size - len(records))
        event = {"Records": [self._record(r) for r in records]}
        first = records[0]["dynamodb"]["SequenceNumber"]
        last = records[-1]["dynamodb"]["SequenceNumber"]
        try:
            response = self.function.invoke(event)
            failures = (response or {}).get("batchItemFailures", [])
            failed = [str(f.get("itemIdentifier")) for f in failures]
        except Exception:
            self.errors += 1
            log.exception("%s raised: the batch is read again", self.function.logical_id)
            failed = [first]
        self.invocations += 1
        state["start"] = None
        if not failed:
            state.update(after=last, at=None, tries=0)
            return len(records)
        state["tries"] += 1
        if state["tries"] > self.max_retries:
            self._give_up(shard, min(failed, key=int), last, len(records))
            state.update(after=last, at=None, tries=0)
        else:
            state["at"] = min(failed, key=int)
        return len(records)

    def _give_up(self, shard: str, start: str, end: str, size: int) -> None:
        self.given_up += 1
        log.error(
            "%s: stream batch %s..%s given up after %d retries",
            self.function.logical_id,
            start,
            end,
            self.max_retries,
        )
        if self.sqs is None or not self.dlq_url:
            return
        body = {
            "requestContext": {
                "functionArn": f"arn:aws:lambda:us-east-1:000000000000:function:"
                f"{self.function.name}",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": self.max_retries + 1,
            },
            "version": "1.0",
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": start,
                "endSequenceNumber": end,
                "batchSize": size,
                "streamArn": self.stream_arn,
            },
        }
        import json

        self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps(body))

    def _record(self, record: dict[str, Any]) -> dict[str, Any]:
        data = dict(record["dynamodb"])
        created = data.get("ApproximateCreationDateTime")
        if isinstance(created, dt.datetime):  # boto3 parses it; Lambda hands epoch seconds
            data["ApproximateCreationDateTime"] = int(created.timestamp())
        return {
            "eventID": record.get("eventID"),
            "eventName": record.get("eventName"),
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", "us-east-1"),
            "dynamodb": data,
            "eventSourceARN": self.stream_arn,
        }


def streams_client(session: Any, endpoint_url: str | None = None) -> Any:
    """A DynamoDB Streams client moto answers: botocore's account-based streams endpoint
    (<account>.streams-ddb.<region>...) is not one in-process moto 5.2 recognises."""
    from botocore.config import Config

    return session.client(
        "dynamodbstreams",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        config=Config(account_id_endpoint_mode="disabled"),
    )


# --------------------------------------------------------------------------- schedules

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """``rate(15 minutes)`` -> 900; None for a cron() expression (not run locally)."""
    m = _RATE.match(expression.strip())
    if not m:
        return None
    return int(m.group(1)) * _UNIT[m.group(2).rstrip("s")]


def scheduled_event(function: Function, rule: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{rule}"],
        "detail": {},
    }


@dataclass
class ScheduledRun:
    function: Function
    event_name: str
    expression: str
    interval: float
    next_at: float
    last_at: float | None = None
    last_result: Any = None
    last_error: str | None = None
    runs: int = 0


class Scheduler:
    """EventBridge for the local stack: runs the template's Schedule events at their rate (or
    every ``fast`` seconds), and fires due one-time schedules (``at(...)``) of the hold group
    by sending their Input to their target queue, then deleting them. With ``hold_changes``
    (moto server's schedule changes) the hold group is read again only after a change, when
    the earliest schedule it holds is due, or every ``hold_recheck`` seconds; else every tick."""

    def __init__(
        self,
        functions: Mapping[str, Function],
        fast: float | None = None,
        scheduler_client: Any = None,
        sqs: Any = None,
        hold_group: str | None = None,
        queue_urls_by_arn: Mapping[str, str] | None = None,
        first_run_delay: float = 1.0,
        tick: float = 1.0,
        hold_changes: ChangeSignal | None = None,
        hold_recheck: float = 60.0,
    ) -> None:
        self.runs: list[ScheduledRun] = []
        now = time.monotonic()
        for fn in functions.values():
            for name, ev in fn.events.items():
                if ev.get("Type") not in ("Schedule", "ScheduleV2"):
                    continue
                props = ev.get("Properties", {})
                if props.get("Enabled") is False or props.get("State") == "DISABLED":
                    continue
                expr = str(props.get("Schedule") or props.get("ScheduleExpression") or "")
                interval = rate_seconds(expr)
                if interval is None:
                    log.warning(
                        "%s.%s: %r is not a rate(); not run locally", fn.logical_id, name, expr
                    )
                    continue
                if fast:
                    interval = min(interval, fast)
                self.runs.append(ScheduledRun(fn, name, expr, interval, now + first_run_delay))
        self.scheduler, self.sqs = scheduler_client, sqs
        self.hold_group = hold_group
        self.queue_urls_by_arn = dict(queue_urls_by_arn or {})
        self.tick = tick
        self.fired_holds = 0
        self.hold_changes, self.hold_recheck = hold_changes, hold_recheck
        self._holds_seen: int | None = None  # hold_changes' value when the group was read
        self._next_hold: dt.datetime | None = None  # the earliest schedule not due then
        self._holds_read_at = float("-inf")
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=35)
            self.thread = None

    def run_now(self, logical_id: str) -> Any:
        for run in self.runs:
            if run.function.logical_id == logical_id:
                return self._invoke(run)
        raise KeyError(f"no scheduled function {logical_id!r}")

    def _invoke(self, run: ScheduledRun) -> Any:
        run.last_at = time.time()
        run.runs += 1
        try:
            run.last_result = run.function.invoke(scheduled_event(run.function, run.event_name))
            run.last_error = None
        except Exception as exc:
            run.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("scheduled function %s failed", run.function.logical_id)
        return run.last_result

    def _run(self) -> None:
        while not self.stop_event.wait(self.tick):
            now = time.monotonic()
            for run in self.runs:
                if now >= run.next_at:
                    run.next_at = now + run.interval
                    self._invoke(run)
            try:
                if self._holds_to_read():
                    self.fire_due_holds()
            except Exception:
                log.exception("firing held-message schedules failed")

    def _holds_to_read(self) -> bool:
        if self.hold_changes is None or self.hold_changes.value != self._holds_seen:
            return True
        if self._next_hold is not None and dt.datetime.now(dt.UTC) >= self._next_hold:
            return True
        return time.monotonic() - self._holds_read_at >= self.hold_recheck

    def fire_due_holds(self, now: dt.datetime | None = None) -> int:
        if not (self.scheduler and self.sqs and self.hold_group):
            return 0
        seen = self.hold_changes.value if self.hold_changes is not None else None
        now = now or dt.datetime.now(dt.UTC)
        fired = 0
        next_hold: dt.datetime | None = None
        kwargs: dict[str, Any] = {"GroupName": self.hold_group}
        while True:
            page = self.scheduler.list_schedules(**kwargs)
            for summary in page.get("Schedules", []):
                sched = self.scheduler.get_schedule(Name=summary["Name"], GroupName=self.hold_group)
                due = _at_time(
                    sched.get("ScheduleExpression", ""), sched.get("ScheduleExpressionTimezone")
                )
                if due is None or due > now or sched.get("State") == "DISABLED":
                    if due is not None and due > now and sched.get("State") != "DISABLED":
                        next_hold = due if next_hold is None else min(next_hold, due)
                    continue
                target = sched.get("Target", {})
                url = self.queue_urls_by_arn.get(target.get("Arn", ""))
                if url is None:
                    log.warning(
                        "schedule %s targets %s: not a local queue",
                        summary["Name"],
                        target.get("Arn"),
                    )
                    continue
                self.sqs.send_message(QueueUrl=url, MessageBody=target.get("Input") or "{}")
                if sched.get("ActionAfterCompletion", "NONE") == "DELETE":
                    self.scheduler.delete_schedule(Name=summary["Name"], GroupName=self.hold_group)
                else:
                    self.scheduler.update_schedule(
                        Name=summary["Name"],
                        GroupName=self.hold_group,
                        ScheduleExpression=sched["ScheduleExpression"],
                        FlexibleTimeWindow=sched.get("FlexibleTimeWindow", {"Mode": "OFF"}),
                        Target=target,
                        State="DISABLED",
                    )
                fired += 1
                log.info("held message released by schedule %s", summary["Name"])
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        self.fired_holds += fired
        self._holds_seen, self._next_hold = seen, next_hold
        self._holds_read_at = time.monotonic()
        return fired


def _at_time(expression: str, timezone: str | None) -> dt.datetime | None:
    m = re.match(r"^at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)$", expression.strip())
    if not m:
        return None
    naive = dt.datetime.fromisoformat(m.group(1))
    try:
        from zoneinfo import ZoneInfo

        tz: dt.tzinfo = ZoneInfo(timezone) if timezone else dt.UTC
    except Exception:
        tz = dt.UTC
    return naive.replace(tzinfo=tz).astimezone(dt.UTC)
