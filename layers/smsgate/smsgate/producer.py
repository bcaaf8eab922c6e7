"""A client for applications that put messages on the send queue.

Every message is checked before it is queued, with the sender's own code: the queue body model
and the way the sender reads a body (`queue_body.parse`), then the rules of every provider the
sender could give it to (`routing.py`'s rules for the number, region and `commercial`; the
named provider; the default provider). A message none of them would accept raises `Refused`
and is not queued. What the producer cannot know is not checked: the provider secret (a
provider without credentials), the opt-out list and provider health.

    from smsgate.producer import Producer

    producer = Producer(queue_url)
    message_id = producer.send("+33612345678", "Your order has shipped.")
    ids = producer.send_many([{"to": "+12125551234", "text": "Sale today"}, ...])

`python -m smsgate.producer [PATH]` writes the queue body's JSON schema (schemas/queue-body.v1.json
by default), generated from `queue_body.QueueMessage`.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .protection import DESTINATION_BLOCKED
from .providers import (
    DEFAULT_PROVIDER,
    PROVIDERS,
    OutboundSms,
    ProviderClient,
    RuleViolation,
    is_test_number,
)
from .providers.base import Reply, Transport
from .queue_body import BadBody, Cancel, Job, QueueMessage, parse
from .quote import Quote, quote
from .retries import describe, is_transient
from .routing import Plan, Router, RoutingConfig, region_of
from .store.counters import Counters

__all__ = ["NotQueued", "Producer", "Refusal", "Refused", "Verdict", "queue_body_schema"]

SQS_BATCH = 10  # entries per SendMessageBatch
SQS_MAX_BYTES = 262_144  # one message, and one batch's bodies together (256 KiB)
SCHEMA_VERSION = "1"
SCHEMA_FILE = f"schemas/queue-body.v{SCHEMA_VERSION}.json"

Routing = RoutingConfig | Mapping[str, Any] | Callable[[], RoutingConfig] | None


@dataclass(frozen=True)
class Refusal:
    """A provider whose rules refuse the message: `code` as the sender records it
    (`rule:length`), `reason` the rule's measured figure (never the text or the number)."""

    provider: str
    code: str
    reason: str


