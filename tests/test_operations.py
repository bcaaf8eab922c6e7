"""Operations: reconciliation of messages left sent or unknown, the
alarms and the dashboard of template.yaml.

Reconciliation runs the real functions/reconcile/app.py against moto (tables from
template.yaml, so the ByPendingStatus index too) and the TextingHouse simulator over HTTP.
Messages are recorded through the store's own claim/advance, as the sender records them; a
message is made "old" by running the service with a clock set later.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from conftest import LambdaContext, load_function
from sqs_source import poll_once, send_bodies

from smsgate.store import Transition
from smsgate_local.stack import ROOT, load_template, resources_of_type

PROVIDERS = ("clubtexting", "grouptexting", "textinghouse")
LAYER = ROOT / "layers" / "smsgate" / "smsgate"
TH_NUMBER = "+33612345678"
AFTER = timedelta(minutes=31)  # just past RECONCILE_AFTER_MINUTES (30)
PAST_DEADLINE = timedelta(hours=73)  # just past RECONCILE_DEADLINE_HOURS (72)


# --------------------------------------------------------------------------- helpers


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def metric(lines: list[dict[str, Any]], name: str, provider: str | None = None) -> float:
    """The value of `name` for `provider` (None: the total without a Provider dimension)."""
    values = [
        m[name][0]
        for m in lines
        if name in m and m.get("Provider") == provider and "Reason" not in m
    ]
    return float(sum(values))


@pytest.fixture
def reconcile(stack: Any) -> Iterator[Any]:
    """The reconcile function's handler; its service is rebuilt for every test."""
    from smsgate import wiring

    wiring.reconcile_service.cache_clear()
    yield load_function("reconcile").lambda_handler
    wiring.reconcile_service.cache_clear()


@pytest.fixture
def service(reconcile: Any) -> Any:
    from smsgate import wiring

    return wiring.reconcile_service()


def run(reconcile: Any, service: Any, later: timedelta = AFTER) -> dict[str, int]:
    """One scheduled run, `later` than now."""
    service.clock = lambda: datetime.now(UTC) + later
    counts: dict[str, int] = reconcile(sample_event(), LambdaContext(120_000))["counts"]
    return counts


def sample_event() -> dict[str, Any]:
    return json.loads((ROOT / "events" / "reconcile.json").read_text())


def record(
    message_id: str,
    provider: str,
    status: str,
    *,
    to: str = TH_NUMBER,
    provider_message_id: str | None = None,
) -> None:
    """A message as the sender leaves it: claimed, then advanced to `sent` or `unknown`."""
    from smsgate import wiring
    from smsgate.status import Status
    from smsgate.store import now_iso

    store = wiring.store()
    claim = store.claim(
        message_id, {"direction": "out", "provider": provider, "to": to, "text": "hello"}, 30
    )
    assert claim.won
    if status == "sent":
        attrs = {"provider_message_id": provider_message_id, "sent_at": now_iso()}
        assert store.advance(
            message_id,
            Transition(Status.SENT, source="send", raw="ID", attrs=attrs, lease=claim.lease),
        )
    else:
        attrs = {"error_code": "no_answer", "error": "no answer within 1 s"}
        assert store.advance(
            message_id,
            Transition(
                Status.UNKNOWN, source="send", raw="no_answer", attrs=attrs, lease=claim.lease
            ),
        )


def th_sent(sims: Any, service: Any, message_id: str, status: str, outcome: int | None) -> str:
    """Send through the TextingHouse simulator (so it knows our climsgid) and record it;
    `outcome` is the status the simulator then reports (None: its default, delivered)."""
    from smsgate.providers import OutboundSms

    client = service.clients.get("textinghouse")
    sent = client.send(OutboundSms(message_id, TH_NUMBER, f"hello {message_id}"))  # no flood
    assert sent.provider_message_id, sent
    if outcome is not None:
        sims.textinghouse.set_status(sent.provider_message_id, outcome)
    record(message_id, "textinghouse", status, provider_message_id=sent.provider_message_id)
    return str(sent.provider_message_id)


def message(stack: Any, message_id: str) -> dict[str, Any]:
    from smsgate.store import from_item

    item = boto3.client("dynamodb").get_item(
        TableName=stack.tables["MessagesTable"], Key={"id": {"S": message_id}}
    )["Item"]
    return from_item(item)


def history(stack: Any, message_id: str) -> list[tuple[str, str, str]]:
    items = boto3.client("dynamodb").query(
        TableName=stack.tables["StatusTable"],
        KeyConditionExpression="message_id = :m",
        ExpressionAttributeValues={":m": {"S": message_id}},
    )["Items"]
    return [(i["status"]["S"], i["source"]["S"], i.get("raw", {}).get("S", "")) for i in items]


