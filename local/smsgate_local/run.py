"""`make run`: the whole gateway on one machine, in one process, on 127.0.0.1 only.

moto server (AWS, with the template's resources), the three provider simulators, the local
API Gateway for the callbacks function, Lambda's SQS event source for the send function, the
scheduled functions and held-message schedules, EMF metrics into moto CloudWatch with the
template's alarms evaluated, a small control endpoint (for `make demo`), a live view, and
`.local/stack.json` with every endpoint. Ctrl-C / SIGTERM stops all of it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any

from .ports import busy_message, busy_ports
from .resource_policy import callbacks_policy
from .stack import ROOT, Stack, _Resolver, build_stack, load_template, resources_of_type

log = logging.getLogger("smsgate_local")

PROVIDERS = ("clubtexting", "grouptexting", "textinghouse")
DEFAULT_PORTS = {
    "moto": 4566,
    "api": 3000,
    "control": 8700,
    "clubtexting": 8701,
    "grouptexting": 8702,
    "textinghouse": 8703,
}
SIM_USER, SIM_PASS = "smsgate", "local-secret"
# Local low-credit alarms, used only while the template defines none on CreditBalance.
LOCAL_CREDIT_PROVIDERS = ("grouptexting", "textinghouse")


# Template parameters the local stack sets: the simulators call back from loopback, not from
# Club Texting's documented addresses (the resource policy is evaluated as deployed).
LOCAL_PARAMETERS = {"ClubTextingCallbackCidrs": "127.0.0.0/8"}


@dataclass
class Options:
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    prefix: str = "smsgate-local"
    state_dir: Path = ROOT / ".local"
    fast: bool = False
    fast_interval: float = 3.0  # scheduled functions, with --fast
    alarm_interval: float = 10.0  # alarm evaluation (2 s with --fast)
    fast_alarm_period: float = 6.0  # with --fast, every alarm Period is at most this
    credit_threshold: float = 100.0  # local low-credit alarms (template has none)
    view: bool = True
    write_state: bool = True
    dlr_delay: float = 0.2
    callback_token: str | None = None
    long_poll: int = 5  # seconds each idle SQS receive waits (the event sources, the events tap)
    credit_recheck: float = 10.0  # a balance that fell re-read after this (a top-up: at once)


class LocalStack:
    """``LocalStack(Options(...)).start()`` ... ``.stop()``; ``.info`` is stack.json."""

    def __init__(self, options: Options | None = None) -> None:
        self.o = options or Options()
        self.info: dict[str, Any] = {}
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self._threads_stop = threading.Event()
        self.events: list[str] = []  # alarm changes etc., shown by the view
        self.bus_events: list[str] = []  # the view's recent events (numbers masked, no text)
        self.feed: list[str] = []  # both, in the order they came, each with its time
        # without the live view, each line of the feed is printed here as it comes
        self.echo: IO[str] | None = None if self.o.view else sys.__stdout__
        self.lock = threading.Lock()
        self._api_ready = threading.Event()
        self.functions: dict[str, Any] = {}
        self._view_cache: dict[str, Any] = {}

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _on_stop(self, name: str, fn: Callable[[], None]) -> None:
        self._stops.append((name, fn))

    def _start(self) -> None:
        o = self.o
        o.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = o.state_dir / "smsgate.log"
        self.log_file: IO[str] = open(self.log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._on_stop("log file", self.log_file.close)
        handler = logging.StreamHandler(self.log_file)
        handler.setFormatter(
            logging.Formatter(
                '{"timestamp":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s",'
                '"message":%(message_json)s}'
            )
        )
        handler.addFilter(_json_message)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._on_stop("logging", lambda: log.removeHandler(handler))

        # AWS: everything talks to moto server, with dummy credentials
        self._saved_env = dict(os.environ)
        self._on_stop("environment", self._restore_env)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_DEFAULT_PROFILE", None)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_SESSION_TOKEN": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true",
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        from .harness import cheap_transaction_snapshots
        from .runtime import MotoServer

        # moto deep-copies every table a transaction touches: without this the local stack
        # slows down and grows by gigabytes as its tables fill (the tests use it too).
        cheap_transaction_snapshots()
        moto = MotoServer(o.host, o.ports.get("moto", 4566))
        endpoint = moto.start()
        self.moto = moto
        self._on_stop("moto server", moto.stop)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        log.info("moto server on %s", endpoint)

        import boto3

        session = boto3.Session(region_name="us-east-1")
        self.clients: dict[str, Any] = {}

        def client(service: str) -> Any:
            if service not in self.clients:
                self.clients[service] = session.client(service, endpoint_url=endpoint)
            return self.clients[service]

        self.client = client
        self._on_stop("AWS clients", lambda: [c.close() for c in self.clients.values()])

        # the local API Gateway first (the simulators need its URL), its handler set later
        from .apigw import LocalRestApi

        template = load_template()
        self.template = template
        routes: list[tuple[str, str, str]] = []  # (method, path, function logical id)
        for lid, res in resources_of_type(template, "AWS::Serverless::Function").items():
            for ev in (res.get("Properties", {}).get("Events") or {}).values():
                if ev.get("Type") == "Api":
                    p = ev.get("Properties", {})
                    routes.append((str(p["Method"]).upper(), str(p["Path"]), lid))
        self.routes = routes
        self._route_fn = {(m, p): lid for m, p, lid in routes}
        self.api = LocalRestApi(self._dispatch_api, [(m, p) for m, p, _ in routes])
        api_url = self.api.start(o.host, o.ports.get("api", 3000))
        self._on_stop("local API", self.api.stop)
        token = o.callback_token or secrets.token_hex(16)
        hooks = f"{api_url}/hooks/{token}"

        from smsgate_sim import Simulators

        self.sims = Simulators.start(
            o.host,
            ports={n: o.ports.get(n, 0) for n in PROVIDERS},
            dlr_url=f"{hooks}/textinghouse/dlr",
            mo_url=f"{hooks}/textinghouse/mo",
            ct_keyword_url=f"{hooks}/clubtexting/keyword",
            ct_inbox_url=f"{hooks}/clubtexting/inbox",
            gt_keyword_url=f"{hooks}/grouptexting/keyword",
            gt_inbox_url=f"{hooks}/grouptexting/inbox",
            dlr_delay=o.dlr_delay,
            record_limit=10_000,
        )
        self._on_stop("simulators", self.sims.stop)
        _serve_with_a_slower_poll(self.sims)

        # the template's resources in moto
        creds = {"user": SIM_USER, "pass": SIM_PASS}
        secret = {p: dict(creds) for p in PROVIDERS} | {"callback_token": token}
        stack = build_stack(
            secret,
            self.sims.urls,
            prefix=o.prefix,
            endpoint_url=endpoint,
            parameter_overrides=LOCAL_PARAMETERS,
        )
        self.stack: Stack = stack
        os.environ.update(stack.env)
        os.environ.setdefault("PROVIDER_CONNECT_TIMEOUT", "2")
        os.environ.setdefault("PROVIDER_READ_TIMEOUT", "5")

        # metrics: Powertools' EMF prints into the store (and moto CloudWatch)
        from .metrics import AlarmEvaluator, MetricStore, capture_emf

        self.metrics = MetricStore()
        self._on_stop("EMF capture", capture_emf(self.metrics))

        # the functions, loaded as Lambda loads them, their logs into the log file
        _clear_smsgate_caches()
        self._on_stop("smsgate caches", _clear_smsgate_caches)
        from smsgate.observability import logger as fn_logger

        saved = [
            (h, h.setStream(self.log_file)) for h in fn_logger.handlers if hasattr(h, "setStream")
        ]
        self._on_stop("function logs", lambda: [h.setStream(s) for h, s in saved])

        from .runtime import Scheduler, SqsPoller, load_functions

        refs = dict(stack.refs)
        for lid in template["Resources"]:
            refs.setdefault(lid, f"{o.prefix}-{lid}")  # functions, API: their physical names
        self.resolver = _Resolver(template, refs, stack.attrs)
        self.functions = load_functions(template, self.resolver.resolve, o.prefix)
        self.api.policy = callbacks_policy(template, self.resolver.resolve)
        self._api_ready.set()

        # Lambda's SQS event sources
        url_by_arn = {stack.queue_arns[k]: stack.queues[k] for k in stack.queues}
        self.pollers: list[SqsPoller] = []
        for fn in self.functions.values():
            for ev in fn.events.values():
                if ev.get("Type") != "SQS":
                    continue
                p = ev["Properties"]
                url = url_by_arn.get(str(p.get("Queue")))
                if url is None:
                    continue
                scaling = p.get("ScalingConfig") or {}
                poller = SqsPoller(
                    client("sqs"),
                    fn,
                    url,
                    str(p["Queue"]),
                    batch_size=int(p.get("BatchSize", 10)),
                    window=float(p.get("MaximumBatchingWindowInSeconds", 0)),
                    concurrency=int(scaling.get("MaximumConcurrency", 1000)),
                    wait_seconds=o.long_poll,
                )
                poller.start()
                self._on_stop(f"poller {fn.logical_id}", poller.stop)
                self.pollers.append(poller)

        # Lambda's DynamoDB Streams event sources (the application events)
        from .runtime import StreamPoller, streams_client

        streams = streams_client(session, endpoint)
        self._on_stop("streams client", streams.close)
        self.stream_pollers: list[StreamPoller] = []
        for fn in self.functions.values():
            for ev in fn.events.values():
                if ev.get("Type") != "DynamoDB":
                    continue
                p = ev["Properties"]
                on_failure = (p.get("DestinationConfig") or {}).get("OnFailure") or {}
                stream_poller = StreamPoller(
                    streams,
                    fn,
                    str(p["Stream"]),
                    batch_size=int(p.get("BatchSize", 100)),
                    window=float(p.get("MaximumBatchingWindowInSeconds", 0)),
                    starting_position=str(p.get("StartingPosition", "TRIM_HORIZON")),
                    sqs=client("sqs"),
                    dlq_url=url_by_arn.get(str(on_failure.get("Destination", ""))),
                    changes=moto.changes["dynamodb"],
                )
                stream_poller.start()
                self._on_stop(f"stream poller {fn.logical_id}", stream_poller.stop)
                self.stream_pollers.append(stream_poller)
        if stack.buses.get("EventBus"):
            self._watch_bus(stack.buses["EventBus"])

        # schedules
        hold_group = next(iter(stack.schedule_groups.values()), None)
        self.scheduler = Scheduler(
            self.functions,
            fast=o.fast_interval if o.fast else None,
            scheduler_client=client("scheduler"),
            sqs=client("sqs"),
            hold_group=hold_group,
            queue_urls_by_arn=url_by_arn,
            hold_changes=moto.changes["scheduler"],
        )
        self.scheduler.start()
        self._on_stop("scheduler", self.scheduler.stop)

        # alarms
        alarms = self._alarm_defs()
        for alarm in alarms:
            client("cloudwatch").put_metric_alarm(**alarm.put_kwargs())
        self.evaluator = AlarmEvaluator(
            alarms,
            self.metrics,
            client("cloudwatch"),
            client("sns"),
            self._alarm_changed,
            period_cap=o.fast_alarm_period if o.fast else None,
        )
        metrics_thread = threading.Thread(target=self._metrics_loop, name="metrics", daemon=True)
        metrics_thread.start()
        self._on_stop("metrics", lambda: (self._threads_stop.set(), metrics_thread.join(10)))

        # control endpoint (the demo, the tests)
        self.control = _ControlServer(self, o.host, o.ports.get("control", 0))
        self._on_stop("control", self.control.stop)

        self.info = {
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "stack_name": o.prefix,
            "send_queue_url": stack.queues.get("SendQueue", ""),
            "lane_urls": {
                lid[: -len("LaneQueue")].lower(): url
                for lid, url in stack.queues.items()
                if lid.endswith("LaneQueue")
            },
            "send_queue_arn": stack.queue_arns.get("SendQueue", ""),
            "dlq_url": stack.queues.get("SendDeadLetterQueue", ""),
            "messages_table": stack.tables.get("MessagesTable", ""),
            "status_table": stack.tables.get("StatusTable", ""),
            "optouts_table": stack.tables.get("OptOutsTable", ""),
            "secret_arn": stack.secret_arn,
            "keyword_replies_parameter": stack.parameters.get("KeywordRepliesParameter", ""),
            "alarm_topic_arn": next(iter(stack.topics.values()), ""),
            "event_bus_name": stack.buses.get("EventBus", ""),
            "health_table": stack.tables.get("HealthTable", ""),
            "routing_parameter": stack.parameters.get("RoutingRulesParameter", ""),
            "event_bus_arn": stack.attrs.get(("EventBus", "Arn"), ""),
            "api_url": api_url,
            "callback_token": token,
            "callback_urls": {
                f"{m} {p}": f"{api_url}{p.replace('{token}', token)}" for m, p, _ in routes
            },
            "simulators": self.sims.urls,
            "control_url": self.control.url,
            "alarms": [a.name for a in alarms],
            "log_file": str(self.log_path),
            "pid": os.getpid(),
        }
        if o.write_state:
            self.state_path = o.state_dir / "stack.json"
            self.state_path.write_text(json.dumps(self.info, indent=2) + "\n", encoding="utf-8")
            self._on_stop("stack.json", lambda: self.state_path.unlink(missing_ok=True))
        log.info(
            "local stack up: %s",
            json.dumps({k: v for k, v in self.info.items() if k != "callback_token"}),
        )

    def _watch_bus(self, bus: str) -> None:
        """What `smsgate events` shows, for the view and the log: a tap on the bus."""
        from smsgate_cli.bus import BusTap, describe

        tap = BusTap(self.client("events"), self.client("sqs"), bus, name=f"{self.o.prefix}-view")
        tap.open()
        done = self._bus_done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                try:
                    for event in tap.receive(wait=self.o.long_poll):
                        line = describe(event)
                        log.info("event %s", line)
                        when = str(event.get("time", ""))
                        with self.lock:
                            self.bus_events.append(line)
                            del self.bus_events[:-20]
                        self._feed(_short_event(line[len(when) :] if when else line))
                except Exception:
                    log.exception("events view")
                    done.wait(1.0)

        thread = threading.Thread(target=watch, name="events-view", daemon=True)
        thread.start()
        self._on_stop("events view", lambda: (done.set(), thread.join(10), tap.close()))

    def _feed(self, line: str, in_view: bool = True) -> None:
        """One line for the view's latest events (and stdout without the view)."""
        line = f"{time.strftime('%H:%M:%S')} {line}"
        if in_view:
            with self.lock:
                self.feed.append(line)
                del self.feed[:-50]
        if self.echo is not None:
            with contextlib.suppress(Exception):
                print(line, file=self.echo, flush=True)

    def stop(self) -> None:
        self._threads_stop.set()
        # every worker told first, so their last long polls end together, not one by one
        for worker in [*getattr(self, "pollers", []), *getattr(self, "stream_pollers", [])]:
            worker.stop_event.set()
        for name in ("scheduler", "_bus_done"):
            flag = getattr(self, name, None)
            if flag is not None:
                getattr(flag, "stop_event", flag).set()
        while self._stops:
            name, fn = self._stops.pop()
            try:
                fn()
            except Exception as exc:
                print(f"stopping {name}: {type(exc).__name__}: {exc}", file=sys.__stderr__)

    def _restore_env(self) -> None:
        os.environ.clear()
        os.environ.update(self._saved_env)

    # ---------------------------------------------------------------- API
    def _dispatch_api(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._api_ready.wait(30)
        lid = self._route_fn.get((event["httpMethod"], event["resource"]))
        fn = self.functions.get(lid or "")
        if fn is None:
            return {"statusCode": 502, "body": '{"message": "Internal server error"}'}
        return fn.handler(event, context)  # LocalRestApi serialises invocations already

    # ---------------------------------------------------------------- metrics, alarms
    def _alarm_defs(self) -> list[Any]:
        from .metrics import AlarmDef

        out = []
        for lid, res in resources_of_type(self.template, "AWS::CloudWatch::Alarm").items():
            try:
                if not self.resolver.resource_enabled(res):
                    continue
                props = self.resolver.resolve(res.get("Properties", {}))
                out.append(
                    AlarmDef.from_properties(
                        props.get("AlarmName") or f"{self.o.prefix}-{lid}", props, lid
                    )
                )
            except (KeyError, ValueError) as exc:
                log.warning("alarm %s not evaluated locally: %s", lid, exc)
        if not any(a.metric == "CreditBalance" for a in out):
            topic = next(iter(self.stack.topics.values()), "")
            for provider in LOCAL_CREDIT_PROVIDERS:
                out.append(
                    AlarmDef(
                        name=f"{self.o.prefix}-LocalLowCredit-{provider}",
                        namespace="smsgate",
                        metric="CreditBalance",
                        dims={"service": "smsgate", "Provider": provider},
                        statistic="Minimum",
                        period=300,
                        evaluation_periods=1,
                        threshold=self.o.credit_threshold,
                        comparison="LessThanThreshold",
                        treat_missing="missing",
                        alarm_actions=[topic] if topic else [],
                        ok_actions=[topic] if topic else [],
                        description=f"local stack only (template has no low-credit alarm): "
                        f"{provider} credit below {self.o.credit_threshold:g}",
                        logical_id=f"LocalLowCredit{provider}",
                    )
                )
        return out

    def _alarm_changed(self, change: Any) -> None:
        what = f"alarm {change.alarm.name}: {change.old} -> {change.new} ({change.reason})"
        log.info("%s", what)
        with self.lock:
            self.events.append(f"{time.strftime('%H:%M:%S')} {what}")
            del self.events[:-20]
        self._feed(  # the view shows what went into or out of ALARM, not the settling
            f"alarm {self._short(change.alarm.name)}: {change.old} -> {change.new} "
            f"({change.reason})",
            in_view="ALARM" in (change.old, change.new),
        )

    def _short(self, name: str) -> str:
        return name.removeprefix(f"{self.o.prefix}-")

    @property
    def in_flight(self) -> dict[str, int]:
        """Batches each queue's event source is processing now (logical id -> count)."""
        by_url = {url: lid for lid, url in self.stack.queues.items()}
        return {
            by_url.get(p.queue_url, p.queue_url): p.in_flight for p in getattr(self, "pollers", [])
        }

    def queue_metrics(self) -> dict[str, int]:
        """What CloudWatch reads from SQS for the alarms: each queue's visible and in-flight
        messages, and the age of its oldest message (from moto's own record of the queue)."""
        depth = {}
        ages = self._oldest_ages()
        for lid, url in self.stack.queues.items():
            attrs = self.client("sqs").get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            name = self.stack.attrs.get((lid, "QueueName"), url.rsplit("/", 1)[-1])
            visible = int(attrs.get("ApproximateNumberOfMessages", 0))
            dims = {"QueueName": name}
            self.metrics.record("AWS/SQS", "ApproximateNumberOfMessagesVisible", dims, visible)
            self.metrics.record(
                "AWS/SQS",
                "ApproximateNumberOfMessagesNotVisible",
                dims,
                int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                "Count",
            )
            if lid in ages:
                self.metrics.record(
                    "AWS/SQS", "ApproximateAgeOfOldestMessage", dims, ages[lid], "Seconds"
                )
            depth[lid] = visible
        self.depth = depth
        return depth

    def _oldest_ages(self) -> dict[str, float]:
        """Seconds since the oldest message of each queue was sent (0: empty)."""
        try:
            from moto.sqs.models import sqs_backends

            now_ms = time.time() * 1000
            ages = {}
            for lid, url in self.stack.queues.items():
                account, name = url.rstrip("/").rsplit("/", 2)[-2:]
                queue = sqs_backends[account]["us-east-1"].queues.get(name)
                if queue is None:
                    continue
                sent = [m.sent_timestamp for m in list(queue._messages) if m.sent_timestamp]
                ages[lid] = max(0.0, (now_ms - min(sent)) / 1000) if sent else 0.0
            return ages
        except Exception:  # moto's internals moved: the backlog alarms then see no data
            log.debug("queue ages unavailable", exc_info=True)
            return {}

    def evaluate_now(self) -> dict[str, str]:
        self.queue_metrics()
        self.metrics.flush_to(self.client("cloudwatch"))
        self.evaluator.evaluate()
        return dict(self.evaluator.states)

    def _metrics_loop(self) -> None:
        """Alarms evaluated as soon as a datapoint arrives, and every interval (windows age);
        the queues' metrics read again every interval after a send, delete or visibility
        change, else every ``queue_every`` seconds (enough readings for the shortest SQS
        alarm period); the credit re-read when a balance moves."""
        interval = 2.0 if self.o.fast else self.o.alarm_interval
        sqs_periods = [
            self.evaluator.period_of(a)
            for a in self.evaluator.alarms
            if any(ns == "AWS/SQS" for ns, _, _ in a.series())
        ]
        queue_every = max(interval, min([60.0, *(p / 2 for p in sqs_periods)]))
        sqs = self.moto.changes["sqs"]
        next_eval = time.monotonic() + 1.0
        queues_read_at, queues_seen = float("-inf"), None
        seen = self.metrics.version
        while not self._threads_stop.wait(1.0):
            try:
                self.watch_credit()
                version = self.metrics.version  # before evaluating: a point during it counts
                now = time.monotonic()
                if now >= next_eval:
                    next_eval = now + interval
                    if sqs.value != queues_seen or now - queues_read_at >= queue_every:
                        queues_seen, queues_read_at = sqs.value, now
                        self.queue_metrics()
                    self.metrics.flush_to(self.client("cloudwatch"))
                    self.evaluator.evaluate()
                elif version != seen:
                    self.metrics.flush_to(self.client("cloudwatch"))
                    self.evaluator.evaluate()
                seen = version
            except Exception:
                log.exception("metrics loop")

    # ---------------------------------------------------------------- credit
    def credit_readings(self) -> dict[str, float]:
        """The credit check's last reading per provider (its CreditBalance metric): the one
        source of the credit the view shows, the same the check writes to the health table."""
        out = {}
        for dims, point in self.metrics.latest("smsgate", "CreditBalance").items():
            provider = dict(dims).get("Provider")
            if provider:
                out[provider] = point.value
        return out

    def watch_credit(self) -> bool:
        """Run the credit check when a simulator's balance is not what the check last read:
        at once when it rose (`smsgate buy-credits`, a top-up), at most every
        ``credit_recheck`` seconds when it fell (sends spend it). True if it ran."""
        run = next(
            (r for r in self.scheduler.runs if r.function.logical_id == "CreditCheckFunction"),
            None,
        )
        if run is None:
            return False
        readings = self.credit_readings()
        since = time.time() - (run.last_at or 0.0)
        for provider, reading in readings.items():
            sim = self.sims.by_name.get(provider)
            if sim is None:
                continue
            credit = float(sim.account().credit)
            if credit == reading:
                continue
            if credit > reading or since >= self.o.credit_recheck:
                log.info("%s credit moved (%g -> %g): credit check", provider, reading, credit)
                self.scheduler.run_now(run.function.logical_id)
                return True
        return False

    # ---------------------------------------------------------------- output
    def banner_commands(self) -> list[str]:
        """Commands to paste into another terminal (in the repository), each complete."""
        i = self.info
        config = self.o.state_dir / "stack.json"
        local = (
            [] if _same_path(config, ROOT / ".local" / "stack.json") else ["--config", _rel(config)]
        )
        smsgate = _rel(Path(sys.executable).parent / "smsgate")
        python = _rel(Path(sys.executable))
        body = {"to": "+33612345678", "text": "Bonjour", "provider": "textinghouse"}
        code = (
            f"import boto3, json; boto3.client({_py('sqs')}, region_name={_py(i['region'])}, "
            f"endpoint_url={_py(i['endpoint_url'])}, aws_access_key_id={_py('local')}, "
            f"aws_secret_access_key={_py('local')}).send_message("
            f"QueueUrl={_py(i['send_queue_url'])}, MessageBody=json.dumps({json.dumps(body)}))"
        )
        send = ["--to", body["to"], "--text", body["text"], "--provider", body["provider"]]
        return [
            shlex.join([smsgate, *local, "send", *send]),
            shlex.join([smsgate, *local, "messages"]),
            "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local "
            + shlex.join(
                [
                    "aws",
                    "--region",
                    i["region"],
                    "--endpoint-url",
                    i["endpoint_url"],
                    "sqs",
                    "send-message",
                    "--queue-url",
                    i["send_queue_url"],
                    "--message-body",
                    json.dumps(body),
                ]
            ),
            shlex.join([python, "-c", code]),
        ]

    def banner(self) -> str:
        i = self.info
        config = self.o.state_dir / "stack.json"
        default_state = _same_path(self.o.state_dir, ROOT / ".local")
        smsgate = _rel(Path(sys.executable).parent / "smsgate")
        local = "" if default_state else f" --config {shlex.quote(_rel(config))}"
        tables = f"{i['messages_table']}, {i['status_table']}, {i['optouts_table']}"
        lines = [
            "smsgate local stack is up (127.0.0.1 only; Ctrl-C stops everything)",
            f"  moto (AWS) endpoint   {i['endpoint_url']}   region {i['region']}",
            f"  send queue            {i['send_queue_url']}",
            f"  dead-letter queue     {i['dlq_url']}",
            f"  tables                {tables}",
            f"  events bus            {i['event_bus_name']}   ({smsgate}{local} events --follow)",
            f"  callback API          {i['api_url']}   token {i['callback_token']}",
        ]
        lines += [f"    {k:<42} {v}" for k, v in i["callback_urls"].items()]
        lines += [f"  simulator {n:<12} {u}" for n, u in i["simulators"].items()]
        lines += [
            f"  control               {i['control_url']}",
            f"  logs                  {i['log_file']}",
            f"  endpoints as JSON     {config}",
            "",
            f"send a message (paste a line into another terminal, in {ROOT}):",
            *(f"  {c}" for c in self.banner_commands()),
            "",
            "demo traffic against this stack, with a summary:",
            "  make demo"
            + (
                ""
                if default_state
                else f" RUN_ARGS={shlex.quote('--state-dir ' + _rel(self.o.state_dir))}"
            ),
        ]
        return "\n".join(lines)

    def snapshot(self) -> Any:
        """What the live view shows now (cheap: the messages table and the providers' health
        are read again only after a DynamoDB write, at most every 1.5 s)."""
        from smsgate.phones import mask

        from .view import MessageRow, ProviderRow, Snapshot

        cache = self._view_cache
        changes = self.moto.changes["dynamodb"].value
        if cache.get("seen") != changes and time.monotonic() - cache.get("at", 0.0) >= 1.5:
            cache.update(seen=changes, at=time.monotonic())
            cache["items"] = self._recent_messages()
            cache["health"] = self._health()
        depth = getattr(self, "depth", {})
        in_flight = self.in_flight
        credits = self.credits()
        providers = []
        for name in PROVIDERS:
            lane = next(
                (lid for lid in self.stack.queues if lid.lower() == f"{name}lanequeue"), None
            )
            providers.append(
                ProviderRow(
                    name,
                    credits.get(name, "n/a"),
                    cache.get("health", {}).get(name, "?"),
                    depth.get(lane) if lane else None,
                    in_flight.get(lane, 0) if lane else None,
                )
            )
        messages = []
        for m in cache.get("items", []):
            out = m.get("direction", "out") == "out"
            number = m.get("to") if out else m.get("from", m.get("phone"))
            messages.append(
                MessageRow(
                    str(m.get("id", "")),
                    str(m.get("direction", "out")),
                    str(m.get("provider", "")),
                    mask(str(number)) if number else "-",
                    str(m.get("status", "")),
                    str(m.get("error_code") or ""),
                )
            )
        with self.lock:
            feed = list(self.feed)
        return Snapshot(
            clock=time.strftime("%H:%M"),
            api_url=self.info.get("api_url", ""),
            queue=depth.get("SendQueue"),
            dlq=depth.get("SendDeadLetterQueue"),
            providers=providers,
            alarms={self._short(n): s for n, s in self.evaluator.states.items()},
            reasons={self._short(n): r for n, r in self.evaluator.reasons.items()},
            events=feed,
            messages=messages,
            hints=self.banner_commands()[:1],
        )

    def _recent_messages(self, limit: int = 40) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        try:
            scan = self.client("dynamodb").scan(TableName=self.info["messages_table"], Limit=500)
        except Exception as exc:
            log.warning("view: messages unread: %s", exc)
            return self._view_cache.get("items", [])
        for raw in scan.get("Items", []):
            items.append({k: next(iter(v.values())) for k, v in raw.items()})
        items.sort(
            key=lambda m: str(m.get("updated_at") or m.get("created_at") or ""), reverse=True
        )
        return items[:limit]

    def _health(self) -> dict[str, str]:
        """Each provider's health as the senders see it (the health table's state item)."""
        from smsgate.health import HealthBoard

        table = self.info.get("health_table")
        if not table:
            return {}
        board = HealthBoard(table, self.client("dynamodb"), lambda: None)  # type: ignore[arg-type, return-value]
        out = {}
        now = time.time()
        for name in PROVIDERS:
            try:
                state = board.state(name)
            except Exception:
                out[name] = "?"
                continue
            until = float(state.get("unhealthy_until", 0) or 0)
            reason = state.get("reason", "?")
            if until and now < until:
                out[name] = (
                    f"skipped: {reason} until {time.strftime('%H:%M:%S', time.localtime(until))}"
                )
            elif until:
                out[name] = f"{reason}: cool-down over"
            else:
                out[name] = "healthy"
        return out

    def view_lines(self, width: int, height: int) -> list[str]:
        from .view import render

        encoding = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "")
        return render(self.snapshot(), width, height, "…" if encoding == "utf8" else "~")

    def view_text(self, width: int = 120, height: int = 40) -> str:
        return "\n".join(self.view_lines(width, height))

    def credits(self) -> dict[str, str]:
        out = {p: "n/a" for p in PROVIDERS}
        out |= {p: f"{v:g}" for p, v in self.credit_readings().items() if p in out}
        out["clubtexting"] = out["clubtexting"] if out["clubtexting"] != "n/a" else "no API"
        return out


