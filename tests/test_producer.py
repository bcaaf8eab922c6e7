"""The producer client (smsgate.producer): every message checked by the sender's own rules
before it is queued, refusals that name the rule and queue nothing, SendMessageBatch partial
failures retried until each message is on the queue exactly once, and the published schema of
the queue body. Against the template's send queue in moto."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from botocore.exceptions import ClientError

from smsgate import producer as producer_module
from smsgate.producer import NotQueued, Producer, Refused
from smsgate.queue_body import QueueMessage, parse
from smsgate.routing import RoutingConfig

ROOT = Path(__file__).resolve().parents[1]
US, FR = "+12125551234", "+33612345678"
STOP = "STOP sms-s.top"


@pytest.fixture
def queue_url(stack: Any) -> str:
    return str(stack.queues["SendQueue"])


@pytest.fixture
def sqs(stack: Any) -> Any:
    import boto3

    return boto3.client("sqs")


def make(queue_url: str, sqs: Any, **kw: Any) -> Producer:
    p = Producer(queue_url, sqs=sqs, **kw)
    p.sleep = lambda seconds: None
    return p


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every body on the queue (received and deleted)."""
    bodies: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)
        if not answer.get("Messages"):
            return bodies
        bodies.extend(json.loads(m["Body"]) for m in answer["Messages"])
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                for n, m in enumerate(answer["Messages"])
            ],
        )