def lookups(sims: Any) -> list[str]:
    """Our ids that TextingHouse was asked about (getstatus by climsgid)."""
    return [
        r.fields.get("climsgid", "")
        for r in sims.textinghouse.requests
        if r.fields.get("cmd") == "getstatus"
    ]


def age(stack: Any, message_id: str, by: timedelta) -> None:
    """Make a message older: its sending and waiting timestamps moved back by `by`."""
    from smsgate.store import now_iso

    then = now_iso(datetime.now(UTC) - by)
    boto3.client("dynamodb").update_item(
        TableName=stack.tables["MessagesTable"],
        Key={"id": {"S": message_id}},
        UpdateExpression="SET sent_at = :t, status_at = :t, pending_at = :t",
        ExpressionAttributeValues={":t": {"S": then}},
    )


# --------------------------------------------------------------------------- the store's index


def test_waiting_statuses_enter_the_index_and_final_ones_leave_it(stack: Any) -> None:
    from smsgate import wiring
    from smsgate.status import Status

    record("w1", "clubtexting", "sent")
    m = message(stack, "w1")
    assert m["pending"] == "sent" and m["pending_at"] == m["status_at"]
    assert wiring.store().advance("w1", Transition(Status.UNKNOWN, source="send"))
    assert message(stack, "w1")["pending"] == "unknown"
    assert wiring.store().advance("w1", Transition(Status.DELIVERED, source="dlr"))
    assert "pending" not in message(stack, "w1") and "pending_at" not in message(stack, "w1")


def test_messages_the_send_function_sends_are_settled_by_lookup(
    stack: Any, sims: Any, reconcile: Any, service: Any
) -> None:
    """End to end: the real sender records the message, the real handler settles it."""
    send = load_function("send").lambda_handler
    url, arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
    send_bodies(url, [{"id": "e2e1", "to": TH_NUMBER, "text": "hello"}])
    poll_once(url, arn, send)
    assert message(stack, "e2e1")["pending"] == "sent"
    deadline = time.monotonic() + 5
    while sims.textinghouse.messages[0].status != 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # the simulator delivers after its dlr_delay
    counts = run(reconcile, service)
    assert counts == {"examined": 1, "settled": 1}
    assert message(stack, "e2e1")["status"] == "delivered"
    assert lookups(sims) == ["e2e1"]


# --------------------------------------------------------------------------- TextingHouse


LOOKUPS = [
    # (label, waiting status, TextingHouse status code, settled status, error_code after)
    ("sent, 3 delivered", "sent", 3, "delivered", None),
    ("sent, 4 expired", "sent", 4, "undelivered", "4"),
    ("sent, 5 not subscribed", "sent", 5, "undelivered", "5"),
    ("sent, 7 prohibited", "sent", 7, "failed", "7"),
    ("unknown, 3 delivered", "unknown", 3, "delivered", "no_answer"),
    ("unknown, 6 not received", "unknown", 6, "undelivered", "6"),
    ("unknown, 20 no credit", "unknown", 20, "failed", "20"),
]


@pytest.mark.parametrize(
    ("label", "waiting", "code", "settled", "error_code"), LOOKUPS, ids=[c[0] for c in LOOKUPS]
)
def test_textinghouse_final_status_settles_the_message(
    stack: Any,
    sims: Any,
    reconcile: Any,
    service: Any,
    capsys: Any,
    label: str,
    waiting: str,
    code: int,
    settled: str,
    error_code: str | None,
) -> None:
    th_sent(sims, service, "m1", waiting, code)
    capsys.readouterr()
    counts = run(reconcile, service)
    assert counts == {"examined": 1, "settled": 1}
    m = message(stack, "m1")
    assert m["status"] == settled
    assert m.get("error_code") == error_code
    assert "pending" not in m
    assert history(stack, "m1")[-1] == (settled, "poll", str(code))
    assert lookups(sims) == ["m1"]
    lines = emf(capsys.readouterr().out)
    assert metric(lines, "ReconcileSettled", "textinghouse") == 1
    assert metric(lines, "ReconcileSettled") == 1
    assert metric(lines, f"Messages{settled.capitalize()}", "textinghouse") == 1
    # settled for good: the next run has nothing to do
    assert run(reconcile, service, AFTER * 2) == {}


def test_textinghouse_in_progress_waits_for_a_later_run(
    stack: Any, sims: Any, reconcile: Any, service: Any
) -> None:
    sims.textinghouse.set_number_outcome(TH_NUMBER.lstrip("+"), 1)  # never final
    th_sent(sims, service, "m1", "sent", None)
    before = message(stack, "m1")
    assert run(reconcile, service) == {"examined": 1, "still_pending": 1}
    m = message(stack, "m1")
    assert (m["status"], m["pending"], m["status_at"]) == ("sent", "sent", before["status_at"])
    assert m["pending_at"] > before["pending_at"]  # its turn moved to this run
    assert history(stack, "m1") == [("sent", "send", "ID")]  # no status change, no item
    # the same run time again: not picked; RECONCILE_AFTER after this run: picked again
    assert run(reconcile, service) == {}
    assert run(reconcile, service, AFTER * 2 + timedelta(minutes=1)) == {
        "examined": 1,
        "still_pending": 1,
    }
    assert lookups(sims) == ["m1", "m1"]