def _rel(path: Path) -> str:
    """``path`` as typed in the repository (relative inside it, absolute outside); symlinks
    (a virtualenv's python) are kept as they are."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(ROOT.resolve()))
    except ValueError:
        try:
            return str(absolute.relative_to(ROOT))
        except ValueError:
            return str(absolute)


def _same_path(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _py(value: str) -> str:
    """A Python string literal in double quotes (the one-liner is single-quoted)."""
    return json.dumps(value)


def _json_message(record: logging.LogRecord) -> bool:
    record.message_json = json.dumps(record.getMessage())
    if record.exc_info:
        record.message_json = json.dumps(
            record.getMessage() + "\n" + logging.Formatter().formatException(record.exc_info)
        )
        record.exc_info = None
    return True


_KINDS = {
    "Message Status Changed": "status",
    "Inbound Message Received": "inbound",
    "Opt-Out Changed": "opt-out",
}


def _short_event(line: str) -> str:
    """`smsgate events`' line (numbers masked, no text) in fewer columns, for the view."""
    line = " ".join(line.split())
    for kind, short in _KINDS.items():
        if line.startswith(kind):
            return short + line[len(kind) :]
    return line


def _serve_with_a_slower_poll(sims: Any, poll_interval: float = 0.5) -> None:
    """The simulators serve with a 0.05 s poll, so that tests stopping them hundreds of times
    do not wait: 20 wake-ups a second each, the largest cost of an idle local stack. A stack
    that runs for hours serves them with socketserver's usual 0.5 s (stop waits that long)."""
    for sim in getattr(sims, "by_name", {}).values():
        server, thread = getattr(sim, "_server", None), getattr(sim, "_thread", None)
        if server is None or thread is None:
            continue
        server.shutdown()  # ends this serve_forever loop; the socket stays open and listening
        thread.join(timeout=5)
        again = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": poll_interval},
            name=thread.name,
            daemon=True,
        )
        again.start()
        sim._thread = again


