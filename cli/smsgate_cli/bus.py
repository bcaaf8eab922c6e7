"""A temporary subscription to smsgate's events bus, for `smsgate events` and the local stack's
view: an SQS queue, a rule on the bus matching `source` `smsgate` (optionally some detail
types or one message), the queue as the rule's only target, and a queue policy that lets only
that rule send to it. `close()` removes all of it; so does leaving the `with` block."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterable, Iterator
from typing import Any

from smsgate.events import INBOUND_RECEIVED, OPT_OUT_CHANGED, SOURCE, STATUS_CHANGED
from smsgate.phones import mask

DETAIL_TYPES = {
    "status": STATUS_CHANGED,
    "inbound": INBOUND_RECEIVED,
    "optout": OPT_OUT_CHANGED,
}


class BusTap:
    def __init__(
        self,
        events: Any,
        sqs: Any,
        bus: str,
        *,
        detail_types: Iterable[str] = (),
        message_id: str | None = None,
        name: str | None = None,
    ) -> None:
        self.events, self.sqs, self.bus = events, sqs, bus
        self.name = name or f"smsgate-tap-{secrets.token_hex(4)}"
        pattern: dict[str, Any] = {"source": [SOURCE]}
        if detail_types:
            pattern["detail-type"] = sorted(set(detail_types))
        if message_id:
            pattern["detail"] = {"message_id": [message_id]}
        self.pattern = pattern
        self.queue_url = ""
        self.rule_arn = ""

    def open(self) -> BusTap:
        try:
            self.queue_url = self.sqs.create_queue(
                QueueName=self.name,
                Attributes={"SqsManagedSseEnabled": "true", "MessageRetentionPeriod": "3600"},
            )["QueueUrl"]
            queue_arn = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            self.rule_arn = self.events.put_rule(
                Name=self.name,
                EventBusName=self.bus,
                EventPattern=json.dumps(self.pattern),
                State="ENABLED",
                Description="smsgate events tap (temporary; removed when it ends)",
            )["RuleArn"]
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": queue_arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": self.rule_arn}},
                    }
                ],
            }
            self.sqs.set_queue_attributes(
                QueueUrl=self.queue_url, Attributes={"Policy": json.dumps(policy)}
            )
            self.events.put_targets(
                Rule=self.name, EventBusName=self.bus, Targets=[{"Id": "tap", "Arn": queue_arn}]
            )
        except BaseException:
            self.close()
            raise
        return self

    def receive(self, wait: int = 1) -> list[dict[str, Any]]:
        """The events that arrived (waiting up to `wait` seconds for the first), oldest first
        as far as SQS tells: each is the EventBridge event (`detail-type`, `detail`, ...)."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=max(0, min(20, wait)),
            AttributeNames=["SentTimestamp"],
        )
        messages = answer.get("Messages", [])
        if messages:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        out = []
        for m in messages:
            try:
                event = json.loads(m["Body"])
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out

    def close(self) -> None:
        """Remove the target, the rule and the queue (each even if another step fails)."""
        if self.rule_arn:
            with contextlib.suppress(Exception):
                self.events.remove_targets(Rule=self.name, EventBusName=self.bus, Ids=["tap"])
            with contextlib.suppress(Exception):
                self.events.delete_rule(Name=self.name, EventBusName=self.bus)
            self.rule_arn = ""
        if self.queue_url:
            with contextlib.suppress(Exception):
                self.sqs.delete_queue(QueueUrl=self.queue_url)
            self.queue_url = ""

    def __enter__(self) -> BusTap:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe(event: dict[str, Any]) -> str:
    """One line for people: numbers masked, no message text."""
    detail = event.get("detail") or {}
    kind = str(event.get("detail-type", "?"))
    when = str(event.get("time", ""))
    if kind == STATUS_CHANGED:
        what = (
            f"{detail.get('message_id')} {detail.get('old_status') or '-'} -> "
            f"{detail.get('new_status')} ({detail.get('provider') or '-'})"
        )
        if detail.get("error_code"):
            what += f" {detail['error_code']}: {detail.get('error') or ''}".rstrip()
    elif kind == INBOUND_RECEIVED:
        text = detail.get("text")
        what = (
            f"{detail.get('message_id')} from {mask(detail.get('from'))} "
            f"keyword {detail.get('keyword') or '-'} ({detail.get('provider') or '-'}, "
            f"{len(text) if isinstance(text, str) else 0} chars)"
        )
        if detail.get("in_reply_to"):
            what += f" reply to {detail['in_reply_to']}"
    elif kind == OPT_OUT_CHANGED:
        state = "opted out" if detail.get("opted_out") else "opted back in"
        how = f" ({detail['how']})" if detail.get("how") else ""
        what = f"{mask(detail.get('phone'))} {state}{how}"
    else:
        what = json.dumps(detail)[:120]
    return f"{when}  {kind:<24}  {what}"


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as Ctrl-C does, so the temporary rule and queue are removed."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread (elsewhere signals cannot be
    handled, and nothing changes)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_events(args: Any, ctx: Any, out: Any) -> int:
    """`smsgate events`: print the bus's events while subscribed (see BusTap)."""
    from .context import Failure

    name = ctx.target.event_bus_name
    if not name:
        raise Failure(f"{ctx.target.source} names no events bus (output EventBusName)")
    with sigterm_as_interrupt():
        return _follow(args, ctx, out, name)


def _follow(args: Any, ctx: Any, out: Any, name: str) -> int:
    import time

    types = [DETAIL_TYPES[t] for t in args.type or []]
    deadline = None if args.follow else time.monotonic() + args.wait
    shown = 0
    with BusTap(
        ctx.client("events"), ctx.client("sqs"), name, detail_types=types, message_id=args.id
    ) as tap:
        out.note(f"listening on {name}" + (" (Ctrl-C or SIGTERM to stop)" if args.follow else ""))
        try:
            while not (args.limit and shown >= args.limit):
                left = 20.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    break
                for event in tap.receive(wait=max(1, int(left))):
                    if args.limit and shown >= args.limit:
                        break
                    text = json.dumps(event, ensure_ascii=False) if out.json else describe(event)
                    out.out.write(text + "\n")
                    out.out.flush()
                    shown += 1
        except KeyboardInterrupt:
            if not args.follow:
                raise
    if not out.json:
        out.note(f"{shown} event{'s' if shown != 1 else ''}")
    return 0