@pytest.fixture
def linear_moto_sqs(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto counts every queued message for the queue's approximate figures on each message
    sent or received (O(n²) for a thousand): the figures, unused here, are made constant."""
    from moto.sqs.models import Queue

    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        monkeypatch.setattr(Queue, name, property(lambda self: 0))


# --------------------------------------------------------------------------- named providers

# (label, to, text, fields, the refusal the sender records)
NAMED_REFUSALS = [
    ("club texting: 131 characters", US, "x" * 131, {"provider": "clubtexting"},
     "clubtexting: rule:length: message is 131 characters, limit 130"),
    ("club texting: a quote in the text", US, "Don't miss it", {"provider": "clubtexting"},
     "clubtexting: rule:quotes: message or subject contains ' or \""),
    ("club texting: a quote in the subject", US, "Sale", {"provider": "clubtexting",
     "subject": 'Big "sale"'}, "clubtexting: rule:quotes: message or subject contains ' or \""),
    ("club texting: not a US number", FR, "Bonjour", {"provider": "clubtexting"},
     "clubtexting: rule:number: Club Texting only reaches 10-digit US numbers"),
    ("club texting: a TextingHouse option", US, "Hi", {"provider": "clubtexting", "sender": "a"},
     "clubtexting: rule:options: sender is a TextingHouse option"),
    ("group texting: a 14-character subject", US, "Hi", {"provider": "grouptexting",
     "subject": "s" * 14}, "grouptexting: rule:subject: subject is 14 characters, limit 13"),
    ("group texting: 161 characters", US, "y" * 161, {"provider": "grouptexting"},
     "grouptexting: rule:length: subject and message counts 161 characters, limit 160"),
    ("textinghouse: a 12-character sender", FR, "Bonjour", {"provider": "textinghouse",
     "sender": "ShopTwelve12"}, "textinghouse: rule:sender: sender id must be 1-11 of [A-Za-z0-9]"),
    ("textinghouse: commercial without the STOP mention", FR, "Promo -20%",
     {"provider": "textinghouse", "commercial": True},
     f"textinghouse: rule:stop_mention: a commercial message must end with '{STOP}'"),
    ("textinghouse: outside GSM 03.38", FR, "Bonjour \U0001f600", {"provider": "textinghouse"},
     "textinghouse: rule:charset: 1 character(s) outside GSM 03.38, e.g. U+1F600"),
    ("textinghouse: a subject", FR, "Bonjour", {"provider": "textinghouse", "subject": "s"},
     "textinghouse: rule:options: subject and express are not TextingHouse options"),
    ("every provider: blank text", US, "   ", {"provider": "grouptexting"},
     "grouptexting: rule:empty: message text is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("to", "text", "fields", "reason"), [r[1:] for r in NAMED_REFUSALS],
                         ids=[r[0] for r in NAMED_REFUSALS])  # fmt: skip
def test_a_named_provider_refusal_queues_nothing(
    queue_url: str, sqs: Any, to: str, text: str, fields: dict[str, Any], reason: str
) -> None:
    p = make(queue_url, sqs)
    verdict = p.check(to, text, **fields)
    assert not verdict.accepted and verdict.reason == reason
    assert verdict.candidates == (fields["provider"],) and verdict.route == "named"
    with pytest.raises(Refused) as refused:
        p.send(to, text, **fields)
    assert str(refused.value) == reason
    assert isinstance(refused.value, ValueError)
    assert refused.value.code == reason.split(": ")[1]
    assert to not in str(refused.value)
    assert not text.strip() or text not in str(refused.value)
    assert drain(sqs, queue_url) == []


def test_what_a_provider_accepts_is_queued_as_the_sender_reads_it(queue_url: str, sqs: Any) -> None:
    p = make(queue_url, sqs)
    ok = [
        ("2125551234", "x" * 130, {"provider": "clubtexting", "subject": "Sale"}),
        (FR, f"Promo -20% {STOP}", {"provider": "textinghouse", "commercial": True}),
        (FR, "Bonjour", {"provider": "textinghouse", "sender": "Shop11chars"}),
        (US, "y" * 160, {"provider": "grouptexting", "id": "gt-1"}),
    ]
    ids = [p.send(to, text, **fields) for to, text, fields in ok]
    assert ids[3] == "gt-1" and len(set(ids)) == 4
    bodies = {b["id"]: b for b in drain(sqs, queue_url)}
    assert bodies[ids[0]] == {"id": ids[0], "to": US, "text": "x" * 130,
                              "provider": "clubtexting", "subject": "Sale"}  # fmt: skip
    for body in bodies.values():
        job = parse(json.dumps(body), "sqs-id", "textinghouse")  # what the sender reads
        assert job.id == body["id"] and job.provider == body["provider"]  # type: ignore[union-attr]


def test_a_body_the_contract_refuses(queue_url: str, sqs: Any) -> None:
    p = make(queue_url, sqs)
    cases = [
        ((US, "Hi"), {"comercial": True}, "comercial: Extra inputs are not permitted"),
        (("12345", "Hi"), {}, "to: phone number is not a valid number for its country"),
        ((US, "Hi"), {"id": "not a valid id!"}, "id: String should match pattern"),
        ((US, "Hi"), {"provider": "twilio"}, "provider: Input should be 'clubtexting'"),
        ((US, "Hi"), {"commercial": "yes"}, "commercial: Input should be a valid boolean"),
    ]
    for (to, text), fields, reason in cases:
        verdict = p.check(to, text, **fields)
        assert verdict.code == "invalid_body" and reason in verdict.reason, verdict.reason
        with pytest.raises(Refused, match="invalid_body"):
            p.send(to, text, **fields)
    assert drain(sqs, queue_url) == []


# --------------------------------------------------------------------------- routed messages

RULES = {
    "rules": [
        {"name": "us-marketing", "countries": ["US"], "commercial": True,
         "providers": {"textinghouse": 1}},
        {"name": "us", "countries": ["US"], "providers": {"clubtexting": 2, "grouptexting": 1}},
        {"name": "us-strict", "prefixes": ["+1415"], "providers": {"clubtexting": 1}},
        {"name": "rest", "providers": {"textinghouse": 1}},
    ],
}  # fmt: skip


def test_routed_messages_are_checked_against_every_candidate(queue_url: str, sqs: Any) -> None:
    p = make(queue_url, sqs, routing=RULES)
    # 150 characters: Club Texting (130) refuses, Group Texting (160) takes it
    verdict = p.check(US, "z" * 150)
    assert verdict.accepted and verdict.route == "us"
    assert verdict.candidates == ("clubtexting", "grouptexting")
    assert verdict.accepting == ("grouptexting",)
    assert verdict.as_dict()["refused"] == {
        "clubtexting": "clubtexting: rule:length: message is 150 characters, limit 130"
    }
    assert p.send(US, "z" * 150)
    # 170 characters: neither takes it; the first choice's reason, as the sender records it
    with pytest.raises(Refused, match=r"^clubtexting: rule:length: message is 170 characters"):
        p.send(US, "z" * 170)
    # no failover: only one provider is tried and either may be drawn, so both must accept
    refused = p.check(US, "z" * 150, failover=False)
    assert not refused.accepted and refused.every
    assert p.check(US, "z" * 100, failover=False).accepted
    # commercial US messages go to TextingHouse only: its STOP rule applies
    with pytest.raises(Refused, match="textinghouse: rule:stop_mention"):
        p.send(US, "Sale today", commercial=True)
    assert p.check(US, f"Sale today {STOP}", commercial=True).candidates == ("textinghouse",)
    # a French number matches "rest": TextingHouse's charset applies
    with pytest.raises(Refused, match="textinghouse: rule:charset"):
        p.send(FR, "Bonjour \U0001f600")
    # a named provider with failover: the named one first, then the rule's others
    named = p.check(US, "z" * 150, provider="clubtexting", failover=True)
    assert named.accepted and named.candidates == ("clubtexting", "grouptexting")
    assert not p.check(US, "z" * 150, provider="clubtexting").accepted  # pinned
    assert [b["text"] for b in drain(sqs, queue_url)] == ["z" * 150]


def test_without_rules_the_default_provider_decides(queue_url: str, sqs: Any) -> None:
    textinghouse = make(queue_url, sqs)  # the registry's default, as the template's
    assert textinghouse.check(US, "x" * 200).accepted  # TextingHouse splits long texts
    with pytest.raises(Refused, match="textinghouse: rule:charset"):
        textinghouse.send(US, "\u4f60\u597d")
    club = make(queue_url, sqs, default_provider="clubtexting")
    verdict = club.check(FR, "Bonjour")
    assert verdict.route == "default" and verdict.candidates == ("clubtexting",)
    assert verdict.reason.startswith("clubtexting: rule:number")
    # TextingHouse's free test number only when the message goes to TextingHouse
    assert textinghouse.check("999", "test").accepted
    assert club.check("999", "test").code == "invalid_body"
    with pytest.raises(ValueError, match="default_provider"):
        Producer(queue_url, default_provider="twilio")


def test_a_cheapest_rule_without_failover_checks_its_one_choice(queue_url: str, sqs: Any) -> None:
    rules = {
        "rules": [{"strategy": "cheapest", "providers": {"clubtexting": 1, "grouptexting": 1}}],
        "prices": {"clubtexting": 0.01, "grouptexting": 0.03},
    }
    p = make(queue_url, sqs, routing=RoutingConfig.parse(rules))
    assert p.check(US, "z" * 150, failover=False).candidates == ("clubtexting",)
    assert not p.check(US, "z" * 150, failover=False).accepted
    assert p.check(US, "z" * 150).accepted  # with failover Group Texting carries it
    routed = make(queue_url, sqs, routing=lambda: RoutingConfig.parse(rules))  # a live source
    assert routed.check(US, "z" * 100, failover=False).accepted


def test_the_verdicts_are_the_senders(stack: Any, sims: Any) -> None:
    """For every message and rule set, the producer accepts exactly what the sender's own
    routing finds a provider for (failover allowed: the order does not matter)."""
    from conftest import secret_for

    from smsgate import wiring
    from smsgate.config import settings
    from smsgate.send import SendService

    texts = ["Hi", "z" * 131, "z" * 161, "Don't", "Bonjour \U0001f600", f"Promo {STOP}", " "]
    numbers = [US, FR, "+14155550123", "999"]
    options: list[dict[str, Any]] = [
        {}, {"commercial": True}, {"provider": "clubtexting"}, {"sender": "Shop"},
        {"provider": "grouptexting", "failover": True}, {"subject": "Deal"},
    ]  # fmt: skip
    compared = Counter[bool]()
    for document in (None, RULES):
        config = RoutingConfig.parse(document)
        service = SendService(
            settings(), wiring.store(), lambda: secret_for(sims), routing=lambda c=config: c
        )
        p = Producer("unused", routing=config, default_provider="textinghouse")
        for to in numbers:
            for text in texts:
                for fields in options:
                    verdict = p.check(to, text, **fields)
                    job = parse(json.dumps(verdict.body), "sqs-id", "textinghouse")
                    if verdict.invalid:
                        assert not hasattr(job, "message"), (to, text, fields)
                        continue
                    route = service.route(job, job.sms())  # type: ignore[arg-type,union-attr]
                    assert verdict.accepted == bool(route.ready), (to, text, fields, document)
                    assert set(verdict.candidates) == set(route.plan.providers)
                    compared[verdict.accepted] += 1
    assert compared[True] > 40 and compared[False] > 40


# --------------------------------------------------------------------------- send_many


def test_send_many_refuses_the_batch_with_row_numbers(queue_url: str, sqs: Any) -> None:
    p = make(queue_url, sqs)
    rows = [
        {"to": US, "text": "fine", "provider": "clubtexting"},
        {"to": US, "text": "x" * 131, "provider": "clubtexting"},
        {"to": US, "text": "fine again"},
        {"to": FR, "text": "Promo", "provider": "textinghouse", "commercial": True},
        {"to": "nope", "text": "fine"},
    ]
    with pytest.raises(Refused) as refused:
        p.send_many(rows)
    assert sorted(refused.value.verdicts) == [1, 3, 4]
    message = str(refused.value)
    assert message.startswith("3 of 5 rows refused, nothing queued: rows[1]: clubtexting: rule:")
    assert "rows[3]: textinghouse: rule:stop_mention" in message
    assert "rows[4]: invalid_body: invalid message: to:" in message
    assert drain(sqs, queue_url) == []
    assert [v.accepted for v in p.check_many(rows)] == [True, False, True, False, False]


class FlakySqs:
    """The real boto3 client, with SendMessageBatch failing a random share of its entries on
    their first tries (`InternalError`, SQS's side: retryable), and sometimes the whole call
    (`ServiceUnavailable`, before it reaches the queue). A refused entry is never queued."""

    def __init__(self, client: Any, seed: int, share: float = 0.3, times: int = 2) -> None:
        self.client, self.rng, self.share, self.times = client, random.Random(seed), share, times
        self.refused: Counter[str] = Counter()  # body -> entries refused
        self.calls = 0
        self.sender_fault: set[str] = set()  # bodies refused for good (SenderFault)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        assert len(Entries) <= 10
        self.calls += 1
        if self.rng.random() < 0.05:
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "try again"}},
                "SendMessageBatch",
            )
        keep, failed = [], []
        for entry in Entries:
            body = entry["MessageBody"]
            if body in self.sender_fault:
                failed.append({"Id": entry["Id"], "SenderFault": True,
                               "Code": "InvalidMessageContents", "Message": "refused"})  # fmt: skip
            elif self.refused[body] < self.times and self.rng.random() < self.share:
                self.refused[body] += 1
                failed.append({"Id": entry["Id"], "SenderFault": False,
                               "Code": "InternalError", "Message": "try again"})  # fmt: skip
            else:
                keep.append(entry)
        answer = (
            self.client.send_message_batch(QueueUrl=QueueUrl, Entries=keep)
            if keep
            else {"Successful": []}
        )
        return {**answer, "Failed": [*answer.get("Failed", []), *failed]}


def test_send_many_queues_1000_messages_exactly_once_through_partial_failures(
    queue_url: str, sqs: Any, linear_moto_sqs: None
) -> None:
    flaky = FlakySqs(sqs, seed=1042)
    p = make(queue_url, flaky)
    pauses: list[float] = []
    p.sleep = pauses.append
    rows = [
        {"to": f"+1212555{n:04d}", "text": f"Sale today, ticket {n}",
         **({"id": f"order-{n}"} if n % 3 == 0 else {}),
         **({"provider": "grouptexting"} if n % 2 else {})}
        for n in range(1000)
    ]  # fmt: skip
    ids = p.send_many(rows)
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert all(ids[n] == f"order-{n}" for n in range(0, 1000, 3))  # given ids kept
    assert sum(flaky.refused.values()) > 200  # the failures were real
    assert pauses and max(pauses) <= Producer.MAX_PAUSE  # and waited out with backoff
    queued = drain(sqs, queue_url)
    counts = Counter(b["id"] for b in queued)
    assert len(queued) == 1000 and set(counts.values()) == {1}  # every message exactly once
    by_id = {b["id"]: b for b in queued}
    for n, message_id in enumerate(ids):  # the ids returned are the bodies queued, in order
        body = by_id[message_id]
        assert body["text"] == f"Sale today, ticket {n}" and body["to"] == rows[n]["to"]
        assert body.get("provider") == rows[n].get("provider")


def test_an_entry_sqs_refuses_for_good_is_reported_not_retried(queue_url: str, sqs: Any) -> None:
    flaky = FlakySqs(sqs, seed=7, share=0.0)
    p = make(queue_url, flaky)
    rows = [{"to": US, "text": f"m{n}", "id": f"m{n}"} for n in range(25)]
    bad = next(v for v in p.check_many(rows) if v.id == "m12")
    flaky.sender_fault.add(producer_module.encode(bad.body))
    with pytest.raises(NotQueued) as not_queued:
        p.send_many(rows)
    error = not_queued.value
    assert error.failed == {12: "InvalidMessageContents: refused"}
    assert error.queued == [n for n in range(25) if n != 12]
    assert error.ids == [f"m{n}" for n in range(25)]
    assert flaky.calls <= 4  # three chunks (and perhaps one ServiceUnavailable): no retry loop
    assert sorted(b["id"] for b in drain(sqs, queue_url)) == sorted(
        f"m{n}" for n in range(25) if n != 12
    )


def test_retries_are_bounded(queue_url: str, sqs: Any) -> None:
    flaky = FlakySqs(sqs, seed=3, share=1.0, times=100)  # SQS fails every entry
    p = make(queue_url, flaky)
    with pytest.raises(NotQueued) as not_queued:
        p.send_many([{"to": US, "text": "hi", "id": "a"}, {"to": US, "text": "ho", "id": "b"}])
    assert set(not_queued.value.failed) == {0, 1}
    assert all(f"{Producer.ATTEMPTS} tries" in r for r in not_queued.value.failed.values())
    assert drain(sqs, queue_url) == []


def test_a_queue_that_does_not_exist_stops_at_the_first_call(stack: Any, sqs: Any) -> None:
    p = make(stack.queues["SendQueue"] + "-missing", sqs)
    with pytest.raises(NotQueued) as not_queued:
        p.send_many([{"to": US, "text": f"m{n}"} for n in range(15)])
    reasons = list(not_queued.value.failed.values())
    assert len(reasons) == 15 and reasons[-1].startswith("not tried: ")


def test_large_bodies_are_split_by_size(queue_url: str, sqs: Any) -> None:
    p = make(queue_url, sqs)
    rows = [{"to": US, "text": "x" * 60_000} for _ in range(6)]  # TextingHouse splits them
    calls: list[int] = []
    real = sqs.send_message_batch

    def counted(**kw: Any) -> Any:
        calls.append(len(kw["Entries"]))
        return real(**kw)

    p._sqs = type("Counted", (), {"send_message_batch": staticmethod(counted)})()
    assert len(p.send_many(rows)) == 6
    assert calls == [4, 2]  # 256 KiB a call
    assert p.check(US, "x" * 300_000).reason.startswith("invalid_body: body is over SQS's")


# --------------------------------------------------------------------------- the schema


def test_the_committed_queue_body_schema_is_the_model() -> None:
    committed = json.loads((ROOT / producer_module.SCHEMA_FILE).read_text(encoding="utf-8"))
    assert committed == producer_module.queue_body_schema(), (
        f"{producer_module.SCHEMA_FILE} is stale: run `python -m smsgate.producer`"
    )
    jsonschema.Draft202012Validator.check_schema(committed)
    assert set(committed["properties"]) == set(QueueMessage.model_fields)


def test_the_schema_refuses_what_the_model_refuses() -> None:
    schema = producer_module.queue_body_schema()
    good = {"id": "order-1042", "to": FR, "text": "Shipped", "provider": "textinghouse"}
    jsonschema.validate(good, schema)
    QueueMessage.model_validate(good)
    for broken in (
        {**good, "comercial": True},
        {**good, "commercial": "true"},
        {**good, "id": "x" * 33},
        {**good, "provider": "twilio"},
        {k: v for k, v in good.items() if k != "text"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
        with pytest.raises(ValueError):
            QueueMessage.model_validate(broken)


def test_the_generator_writes_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "queue-body.v1.json"
    producer_module.main([str(target)])
    assert json.loads(target.read_text()) == producer_module.queue_body_schema()
    assert str(target) in capsys.readouterr().out