def _clear_smsgate_caches() -> None:
    with contextlib.suppress(ImportError):
        from smsgate import wiring

        wiring.new_instance()  # the send instances' worker threads end with the stack


# --------------------------------------------------------------------------- control


class _ControlServer:
    """What only the running process can do, over HTTP (JSON): the simulators' knobs and
    running a scheduled function or an alarm evaluation now.

    POST /credit {"provider", "credit"}; POST /inject {"provider", "kind", ...};
    POST /force {"provider", "body", "status", "times", "request_path"} (next answers);
    POST /run {"function"}; POST /evaluate; POST /refresh-parameters (drop the functions'
    cached SSM parameters and secret, as a new Lambda instance would); GET /alarms; GET /info."""

    def __init__(self, stack: LocalStack, host: str, port: int) -> None:
        local = stack

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = 64 * 1024

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            def do_GET(self) -> None:
                if self.path == "/alarms":
                    self._answer(200, local.evaluator.states)
                elif self.path == "/info":
                    self._answer(200, local.info)
                else:
                    self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                    self._answer(200, local.control_action(self.path, body))
                except (KeyError, ValueError, TypeError) as exc:
                    self._answer(400, {"error": f"{type(exc).__name__}: {exc}"})

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="control", daemon=True
        )
        self.thread.start()
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _control_action(self: LocalStack, path: str, body: dict[str, Any]) -> Any:
    if path == "/credit":
        sim = self.sims.by_name[str(body["provider"])]
        sim.account().credit = float(body["credit"])
        return {"provider": body["provider"], "credit": sim.account().credit}
    if path == "/inject":
        sim: Any = self.sims.by_name[str(body["provider"])]
        kind = str(body["kind"])
        args = {k: v for k, v in body.items() if k not in ("provider", "kind")}
        method = {"keyword": "inject_keyword", "inbox": "inject_inbox", "mo": "inject_mo"}[kind]
        status, text = getattr(sim, method)(**args)
        return {"status": status, "body": text}
    if path == "/force":
        sim = self.sims.by_name[str(body["provider"])]
        times = int(body.get("times", 1))
        path = body.get("request_path")
        sim.force_answer(
            str(body["body"]), int(body.get("status", 200)), times, str(path) if path else None
        )
        return {"provider": body["provider"], "forced": times}
    if path == "/run":
        return {"result": self.scheduler.run_now(str(body["function"]))}
    if path == "/refresh-parameters":  # what a new Lambda instance would read
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        return {"cleared": True}
    if path == "/evaluate":
        return self.evaluate_now()
    raise KeyError(f"unknown action {path}")