def test_unknown_climsgid_202_leaves_the_message_unknown_with_the_reason(
    stack: Any, sims: Any, reconcile: Any, service: Any
) -> None:
    # TextingHouse never heard of these ids (the request never reached it)
    record("s202", "textinghouse", "sent")
    record("u202", "textinghouse", "unknown")
    assert run(reconcile, service) == {"examined": 2, "not_found": 2}
    for message_id in ("s202", "u202"):
        m = message(stack, message_id)
        assert m["status"] == "unknown"
        assert m["error_code"] == "202"
        assert "no message with this id" in m["error"] and "does not resend" in m["error"]
        assert "pending" not in m and "pending_at" not in m
    assert "when sent: no answer within 1 s" in message(stack, "u202")["error"]
    assert history(stack, "s202")[-1] == ("unknown", "poll", "202")
    assert [h[0] for h in history(stack, "u202")] == ["unknown"]  # no status change, no item
    assert sorted(lookups(sims)) == ["s202", "u202"]
    # never looked up again, never resent
    assert run(reconcile, service, AFTER * 3) == {}
    assert sorted(lookups(sims)) == ["s202", "u202"]
    assert not [r for r in sims.textinghouse.requests if r.fields.get("cmd") == "sendsms"]


def test_a_late_receipt_still_settles_a_message_left_unknown(
    stack: Any, reconcile: Any, service: Any
) -> None:
    from smsgate import wiring
    from smsgate.status import Status

    record("late", "textinghouse", "sent")
    run(reconcile, service)
    assert message(stack, "late")["status"] == "unknown"
    assert wiring.store().advance(
        "late", Transition(Status.DELIVERED, source="dlr", raw="3", expect_provider="textinghouse")
    )
    assert message(stack, "late")["status"] == "delivered"


# --------------------------------------------------------------------------- no status API


@pytest.mark.parametrize("provider", ["clubtexting", "grouptexting"])
@pytest.mark.parametrize("waiting", ["sent", "unknown"])
def test_providers_without_status_api_become_unknown_with_the_reason(
    stack: Any, sims: Any, reconcile: Any, service: Any, provider: str, waiting: str
) -> None:
    record("ct1", provider, waiting, to="+12125551234")
    assert run(reconcile, service) == {"examined": 1, "no_status_api": 1}
    m = message(stack, "ct1")
    assert m["status"] == "unknown"
    assert m["error_code"] == "no_status_api"
    assert f"{provider} has no status API" in m["error"]
    assert "pending" not in m
    expected = [("sent", "send", "ID"), ("unknown", "poll", "no_status_api")]
    if waiting == "unknown":
        expected = [("unknown", "send", "no_answer")]
    assert history(stack, "ct1") == expected
    assert sims.by_name[provider].requests == []
    assert run(reconcile, service, AFTER * 3) == {}


# --------------------------------------------------------------------------- the deadline


def test_past_the_deadline_a_message_becomes_unknown_for_good(
    stack: Any, sims: Any, reconcile: Any, service: Any
) -> None:
    sims.textinghouse.set_number_outcome(TH_NUMBER.lstrip("+"), 1)  # never final
    th_sent(sims, service, "old_sent", "sent", None)
    th_sent(sims, service, "old_unknown", "unknown", None)
    counts = run(reconcile, service, PAST_DEADLINE)
    assert counts == {"examined": 2, "deadline": 2}
    for message_id in ("old_sent", "old_unknown"):
        m = message(stack, message_id)
        assert (m["status"], m["error_code"]) == ("unknown", "deadline")
        assert "no final status within 72 h" in m["error"]
        assert "pending" not in m
    assert history(stack, "old_sent")[-1] == ("unknown", "poll", "deadline")
    assert sorted(lookups(sims)) == ["old_sent", "old_unknown"]  # one last look each
    assert run(reconcile, service, PAST_DEADLINE * 2) == {}


def test_past_the_deadline_a_final_answer_still_wins(
    stack: Any, sims: Any, reconcile: Any, service: Any
) -> None:
    th_sent(sims, service, "m1", "sent", 4)
    assert run(reconcile, service, PAST_DEADLINE) == {"examined": 1, "settled": 1}
    assert message(stack, "m1")["status"] == "undelivered"


def test_past_the_deadline_with_the_provider_down_gives_up_too(
    stack: Any, sims: Any, reconcile: Any, service: Any
) -> None:
    record("m1", "textinghouse", "sent")
    sims.textinghouse.set_fault("http_500")
    assert run(reconcile, service, PAST_DEADLINE) == {"examined": 1, "deadline": 1}
    assert message(stack, "m1")["error_code"] == "deadline"