@dataclass(frozen=True)
class Verdict:
    """What the sender would do with one message: which providers it could give it to
    (`candidates`, in the routing rule's order), which of them accept it and which refuse it
    and why. `every` is True when only one of the candidates will be tried and any of them may
    be that one (a weighted rule with `"failover": false`): then all must accept."""

    id: str
    body: dict[str, Any] = field(repr=False)  # what would be queued (the number in E.164)
    route: str = ""  # "named", "default" or the routing rule's name
    candidates: tuple[str, ...] = ()
    accepting: tuple[str, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    every: bool = False
    invalid: str = ""  # the body breaks the queue contract (the reason)

    @property
    def accepted(self) -> bool:
        if self.invalid or not self.accepting:
            return False
        return not (self.every and self.refusals)

    @property
    def reason(self) -> str:
        """Why it is refused ("" when accepted): the first candidate's refusal, as the sender
        records it (`<provider>: rule:length: message is 131 characters, limit 130`)."""
        if self.invalid:
            return f"invalid_body: {self.invalid}"
        if self.accepted or not self.refusals:
            return ""
        return describe_refusal(self.refusals[0])

    @property
    def code(self) -> str:
        """The refusal's code (`invalid_body`, `rule:length`, ...); "" when accepted."""
        if self.invalid:
            return "invalid_body"
        return "" if self.accepted or not self.refusals else self.refusals[0].code

    def as_dict(self) -> dict[str, Any]:
        """The verdict without the message's number or text (safe to print or log)."""
        return {
            "id": self.id,
            "accepted": self.accepted,
            "route": self.route,
            "candidates": list(self.candidates),
            "accepting": list(self.accepting),
            "refused": {r.provider: describe_refusal(r) for r in self.refusals},
            "every_candidate_must_accept": self.every,
            "reason": self.reason,
        }


def describe_refusal(refusal: Refusal) -> str:
    return f"{refusal.provider}: {refusal.code}: {refusal.reason}"


class Refused(ValueError):
    """The sender would refuse the message (or, from `send_many`, some rows): nothing was
    queued. `verdicts` maps each refused row (0 for `send`) to its Verdict; the text names
    the rule and never the number or the text."""

    def __init__(self, message: str, verdicts: Mapping[int, Verdict]) -> None:
        super().__init__(message)
        self.verdicts = dict(verdicts)

    @property
    def code(self) -> str:
        """The first refused row's code (`rule:length`, `invalid_body`, ...)."""
        return next(iter(self.verdicts.values())).code if self.verdicts else ""


class NotQueued(RuntimeError):
    """SQS did not take some messages (a refusal that cannot pass, or retries spent).

    `queued` holds the rows (indexes into the rows given) that are on the queue, `failed` the
    others with the reason; `ids` every row's id in order. Retrying with the same ids is safe:
    one id is sent at most once."""

    def __init__(self, ids: Sequence[str], queued: Iterable[int], failed: Mapping[int, str]):
        self.ids, self.queued, self.failed = list(ids), sorted(queued), dict(sorted(failed.items()))
        first = next(iter(self.failed.items()), (0, ""))
        super().__init__(
            f"{len(self.failed)} of {len(self.ids)} messages not queued "
            f"(rows[{first[0]}]: {first[1]}; the others are queued)"
        )


class _Offline(Transport):
    """A transport that never connects: the producer only applies the providers' rules."""

    def __init__(self, base_url: str) -> None:  # no session, no connection
        self.base_url = base_url
        self.timeout = (0.0, 0.0)

    def request(
        self, method: str, path: str, fields: Mapping[str, str], *, json_body: bool = False
    ) -> Reply:
        raise RuntimeError("the producer never calls a provider")

    def close(self) -> None:
        return None


def _rule_checkers() -> dict[str, ProviderClient]:
    return {
        name: cls(cls.default_url, "", "", _Offline(cls.default_url))
        for name, cls in PROVIDERS.items()
    }


def _client(service: str) -> Any:
    """A boto3 client of the application's own session (made only when first needed)."""
    import boto3

    return boto3.client(service)


def _routing_source(routing: Routing) -> Callable[[], RoutingConfig]:
    if routing is None:
        config = RoutingConfig()
        return lambda: config
    if isinstance(routing, RoutingConfig):
        return lambda: routing
    if isinstance(routing, Mapping):
        parsed = RoutingConfig.parse(dict(routing))
        return lambda: parsed
    return routing


class Producer:
    """Puts checked messages on the send queue (`queue_url`).

    `routing`: the stack's routing rules (a RoutingConfig, the JSON document as a dict, or a
    function returning the rules in force, e.g. `Producer.rules_from_parameter`); without it
    every message that names no provider goes to `default_provider` (the stack parameter
    `DefaultProvider`; default: the `DEFAULT_PROVIDER` environment variable, else the
    registry's DEFAULT_PROVIDER), as the sender does without rules.
    """

    ATTEMPTS = 6  # SendMessageBatch tries for an entry SQS failed on its side
    PAUSE = 0.1  # seconds before the second try, doubled each time (with jitter)
    MAX_PAUSE = 5.0

    def __init__(
        self,
        queue_url: str,
        *,
        sqs: Any = None,
        routing: Routing = None,
        default_provider: str | None = None,
        health_table: str | None = None,
        optouts_table: str | None = None,
        dynamodb: Any = None,
    ) -> None:
        default = default_provider or os.environ.get("DEFAULT_PROVIDER") or DEFAULT_PROVIDER
        if default not in PROVIDERS:
            raise ValueError(f"default_provider must be one of {sorted(PROVIDERS)}")
        self.queue_url, self.default_provider = queue_url, default
        self._sqs = sqs
        # the stack's health table (output HealthTableName): velocity and spend for `quote`
        self.health_table, self.optouts_table = health_table, optouts_table
        self._dynamodb = dynamodb
        self._counters: Counters | None = None
        self._routing = _routing_source(routing)
        self._checkers = _rule_checkers()
        self.sleep: Callable[[float], None] = time.sleep

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            self._sqs = _client("sqs")
        return self._sqs

    @staticmethod
    def rules_from_parameter(name: str, ssm: Any = None) -> RoutingConfig:
        """The routing rules in the stack's SSM parameter (output RoutingRulesParameterName)."""
        if ssm is None:
            ssm = _client("ssm")
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        return RoutingConfig.parse(json.loads(value))

    # --- checking ------------------------------------------------------------------------

    def check(self, to: str, text: str, **fields: Any) -> Verdict:
        """What the sender would do with this message, without queueing it."""
        return self.check_row({"to": to, "text": text, **fields})

    def check_row(self, row: Mapping[str, Any]) -> Verdict:
        """`check` for one body given as a mapping (`to`, `text` and the other fields of the
        queue body; None values are left out). An id is generated when none is given."""
        body = {k: v for k, v in row.items() if v is not None}
        if not body.get("id"):
            body["id"] = uuid.uuid4().hex
        message_id = str(body["id"])
        try:
            encoded = encode(body)
        except (TypeError, ValueError):
            return Verdict(message_id, body, invalid="body is not JSON")
        job = parse(encoded, message_id, self.default_provider)
        if isinstance(job, Cancel):
            return Verdict(message_id, body, invalid="a cancel body is not a message")
        if isinstance(job, BadBody):
            return Verdict(message_id, body, invalid=job.reason)
        problem = job.message.timing_problem(datetime.now(UTC))
        if problem:  # the sender checks the same when it first sees the message
            return Verdict(job.id, body, invalid=f"invalid message: {problem}")
        body = {**body, "id": job.id, "to": job.to}
        if len(encode(body).encode()) > SQS_MAX_BYTES:
            return Verdict(job.id, body, invalid=f"body is over SQS's {SQS_MAX_BYTES} bytes")
        return self._verdict(job, body)

    def _verdict(self, job: Job, body: dict[str, Any]) -> Verdict:
        sms = job.sms()
        answers: dict[str, Refusal | None] = {}

        def answer(provider: str) -> Refusal | None:
            if provider not in answers:
                answers[provider] = self._refusal(provider, sms)
            return answers[provider]

        candidates, route, every = self._candidates(job, answer)
        refusals = tuple(r for p in candidates if (r := answer(p)) is not None)
        accepting = tuple(p for p in candidates if answer(p) is None)
        return Verdict(job.id, body, route, candidates, accepting, refusals, every)

    def _refusal(self, provider: str, sms: OutboundSms) -> Refusal | None:
        destinations = self._routing().destinations
        if not (destinations.empty or is_test_number(sms.to)):  # the sender's first refusal
            region = region_of(sms.to)
            blocked = destinations.refused_overall(sms.to, region) or destinations.refused_by(
                provider, sms.to, region
            )
            if blocked:
                return Refusal(provider, DESTINATION_BLOCKED, f"destination refused: {blocked}")
        try:
            self._checkers[provider].check(sms)
        except RuleViolation as exc:
            return Refusal(provider, f"rule:{exc.rule}", exc.detail)
        return None

    def _candidates(
        self, job: Job, answer: Callable[[str], Refusal | None]
    ) -> tuple[tuple[str, ...], str, bool]:
        """The providers the sender could try for `job` (routing.Router.plan without its
        random draw), the route's name, and whether every one of them must accept."""
        m = job.message
        if m.provider is not None and not m.failover:  # pinned: no other candidate
            return (m.provider,), "named", False
        config = self._routing()
        rule = next(
            (r for r in config.rules if r.matches(job.to, region_of(job.to), m.commercial)), None
        )
        pool = list(rule.providers) if rule else [self.default_provider]
        if m.provider is not None:
            return (m.provider, *[p for p in pool if p != m.provider]), "named", False
        label = (rule.name or "rule") if rule else "default"
        if m.failover is not False or rule is None:
            return tuple(pool), label, False
        if rule.strategy == "cheapest":  # one deterministic first choice
            router = Router(lambda: config, self.default_provider)

            def segments(provider: str) -> int:
                if answer(provider) is not None:
                    return 1
                return self._checkers[provider].check(job.sms()).segments

            plan = router.plan(job.to, m.commercial, None, False, segments)
            return plan.providers[:1], label, False
        # weighted, no failover: the first draw is the only try, and any weighted one may win
        return tuple(p for p, w in rule.providers.items() if w > 0), label, True

    # --- quoting -------------------------------------------------------------------------

    def quote(self, to: str, text: str, *, now: datetime | None = None, **fields: Any) -> Quote:
        """What the sender would do with this message and what it would cost (`smsgate.quote`),
        without sending or recording anything. With the stack's health table (`health_table`)
        the recipient's velocity and the month's budgets are judged too, with the opt-outs
        table (`optouts_table`) whether the number opted out. A body that breaks the queue
        contract raises Refused."""
        verdict = self.check_row({"to": to, "text": text, **fields})
        if verdict.invalid:
            raise Refused(verdict.reason, {0: verdict})
        job = parse(encode(verdict.body), verdict.id, self.default_provider)
        assert isinstance(job, Job)
        return quote(
            self._routing(),
            Plan(verdict.candidates, len(verdict.candidates) > 1, verdict.route),
            job.sms(),
            self._checkers,
            counters=self.counters,
            opted_out=self._opted_out(job.to),
            now=now,
        )

    def _opted_out(self, phone: str) -> bool:
        if not self.optouts_table or is_test_number(phone):
            return False
        answer = self.dynamodb.get_item(
            TableName=self.optouts_table,
            Key={"phone": {"S": phone}},
            ProjectionExpression="phone",
            ConsistentRead=True,
        )
        return "Item" in answer

    @property
    def dynamodb(self) -> Any:
        if self._dynamodb is None:
            self._dynamodb = _client("dynamodb")
        return self._dynamodb

    @property
    def counters(self) -> Counters | None:
        if self._counters is None and self.health_table:
            self._counters = Counters(self.health_table, self.dynamodb)
        return self._counters

    # --- queueing ------------------------------------------------------------------------

    def send(self, to: str, text: str, **fields: Any) -> str:
        """Check the message and queue it; its id (generated unless `id=` is given). Raises
        Refused (nothing queued) when the sender would refuse it."""
        verdict = self.check(to, text, **fields)
        if not verdict.accepted:
            raise Refused(verdict.reason, {0: verdict})
        return self.queue([verdict])[0]

    def check_many(self, rows: Iterable[Mapping[str, Any]]) -> list[Verdict]:
        return [self.check_row(row) for row in rows]

    def send_many(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Check every row first; if any is refused, raise Refused naming each refused row
        (`rows[3]: ...`) and queue nothing. Else queue them all (SendMessageBatch, 10 a call;
        entries SQS fails on its side are tried again with backoff) and return the ids in row
        order. Raises NotQueued when SQS will not take some (it says which are queued)."""
        verdicts = self.check_many(rows)
        refused = {n: v for n, v in enumerate(verdicts) if not v.accepted}
        if refused:
            shown = "; ".join(f"rows[{n}]: {v.reason}" for n, v in list(refused.items())[:5])
            more = f"; and {len(refused) - 5} more" if len(refused) > 5 else ""
            raise Refused(
                f"{len(refused)} of {len(verdicts)} rows refused, nothing queued: {shown}{more}",
                refused,
            )
        return self.queue(verdicts)

    def queue(self, verdicts: Sequence[Verdict]) -> list[str]:
        """Put accepted verdicts' bodies on the queue; their ids in order."""
        refused = [n for n, v in enumerate(verdicts) if not v.accepted]
        if refused:
            raise ValueError(f"rows {refused} were refused: they cannot be queued")
        bodies = [encode(v.body) for v in verdicts]
        ids = [v.id for v in verdicts]
        failed: dict[int, str] = {}
        stopped = ""
        for chunk in _chunks(bodies):
            if stopped:
                failed.update({row: f"not tried: {stopped}" for row in chunk})
                continue
            not_taken, stopped = self._put(chunk, bodies)
            failed.update(not_taken)
        if failed:
            raise NotQueued(ids, (n for n in range(len(ids)) if n not in failed), failed)
        return ids

    def _put(self, chunk: list[int], bodies: list[str]) -> tuple[dict[int, str], str]:
        """Put one chunk (row indexes). Returns the rows SQS did not take, with the reason, and
        the reason to stop (a call SQS refused outright: the next would be refused too)."""
        left = {str(n): row for n, row in enumerate(chunk)}  # entry id -> row
        refused: dict[int, str] = {}  # entries that cannot pass (SenderFault)
        last: dict[int, str] = {}
        pause = self.PAUSE
        for attempt in range(1, self.ATTEMPTS + 1):
            entries = [{"Id": key, "MessageBody": bodies[row]} for key, row in left.items()]
            try:
                answer = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:
                reason = describe(exc)
                if not is_transient(exc):
                    return {**refused, **dict.fromkeys(left.values(), reason)}, reason
                last = dict.fromkeys(left.values(), reason)
            else:
                done = {s["Id"] for s in answer.get("Successful", [])}
                failures = {f["Id"]: f for f in answer.get("Failed", []) if f.get("Id") in left}
                for key, f in failures.items():
                    if f.get("SenderFault") and key not in done:
                        refused[left[key]] = f"{f.get('Code', 'refused')}: {f.get('Message', '')}"
                left = {k: r for k, r in left.items() if k not in done and r not in refused}
                last = {
                    r: str(failures.get(k, {}).get("Code") or "no answer") for k, r in left.items()
                }
            if not left:
                return refused, ""
            if attempt < self.ATTEMPTS:
                self.sleep(min(self.MAX_PAUSE, pause) * random.uniform(0.5, 1.0))
                pause *= 2
        spent = {row: f"{reason} ({self.ATTEMPTS} tries)" for row, reason in last.items()}
        return {**refused, **spent}, ""


def _chunks(bodies: list[str]) -> Iterable[list[int]]:
    """Row indexes in SendMessageBatch calls: at most 10 entries and 256 KiB of bodies."""
    chunk: list[int] = []
    size = 0
    for n, body in enumerate(bodies):
        length = len(body.encode())
        if chunk and (len(chunk) == SQS_BATCH or size + length > SQS_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(n)
        size += length
    if chunk:
        yield chunk


def encode(body: Mapping[str, Any]) -> str:
    """A queue body as the producer puts it on the queue: compact JSON, ASCII only (SQS
    refuses some characters a text may hold; JSON escapes carry them)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


# --- the published schema ------------------------------------------------------------------


def queue_body_schema() -> dict[str, Any]:
    """The send queue body's JSON schema (draft 2020-12), generated from QueueMessage."""
    schema = QueueMessage.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": f"smsgate send queue body, version {SCHEMA_VERSION}",
        "description": (
            "One JSON object per SQS message on the send queue (docs/contract.md, The send "
            "queue body). The schema holds the types and the id's pattern; a valid number for "
            "its country and each provider's rules are checked by the sender (and by "
            "smsgate.producer before queueing)."
        ),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m smsgate.producer [PATH]`: write the queue body's schema (default
    schemas/queue-body.v1.json)."""
    import sys
    from pathlib import Path

    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0] if args else SCHEMA_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(queue_body_schema(), indent=2) + "\n", encoding="utf-8")
    print(path)


if __name__ == "__main__":
    main()