LocalStack.control_action = _control_action  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m smsgate_local", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command")
    for name in ("run", "demo"):
        s = sub.add_parser(name, help="start the local stack" if name == "run" else "demo traffic")
        s.add_argument("--host", default="127.0.0.1")
        for key, port in DEFAULT_PORTS.items():
            s.add_argument(f"--{key}-port", type=int, default=port, help=f"default {port}; 0: any")
        s.add_argument("--fast", action="store_true", help="scheduled functions every few seconds")
        s.add_argument("--no-view", action="store_true", help="no live view (CI, tests)")
        s.add_argument("--state-dir", default=str(ROOT / ".local"))
        s.add_argument("--credit-threshold", type=float, default=100.0)
        if name == "run":
            s.add_argument("--demo", action="store_true", help="send the demo traffic once up")
            s.add_argument("--exit-after-demo", action="store_true")
    return p


def _options(args: argparse.Namespace) -> Options:
    return Options(
        host=args.host,
        ports={k: getattr(args, f"{k}_port") for k in DEFAULT_PORTS},
        state_dir=Path(args.state_dir),
        fast=args.fast,
        view=not args.no_view,
        credit_threshold=args.credit_threshold,
    )


def _ports_free_or_say(options: Options) -> bool:
    busy = busy_ports(options.host, options.ports)
    if not busy:
        return True
    print(busy_message(options.host, busy, options.ports, options.state_dir), file=sys.stderr)
    return False


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv if argv is not None else sys.argv[1:] or ["run"])
    out = sys.stdout
    if args.command == "demo":
        from .demo import attach_or_none, run_demo

        info = attach_or_none(Path(args.state_dir) / "stack.json")
        if info is not None:
            print(f"demo against the running stack ({info['endpoint_url']})", flush=True)
            return 0 if run_demo(info, out) else 1
        print("no running stack found: starting one for the demo", flush=True)
        args.fast = True
        args.no_view = True
        args.demo = True
        args.exit_after_demo = True

    options = _options(args)
    view = options.view and not args.exit_after_demo and out.isatty()
    if options.view and not view and not args.exit_after_demo:
        print("(no terminal: no live view; events and alarm changes are printed)", flush=True)
    options.view = view
    if not _ports_free_or_say(options):
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    local = LocalStack(options)
    code = 0
    try:
        started = time.monotonic()
        try:
            local.start()
        except (OSError, SystemExit) as exc:  # werkzeug exits when it cannot bind
            busy = busy_ports(options.host, options.ports)
            if (isinstance(exc, OSError) and exc.errno != errno.EADDRINUSE) or not busy:
                raise
            # taken between the check and the bind
            message = busy_message(options.host, busy, options.ports, options.state_dir)
            print(message, file=sys.stderr)
            return 2
        print(local.banner(), flush=True)
        print(f"(started in {time.monotonic() - started:.1f} s)", flush=True)
        if args.demo:
            from .demo import run_demo

            ok = run_demo(local.info, out)
            code = 0 if ok else 1
            if args.exit_after_demo:
                return code
        _show(local, stop, out if view else None)
        return code
    finally:
        print("\nstopping...", flush=True)
        local.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopped.", flush=True)


def _show(local: LocalStack, stop: threading.Event, terminal: IO[str] | None) -> None:
    """Until stopped: the live view, redrawn when what it shows (or the terminal's size)
    changed; without a terminal, nothing here (the stack prints each event as it comes)."""
    if terminal is None:
        while not stop.wait(1.0):
            pass
        return
    from .view import Screen

    screen = Screen(terminal)
    while not stop.wait(0.5):
        size = shutil.get_terminal_size()
        try:
            screen.draw(local.view_lines(size.columns, size.lines), size.columns, size.lines)
        except Exception:
            log.exception("live view")