# --------------------------------------------------------------------------- provider down


def test_provider_down_is_counted_and_left_for_the_next_run(
    stack: Any, sims: Any, reconcile: Any, service: Any, capsys: Any
) -> None:
    for i in range(5):
        th_sent(sims, service, f"d{i}", "sent", 3)
    before = {f"d{i}": message(stack, f"d{i}") for i in range(5)}
    sims.textinghouse.set_fault("http_500")
    capsys.readouterr()
    counts = run(reconcile, service)
    # 3 failed lookups, then TextingHouse counts as down for this run: the rest wait
    assert counts == {"examined": 5, "lookup_failed": 3, "deferred": 2}
    assert len(lookups(sims)) == 3
    lines = emf(capsys.readouterr().out)
    assert metric(lines, "ReconcileLookupFailed", "textinghouse") == 3
    assert metric(lines, "ReconcileLookupFailed") == 3
    assert metric(lines, "ReconcileDeferred") == 2
    for message_id, old in before.items():  # untouched: first in line next time
        assert message(stack, message_id) == old
    sims.textinghouse.clear_faults()
    assert run(reconcile, service) == {"examined": 5, "settled": 5}
    assert {message(stack, f"d{i}")["status"] for i in range(5)} == {"delivered"}


def test_provider_without_credentials_is_a_failed_lookup(
    stack: Any, sims: Any, reconcile: Any, service: Any
) -> None:
    record("m1", "textinghouse", "sent")
    service.clients.credentials = lambda: {"callback_token": "t"}
    assert run(reconcile, service) == {"examined": 1, "lookup_failed": 1}
    assert message(stack, "m1")["pending"] == "sent"


# --------------------------------------------------------------------------- fresh, bounded


def test_fresh_messages_are_untouched(stack: Any, sims: Any, reconcile: Any, service: Any) -> None:
    th_sent(sims, service, "fresh", "sent", 3)
    record("fresh_ct", "clubtexting", "unknown", to="+12125551234")
    record("old_ct", "clubtexting", "sent", to="+12125551234")
    age(stack, "old_ct", timedelta(minutes=45))
    before = message(stack, "fresh"), message(stack, "fresh_ct")
    assert run(reconcile, service, timedelta(0)) == {"examined": 1, "no_status_api": 1}
    assert message(stack, "old_ct")["status"] == "unknown"
    assert (message(stack, "fresh"), message(stack, "fresh_ct")) == before
    assert lookups(sims) == []


def test_a_run_queries_the_index_and_reads_at_most_the_page_limit(
    stack: Any, reconcile: Any, service: Any
) -> None:
    from smsgate.reconcile import ReconcileSettings

    for i in range(7):
        record(f"s{i}", "grouptexting", "sent", to="+12125551234")
    for i in range(3):
        record(f"u{i}", "grouptexting", "unknown", to="+12125551234")
    service.settings = ReconcileSettings(page_limit=4)
    calls: list[tuple[str, dict[str, Any]]] = []
    returned: list[int] = []

    def before_call(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, json.loads(params["body"])))  # the serialised request

    def after_call(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name == "Query":
            returned.append(parsed["ScannedCount"])

    events = service.store.db.meta.events
    events.register("before-call.dynamodb", before_call)
    events.register("after-call.dynamodb", after_call)
    try:
        first = run(reconcile, service)
    finally:
        events.unregister("before-call.dynamodb", before_call)
        events.unregister("after-call.dynamodb", after_call)

    operations = {name for name, _ in calls}
    assert "Scan" not in operations
    queries = [params for name, params in calls if name == "Query"]
    assert queries and all(q["IndexName"] == "ByPendingStatus" for q in queries)
    assert {q["ExpressionAttributeValues"][":status"]["S"] for q in queries} == {"sent", "unknown"}
    assert sum(q["Limit"] for q in queries) <= 4
    assert sum(returned) <= 4
    assert first == {"examined": 4, "no_status_api": 4}
    # shared fairly: both waiting statuses got their turn
    settled = [m for m in ("s0", "s1", "u0", "u1") if "pending" not in message(stack, m)]
    assert settled == ["s0", "s1", "u0", "u1"]
    assert run(reconcile, service) == {"examined": 4, "no_status_api": 4}
    assert run(reconcile, service) == {"examined": 2, "no_status_api": 2}
    assert run(reconcile, service) == {}


def test_a_run_stops_taking_messages_when_time_runs_out(
    stack: Any, reconcile: Any, service: Any
) -> None:
    record("m1", "clubtexting", "sent", to="+12125551234")
    service.clock = lambda: datetime.now(UTC) + AFTER
    assert service.run(lambda: 1_000) == {}
    assert message(stack, "m1")["pending"] == "sent"


# --------------------------------------------------------------------------- handler, event


def test_sample_event_is_a_scheduled_event_the_handler_accepts(stack: Any, reconcile: Any) -> None:
    event = sample_event()
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert reconcile(event, LambdaContext()) == {"counts": {}}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from smsgate.config import ConfigError
    from smsgate.reconcile import ReconcileSettings

    settings = ReconcileSettings.from_env(
        {"RECONCILE_AFTER_MINUTES": "45", "RECONCILE_DEADLINE_HOURS": "48"}
    )
    assert (settings.after_minutes, settings.deadline_hours) == (45, 48)
    assert ReconcileSettings.from_env({}).model_dump() == {
        "after_minutes": 30,
        "deadline_hours": 72,
        "page_limit": 200,
    }
    with pytest.raises(ConfigError, match="deadline"):
        ReconcileSettings.from_env(
            {"RECONCILE_AFTER_MINUTES": "120", "RECONCILE_DEADLINE_HOURS": "1"}
        )


# --------------------------------------------------------------------------- the template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def props(template: dict[str, Any], lid: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][lid]["Properties"]
    return properties


def emitted_metrics() -> set[str]:
    """Every metric name the code emits: literal count()/gauge() names, the receipt and
    lookup metrics Messages<Status>, and the reconciliation outcomes."""
    from smsgate.reconcile import METRICS
    from smsgate.status import FINAL, Status

    names: set[str] = set()
    for path in [*LAYER.rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        source = path.read_text()
        names.update(re.findall(r"\b(?:count|gauge)\(\s*\"(\w+)\"", source))
        if re.search(r"count\(\s*f\"Messages\{", source):
            names.update(f"Messages{s.value.capitalize()}" for s in (*FINAL, Status.SENT))
    return names | set(METRICS.values())


def rate_seconds(expression: str) -> int:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", expression)
    assert match, expression
    return int(match[1]) * (60 if match[2].startswith("minute") else 3600)


def test_the_code_emits_what_the_alarms_and_dashboard_rely_on() -> None:
    names = emitted_metrics()
    assert {
        "MessagesSent",
        "MessagesFailed",
        "MessagesDelivered",
        "MessagesUndelivered",
        "SendUnknown",
        "CreditBalance",
        "CreditCheckFailed",
        "ProviderAuthFailed",
        "ReconcileLookupFailed",
    } <= names


def alarm_common(template: dict[str, Any], lid: str) -> dict[str, Any]:
    p = props(template, lid)
    assert p["AlarmName"] == {"Fn::Sub": f"${{AWS::StackName}}-{lid}"}
    assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert p["OKActions"] == [{"Ref": "AlarmTopic"}]
    assert len(p["AlarmDescription"]) > 150, f"{lid}: say what to do"
    return p


def test_every_alarm_is_named_after_the_stack_and_says_what_to_do(
    template: dict[str, Any],
) -> None:
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    assert {
        "SendDeadLetterQueueNotEmpty",
        "ProviderAuthFailures",
        "GroupTextingLowCredit",
        "TextingHouseLowCredit",
        "CreditCheckFailures",
        "FailedSendsRising",
        "SpendBudgetWarning",
        "RecipientVelocityExceeded",
    } <= set(alarms)
    names = emitted_metrics()
    for lid in alarms:
        p = props(template, lid)
        assert p["AlarmName"] == {"Fn::Sub": f"${{AWS::StackName}}-{lid}"}, lid
        assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}], lid
        assert p["OKActions"] == [{"Ref": "AlarmTopic"}], lid
        stats = [m["MetricStat"]["Metric"] for m in p.get("Metrics", []) if "MetricStat" in m]
        for m in [p, *stats]:
            if m.get("Namespace") == "smsgate":
                assert m["MetricName"] in names, lid


LOW_CREDIT = [
    # (alarm, provider, threshold parameter, condition)
    (
        "GroupTextingLowCredit",
        "grouptexting",
        "LowCreditThresholdGroupTexting",
        "HasGroupTextingCreditAlarm",
    ),
    (
        "TextingHouseLowCredit",
        "textinghouse",
        "LowCreditThresholdTextingHouse",
        "HasTextingHouseCreditAlarm",
    ),
]


@pytest.mark.parametrize(("lid", "provider", "parameter", "condition"), LOW_CREDIT)
def test_low_credit_alarm_per_provider_with_a_balance_api(
    template: dict[str, Any], lid: str, provider: str, parameter: str, condition: str
) -> None:
    from smsgate.providers import PROVIDERS as CLIENTS

    assert CLIENTS[provider].has_balance
    p = alarm_common(template, lid)
    assert (p["Namespace"], p["MetricName"]) == ("smsgate", "CreditBalance")
    assert p["Dimensions"] == [
        {"Name": "service", "Value": "smsgate"},
        {"Name": "Provider", "Value": provider},
    ]
    assert p["Statistic"] == "Minimum"
    assert p["Threshold"] == {"Ref": parameter}
    assert p["ComparisonOperator"] == "LessThanThreshold"
    assert p["TreatMissingData"] == "breaching"  # a check that stopped alarms too
    # periods matched to the credit check: one datapoint per period at the default rate,
    # and one late check (an empty period) is tolerated
    rate = rate_seconds(template["Parameters"]["CreditCheckRate"]["Default"])
    assert p["Period"] == rate == 900
    assert p["EvaluationPeriods"] == 3
    assert 1 < p["DatapointsToAlarm"] < p["EvaluationPeriods"]
    assert "15 minutes" in p["AlarmDescription"]
    spec = template["Parameters"][parameter]
    assert spec["Type"] == "Number" and spec["Default"] > 0 and spec["MinValue"] == 0
    # 0 turns the alarm off (a provider without credentials publishes no balance)
    assert template["Resources"][lid]["Condition"] == condition
    enabled = {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, "0"]}]}
    assert template["Conditions"][condition] == enabled


def test_club_texting_has_no_low_credit_alarm(template: dict[str, Any]) -> None:
    from smsgate.providers import PROVIDERS as CLIENTS

    assert not CLIENTS["clubtexting"].has_balance
    for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").values():
        if alarm["Properties"].get("MetricName") == "ProviderHealthy":
            continue  # health, not credit: tests/test_failover.py
        assert {"Name": "Provider", "Value": "clubtexting"} not in alarm["Properties"].get(
            "Dimensions", []
        )


def test_every_provider_has_a_health_alarm_on_the_metric_the_senders_publish(
    template: dict[str, Any],
) -> None:
    from smsgate.providers import PROVIDERS as CLIENTS

    watched = {}
    for lid, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        p = alarm["Properties"]
        if p.get("MetricName") == "ProviderHealthy":
            alarm_common(template, lid)
            dims = {d["Name"]: d["Value"] for d in p["Dimensions"]}
            assert (p["Statistic"], p["ComparisonOperator"], p["Threshold"]) == (
                "Minimum",
                "LessThanThreshold",
                1,
            )
            watched[dims["Provider"]] = lid
    assert set(watched) == set(CLIENTS)
    assert {"ProviderHealthy", "MessagesWaiting", "SendFailedOver"} <= emitted_metrics()
    p = alarm_common(template, "MessagesWaitingForProvider")
    assert p["MetricName"] == "MessagesWaiting"


def test_credit_check_failed_alarm(template: dict[str, Any]) -> None:
    p = alarm_common(template, "CreditCheckFailures")
    assert (p["Namespace"], p["MetricName"]) == ("smsgate", "CreditCheckFailed")
    assert p["Dimensions"] == [{"Name": "service", "Value": "smsgate"}]
    assert (p["Statistic"], p["Threshold"]) == ("Sum", 1)
    assert p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert p["TreatMissingData"] == "notBreaching"
    assert p["Period"] >= rate_seconds(template["Parameters"]["CreditCheckRate"]["Default"])


def test_existing_alarms_stay(template: dict[str, Any]) -> None:
    dlq = alarm_common(template, "SendDeadLetterQueueNotEmpty")
    assert (dlq["Namespace"], dlq["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    auth = alarm_common(template, "ProviderAuthFailures")
    assert (auth["MetricName"], auth["Threshold"]) == ("ProviderAuthFailed", 1)


@pytest.mark.parametrize(
    ("lid", "metric", "statistic", "period", "threshold", "below", "at"),
    [
        # a monthly budget 80 % used (SpendBudgetUsed without Provider: the most used cap)
        ("SpendBudgetWarning", "SpendBudgetUsed", "Maximum", 300, 80, [79.9], [80.0]),
        # a recipient past its velocity limits more than a few times in 15 minutes
        ("RecipientVelocityExceeded", "VelocityExceeded", "Sum", 900, 3, [1, 2], [1, 3]),
    ],
)
def test_protection_alarms(
    template: dict[str, Any],
    lid: str,
    metric: str,
    statistic: str,
    period: int,
    threshold: int,
    below: list[float],
    at: list[float],
) -> None:
    from smsgate_local.metrics import AlarmDef, AlarmEvaluator, MetricStore

    p = alarm_common(template, lid)
    assert (p["Namespace"], p["MetricName"]) == ("smsgate", metric)
    assert p["Dimensions"] == [{"Name": "service", "Value": "smsgate"}]
    assert (p["Statistic"], p["Period"], p["EvaluationPeriods"]) == (statistic, period, 1)
    assert p["Threshold"] == threshold
    assert p["TreatMissingData"] == "notBreaching"
    assert metric in emitted_metrics()
    # the local stack evaluates it as CloudWatch would: just under, then at the threshold
    states = []
    for values in (below, at):
        store, now = MetricStore(), time.time()
        for n, value in enumerate(values):
            store.record("smsgate", metric, {"service": "smsgate"}, value, at=now - 10 + n)
        evaluator = AlarmEvaluator([AlarmDef.from_properties(lid, p, lid)], store, created_at=0)
        evaluator.evaluate(now)
        states.append(evaluator.states[lid])
    assert states == ["OK", "ALARM"]


def _failure_percent(expression: str, sent: float, failed: float, minimum: int) -> float:
    """Evaluate the alarm's metric math for one period (IF and FILL as CloudWatch has them)."""
    text = expression.replace("${FailedSendsMinimum}", str(minimum))
    scope = {
        "IF": lambda cond, yes, no: yes if cond else no,
        "FILL": lambda value, default: default if value is None else value,
        "sent": sent,
        "failed": failed,
    }
    return float(eval(text, {"__builtins__": {}}, scope))  # noqa: S307 - our own template


def test_sustained_rise_in_failed_sends_alarm(template: dict[str, Any]) -> None:
    p = alarm_common(template, "FailedSendsRising")
    metrics = {m["Id"]: m for m in p["Metrics"]}
    for mid, name in (("sent", "MessagesSent"), ("failed", "MessagesFailed")):
        stat = metrics[mid]["MetricStat"]
        assert stat["Metric"] == {
            "Namespace": "smsgate",
            "MetricName": name,
            "Dimensions": [{"Name": "service", "Value": "smsgate"}],
        }
        assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
        assert metrics[mid]["ReturnData"] is False
    (returned,) = [m for m in p["Metrics"] if m.get("ReturnData")]
    expression = returned["Expression"]["Fn::Sub"]
    assert p["Threshold"] == {"Ref": "FailedSendsPercent"}
    assert p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert p["EvaluationPeriods"] == p["DatapointsToAlarm"] == 3  # sustained: 3 of 3
    assert p["TreatMissingData"] == "notBreaching"
    threshold = template["Parameters"]["FailedSendsPercent"]["Default"]
    minimum = template["Parameters"]["FailedSendsMinimum"]["Default"]
    assert _failure_percent(expression, 80, 20, minimum) == threshold  # 20 %: alarms
    assert _failure_percent(expression, 90, 10, minimum) < threshold
    assert _failure_percent(expression, 1, 3, minimum) == 0  # too few sends to count
    assert _failure_percent(expression, None, 12, minimum) == 100  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the dashboard


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body with its !Sub variables replaced as CloudFormation would."""
    (lid,) = resources_of_type(template, "AWS::CloudWatch::Dashboard")
    body = props(template, lid)["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    api = props(template, "CallbacksApi")
    assert "Name" not in api  # so SAM names the REST API after the stack (OpenAPI title)
    values = {
        "AWS::Region": "us-east-1",
        "AWS::StackName": "smsgate-test",
        "SendQueue.QueueName": "smsgate-test-SendQueue",
        "SendDeadLetterQueue.QueueName": "smsgate-test-SendDeadLetterQueue",
        **{
            f"{p}Lane{q}.QueueName": f"smsgate-test-{p}Lane{q}"
            for p in ("ClubTexting", "GroupTexting", "TextingHouse")
            for q in ("Queue", "DeadLetterQueue")
        },
        "CallbacksApi.Stage": api["StageName"],  # SAM's reference to the API's stage
    }
    values.update({k: str(v["Default"]) for k, v in template["Parameters"].items()})

    def substitute(match: re.Match[str]) -> str:
        name = match[1]
        assert name in values, f"dashboard refers to unknown ${{{name}}}"
        if "." in name and not name.startswith("AWS::"):
            assert name.split(".")[0] in template["Resources"], name
        return values[name]

    parsed: dict[str, Any] = json.loads(re.sub(r"\$\{([^}!]+)\}", substitute, body))
    return parsed


def dashboard_metrics(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    rows = []
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            fields = [f for f in row if not isinstance(f, dict)]
            namespace, name, *dims = fields
            assert len(dims) % 2 == 0, row
            rows.append((namespace, name, dict(zip(dims[::2], dims[1::2], strict=True))))
    return rows


def test_dashboard_is_valid_json_naming_existing_metrics(template: dict[str, Any]) -> None:
    body = dashboard(template)
    names = emitted_metrics()
    sqs = {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
    }
    lanes = ("ClubTextingLane", "GroupTextingLane", "TextingHouseLane")
    queues = {"smsgate-test-SendQueue", "smsgate-test-SendDeadLetterQueue"} | {
        f"smsgate-test-{lane}{q}" for lane in lanes for q in ("Queue", "DeadLetterQueue")
    }
    rows = dashboard_metrics(body)
    assert rows
    for namespace, name, dims in rows:
        if namespace == "smsgate":
            assert name in names, name
            assert dims.get("service") == "smsgate", (name, dims)
            assert set(dims) <= {"service", "Provider"}, (name, dims)
            if name == "CreditBalance":  # a gauge: only ever per provider
                assert dims.get("Provider") in ("grouptexting", "textinghouse")
            if "Provider" in dims:
                assert dims["Provider"] in PROVIDERS
        elif namespace == "AWS/SQS":
            assert name in sqs and set(dims) == {"QueueName"} and dims["QueueName"] in queues
        elif namespace == "AWS/ApiGateway":
            assert name in {"Count", "4XXError", "5XXError", "Latency"}
            assert dims == {"ApiName": "smsgate-test", "Stage": "v1"}
        else:
            pytest.fail(f"unexpected namespace {namespace}")
    for widget in body["widgets"]:
        assert {"type", "x", "y", "width", "height", "properties"} <= set(widget)
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "us-east-1"


def test_dashboard_shows_what_operators_need(template: dict[str, Any]) -> None:
    rows = {
        (ns, name, tuple(sorted(dims.items())))
        for ns, name, dims in dashboard_metrics(dashboard(template))
    }

    def has(ns: str, name: str, **dims: str) -> bool:
        return (ns, name, tuple(sorted(dims.items()))) in rows

    for provider in PROVIDERS:
        for name in ("MessagesSent", "MessagesDelivered", "MessagesFailed", "SendUnknown"):
            assert has("smsgate", name, service="smsgate", Provider=provider), (name, provider)
    for provider in ("grouptexting", "textinghouse"):
        assert has("smsgate", "CreditBalance", service="smsgate", Provider=provider)
    queue, dlq = "smsgate-test-SendQueue", "smsgate-test-SendDeadLetterQueue"
    assert has("AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue)
    assert has("AWS/SQS", "ApproximateAgeOfOldestMessage", QueueName=queue)
    assert has("AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=dlq)
    for lane in ("ClubTextingLane", "GroupTextingLane", "TextingHouseLane"):  # each lane's own
        assert has(
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=f"smsgate-test-{lane}Queue"
        )
        assert has(
            "AWS/SQS", "ApproximateAgeOfOldestMessage", QueueName=f"smsgate-test-{lane}Queue"
        )
        assert has(
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            QueueName=f"smsgate-test-{lane}DeadLetterQueue",
        )
    api = {"ApiName": "smsgate-test", "Stage": "v1"}
    assert has("AWS/ApiGateway", "Count", **api)
    assert has("AWS/ApiGateway", "4XXError", **api)


# --------------------------------------------------------------------------- the function


def test_reconcile_function_is_scheduled_with_least_privilege(template: dict[str, Any]) -> None:
    p = props(template, "ReconcileFunction")
    assert (p["CodeUri"], p["Handler"]) == ("functions/reconcile/", "app.lambda_handler")
    assert (ROOT / "functions" / "reconcile" / "app.py").is_file()
    (event,) = p["Events"].values()
    assert event == {"Type": "Schedule", "Properties": {"Schedule": {"Ref": "ReconcileRate"}}}
    assert template["Parameters"]["ReconcileRate"]["Default"] == "rate(10 minutes)"
    assert p["Environment"]["Variables"] == {
        "RECONCILE_AFTER_MINUTES": {"Ref": "ReconcileAfterMinutes"},
        "RECONCILE_DEADLINE_HOURS": {"Ref": "ReconcileDeadlineHours"},
    }
    assert template["Parameters"]["ReconcileAfterMinutes"]["Default"] == 30
    assert template["Parameters"]["ReconcileDeadlineHours"]["Default"] == 72
    (policy,) = p["Policies"]
    grants = {(s["Action"], json.dumps(s["Resource"], sort_keys=True)) for s in policy["Statement"]}
    assert grants == {
        ("dynamodb:Query", json.dumps({"Fn::Sub": "${MessagesTable.Arn}/index/ByPendingStatus"})),
        ("dynamodb:UpdateItem", json.dumps({"Fn::GetAtt": ["MessagesTable", "Arn"]})),
        ("dynamodb:PutItem", json.dumps({"Fn::GetAtt": ["StatusTable", "Arn"]})),
        ("secretsmanager:GetSecretValue", json.dumps({"Ref": "ProviderSecret"})),
    }


def test_pending_index_is_sparse_and_keeps_no_personal_data(template: dict[str, Any]) -> None:
    from smsgate.store import PENDING_INDEX

    table = props(template, "MessagesTable")
    (gsi,) = [g for g in table["GlobalSecondaryIndexes"] if g["IndexName"] == PENDING_INDEX]
    assert gsi["KeySchema"] == [
        {"AttributeName": "pending", "KeyType": "HASH"},
        {"AttributeName": "pending_at", "KeyType": "RANGE"},
    ]
    assert gsi["Projection"]["ProjectionType"] == "INCLUDE"
    assert not {"to", "text", "from"} & set(gsi["Projection"]["NonKeyAttributes"])
