"""Failover and provider health, through the real send handler, moto and the
provider simulators over HTTP.

Every failover trigger and every non-trigger, the rules re-checked for the new provider, the
health window under a clock the test controls, waiting when no provider is healthy, and a
provider that goes down mid-stream: every message ends `sent` exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from conftest import load_function
from sqs_source import poll_once, send_bodies

from smsgate.health import HealthBoard
from smsgate.routing import HealthPolicy
from smsgate.store import from_item
from smsgate_local.harness import Serialised

US, FR = "+12125551234", "+33612345678"
US_RULES = {
    "rules": [
        {"name": "us", "countries": ["US"], "providers": {"clubtexting": 1, "grouptexting": 0}},
        {"name": "rest", "providers": {"textinghouse": 1}},
    ],
    "prices": {"clubtexting": 0.035, "grouptexting": 0.03, "textinghouse": 0.05},
}


def use_rules(stack: Any, document: Any) -> Callable[..., Any]:
    """Put `document` in the routing parameter and load the send handler (fresh caches)."""
    from aws_lambda_powertools.utilities import parameters

    from smsgate import config, wiring

    boto3.client("ssm").put_parameter(
        Name=stack.parameters["RoutingRulesParameter"],
        Value=json.dumps(document),
        Type="String",
        Overwrite=True,
    )
    parameters.clear_caches()
    for cached in (
        config.settings,
        wiring.store,
        wiring.routing,
        wiring.health_board,
        wiring.send_service,
    ):
        cached.cache_clear()
    app = load_function("send")
    service = wiring.send_service()
    service.store.db = Serialised(service.store.db)
    service.health.db = service.store.db
    handler: Callable[..., Any] = app.lambda_handler
    return handler


@pytest.fixture
def routed(stack: Any) -> Callable[..., Any]:
    return use_rules(stack, US_RULES)


def run(stack: Any, handler: Any, bodies: list[Any]) -> dict[str, Any]:
    url, arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
    send_bodies(url, bodies)
    _, response = poll_once(url, arn, handler)
    return response


def record(stack: Any, message_id: str) -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(
        TableName=stack.tables["MessagesTable"], Key={"id": {"S": message_id}}
    )
    return from_item(item.get("Item", {}))


def texts(sims: Any, provider: str) -> Counter[str]:
    """Texts each simulator accepted (a text per message makes 'exactly once' countable)."""
    sim = sims.by_name[provider]
    if provider == "textinghouse":
        return Counter(m.txt for m in sim.messages)
    return Counter(m.message for m in sim.messages)


def sends(sims: Any, provider: str) -> int:
    sim = sims.by_name[provider]
    if provider == "textinghouse":
        return sum(1 for r in sim.requests if r.fields.get("cmd") == "sendsms")
    path = {"clubtexting": "/apisendmessage.php", "grouptexting": "/api/sending"}[provider]
    return len(sim.requests_to(path))


def code_of(answer: tuple[str, int]) -> str:
    """The code smsgate records for a forced answer: `ERR: 104 | ...` -> `104`."""
    body, status = answer
    if status != 200:
        return f"http_{status}"
    return body.removeprefix("ERR: ").split(" |")[0]


def health(stack: Any) -> HealthBoard:
    return HealthBoard(stack.tables["HealthTable"], boto3.client("dynamodb"), HealthPolicy)


# --- triggers: a definite refusal that says the provider is the problem -------------------

# (label, body fields, the first provider, its forced answer (body, http status), next provider,
#  health reason the refusal leaves on the first provider or None)
TRIGGERS = [
    ("ct auth -1", {}, "clubtexting", ("-1", 200), "grouptexting", "auth"),
    ("ct credit -2", {}, "clubtexting", ("-2", 200), "grouptexting", "credit"),
    (
        "gt rate limited 503",
        {"provider": "grouptexting", "failover": True},
        "grouptexting",
        ("busy", 503),
        "clubtexting",
        None,
    ),
    (
        "th auth 101",
        {"provider": "textinghouse", "failover": True},
        "textinghouse",
        ("ERR: 101 | Authentication failed", 200),
        "clubtexting",
        "auth",
    ),
    (
        "th credit 104",
        {"provider": "textinghouse", "failover": True},
        "textinghouse",
        ("ERR: 104 | Insufficient credit", 200),
        "clubtexting",
        "credit",
    ),
]


@pytest.mark.parametrize(
    ("label", "fields", "first", "answer", "second", "reason"),
    TRIGGERS,
    ids=[t[0] for t in TRIGGERS],
)
def test_failover_triggers(
    stack: Any,
    sims: Any,
    routed: Any,
    label: str,
    fields: dict[str, Any],
    first: str,
    answer: tuple[str, int],
    second: str,
    reason: str | None,
) -> None:
    sims.by_name[first].force_answer(*answer)
    response = run(stack, routed, [{"id": "f1", "to": US, "text": "hello", **fields}])
    assert response["batchItemFailures"] == []
    item = record(stack, "f1")
    assert (item["status"], item["provider"]) == ("sent", second)
    assert [(a["provider"], a["outcome"]) for a in item["provider_attempts"]] == [
        (first, "retryable"),
        (second, "sent"),
    ]
    assert item["provider_attempts"][0]["code"] == code_of(answer)
    assert (sends(sims, first), sends(sims, second)) == (1, 1)
    assert item.get("error_code") is None  # the refusal is in the attempts, not the outcome
    state = health(stack).state(first)
    assert state.get("reason") == reason  # auth and credit: skipped at once; 503: the window
    if second == "clubtexting":
        assert float(item["cost_estimate"]) == pytest.approx(0.035)


# --- non-triggers: never a second provider -----------------------------------------------

# (label, body fields, forced answer on Club Texting, expected status, error code)
NON_TRIGGERS = [
    ("unknown outcome", {}, ("<html>oops</html>", 200), "unknown", "unreadable"),
    ("no answer (server error)", {}, ("<h1>500</h1>", 500), "unknown", "http_500"),
    ("provider opt-out -5", {}, ("-5", 200), "failed", "-5"),
    ("invalid message -7", {}, ("-7", 200), "failed", "-7"),
    ("provider's own error -10 is retried in place", {}, ("-10", 200), "queued", "-10"),
    ("named without failover", {"provider": "clubtexting"}, ("-2", 200), "queued", "-2"),
    ("failover false", {"failover": False}, ("-1", 200), "queued", "-1"),
]


@pytest.mark.parametrize(
    ("label", "fields", "answer", "status", "code"),
    NON_TRIGGERS,
    ids=[n[0] for n in NON_TRIGGERS],
)
def test_no_failover(
    stack: Any,
    sims: Any,
    routed: Any,
    label: str,
    fields: dict[str, Any],
    answer: tuple[str, int],
    status: str,
    code: str,
) -> None:
    sims.clubtexting.force_answer(*answer)
    run(stack, routed, [{"id": "n1", "to": US, "text": "hello", **fields}])
    item = record(stack, "n1")
    assert (item["status"], item["error_code"], item["provider"]) == (status, code, "clubtexting")
    assert sends(sims, "clubtexting") == 1
    assert sends(sims, "grouptexting") == 0


def test_opted_out_number_tries_no_provider(stack: Any, sims: Any, routed: Any) -> None:
    from smsgate import wiring

    wiring.store().add_opt_out(US, how="STOP")
    run(stack, routed, [{"id": "o1", "to": US, "text": "hello"}])
    assert (record(stack, "o1")["status"], record(stack, "o1")["error_code"]) == (
        "failed",
        "opted_out",
    )
    assert sends(sims, "clubtexting") + sends(sims, "grouptexting") == 0


# --- each provider's rules, re-checked for the provider that carries the message ----------


def test_text_too_long_for_club_texting_goes_to_the_next_provider(
    stack: Any, sims: Any, routed: Any
) -> None:
    text = "a" * 150  # Club Texting: at most 130; Group Texting: 160
    run(stack, routed, [{"id": "l1", "to": US, "text": text}])
    item = record(stack, "l1")
    assert (item["status"], item["provider"]) == ("sent", "grouptexting")
    assert sends(sims, "clubtexting") == 0
    assert texts(sims, "grouptexting") == {text: 1}


def test_text_no_provider_accepts_fails_with_the_first_choices_rule(
    stack: Any, sims: Any, routed: Any
) -> None:
    run(stack, routed, [{"id": "l2", "to": US, "text": "a" * 170}])
    item = record(stack, "l2")
    assert (item["status"], item["error_code"]) == ("failed", "rule:length")
    assert "clubtexting" in item["error"]


def test_named_provider_without_failover_keeps_its_rules(
    stack: Any, sims: Any, routed: Any
) -> None:
    run(stack, routed, [{"id": "l3", "to": US, "text": "a" * 150, "provider": "clubtexting"}])
    assert record(stack, "l3")["status"] == "failed"
    assert sends(sims, "grouptexting") == 0


def test_international_number_is_routed_to_textinghouse(stack: Any, sims: Any, routed: Any) -> None:
    run(stack, routed, [{"id": "i1", "to": FR, "text": "bonjour"}])
    item = record(stack, "i1")
    assert (item["status"], item["provider"], item["route"]) == ("sent", "textinghouse", "rest")
    assert float(item["cost_estimate"]) == pytest.approx(0.05)


# --- health -------------------------------------------------------------------------------


def test_unhealthy_provider_is_skipped_then_probed_after_its_cooldown(
    stack: Any, sims: Any, routed: Any
) -> None:
    from smsgate import wiring

    board = wiring.send_service().health
    now = [1_900_000_000.0]
    board.clock = lambda: now[0]
    sims.clubtexting.force_answer("-1")  # auth: skipped at once
    run(stack, routed, [{"id": "h1", "to": US, "text": "one"}])
    assert record(stack, "h1")["provider"] == "grouptexting"
    run(stack, routed, [{"id": "h2", "to": US, "text": "two"}])
    assert record(stack, "h2")["provider"] == "grouptexting"
    assert sends(sims, "clubtexting") == 1  # h2 never tried it
    now[0] += HealthPolicy().cooldown_seconds + 1  # the cool-down is over: one probe
    run(stack, routed, [{"id": "h3", "to": US, "text": "three"}])
    assert record(stack, "h3")["provider"] == "clubtexting"
    assert health(stack).state("clubtexting").get("unhealthy_until") is None


def test_every_provider_down_means_waiting_not_failing(stack: Any, sims: Any, capsys: Any) -> None:
    """TextingHouse out of credit: international messages wait (re-queued with a delay) rather
    than fail, and the metrics behind TextingHouseUnhealthy and MessagesWaitingForProvider say
    why."""
    handler = use_rules(stack, US_RULES)
    sims.textinghouse.account().credit = 0
    run(stack, handler, [{"id": "w1", "to": FR, "text": "bonjour"}])
    assert record(stack, "w1")["status"] == "queued"  # 104: retried, and TextingHouse marked
    assert health(stack).state("textinghouse")["reason"] == "credit"
    url = stack.queues["SendQueue"]
    sqs = boto3.client("sqs")
    sqs.purge_queue(QueueUrl=url)  # the retried copy: deliver the next one at once instead
    requests_before = sends(sims, "textinghouse")
    response = run(stack, handler, [{"id": "w2", "to": FR, "text": "salut"}])
    assert response["batchItemFailures"] == []
    item = record(stack, "w2")
    assert (item["status"], item["error_code"]) == ("queued", "provider_unavailable")
    assert "textinghouse: credit" in item["error"]
    assert sends(sims, "textinghouse") == requests_before  # not even tried
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"  # waiting, with its id
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    waiting = [m for m in lines if "MessagesWaiting" in m and m.get("Reason") == "credit"]
    assert waiting and waiting[0]["Provider"] == "textinghouse"
    healthy = [m for m in lines if "ProviderHealthy" in m and m.get("Provider") == "textinghouse"]
    assert healthy and healthy[-1]["ProviderHealthy"] == [0.0]
    # the template's alarms, evaluated on exactly these metrics, say which provider and why
    from smsgate_local.metrics import AlarmDef, AlarmEvaluator, MetricStore
    from smsgate_local.stack import load_template

    store = MetricStore()
    for doc in lines:
        store.emf(doc)
    resources = load_template()["Resources"]
    alarms = [
        AlarmDef.from_properties(lid, r["Properties"], lid)
        for lid, r in resources.items()
        if lid in ("TextingHouseUnhealthy", "GroupTextingUnhealthy", "MessagesWaitingForProvider")
    ]
    evaluator = AlarmEvaluator(alarms, store, created_at=0)
    evaluator.evaluate()
    assert evaluator.states == {
        "TextingHouseUnhealthy": "ALARM",
        "GroupTextingUnhealthy": "OK",
        "MessagesWaitingForProvider": "ALARM",
    }
    assert "credit" in resources["TextingHouseUnhealthy"]["Properties"]["AlarmDescription"]


def test_credit_check_marks_and_clears_the_provider(stack: Any, sims: Any) -> None:
    from smsgate import wiring

    load_function("credit_check")
    sims.textinghouse.account().credit = 0
    wiring.credit_service().check_all()
    assert health(stack).state("textinghouse")["reason"] == "credit"
    sims.textinghouse.account().credit = 50
    wiring.credit_service().check_all()
    state = health(stack).state("textinghouse")
    assert "reason" not in state and float(state["credit"]) == 50


# --- the health window, with a clock the test controls ------------------------------------


@pytest.fixture
def board(stack: Any) -> HealthBoard:
    policy = HealthPolicy(
        window_seconds=300, min_samples=4, max_error_rate=0.5, cooldown_seconds=60
    )
    b = HealthBoard(stack.tables["HealthTable"], boto3.client("dynamodb"), lambda: policy)
    b.clock = lambda: 1_900_000_000.0
    return b


def outcome(kind: str) -> Any:
    from smsgate.providers import Category, Outcome, OutcomeKind

    table = {
        "ok": Outcome(OutcomeKind.SENT, Category.ACCEPTED, "1", "ok"),
        "error": Outcome(OutcomeKind.RETRYABLE, Category.PROVIDER_ERROR, "-10", "error"),
        "no answer": Outcome(OutcomeKind.UNKNOWN, Category.NO_ANSWER, "timeout", "timeout"),
        "invalid": Outcome(OutcomeKind.REJECTED, Category.INVALID, "-7", "invalid"),
    }
    return table[kind]


def test_window_marks_on_error_rate(board: HealthBoard) -> None:
    for kind in ("ok", "error", "no answer", "error"):
        board.observe("grouptexting", outcome(kind), 100)
    board.flush()
    assert board.state("grouptexting")["reason"] == "errors"
    assert board.verdict("grouptexting").available is False


def test_window_needs_enough_samples_and_ignores_refused_messages(board: HealthBoard) -> None:
    for kind in ("error", "error", "error"):  # 3 < min_samples
        board.observe("grouptexting", outcome(kind), 100)
    board.flush()
    assert board.state("grouptexting") == {}
    for _ in range(10):  # a refused message is the provider working: an answer, not an error
        board.observe("clubtexting", outcome("invalid"), 100)
    board.flush()
    assert board.state("clubtexting") == {}


def test_window_slides(board: HealthBoard) -> None:
    start = 1_900_000_000.0
    for kind in ("error", "error", "error"):
        board.observe("grouptexting", outcome(kind), 100)
    board.flush()
    board.clock = lambda: start + 600  # the old errors are out of the 300 s window
    for kind in ("ok", "ok", "ok", "error"):
        board.observe("grouptexting", outcome(kind), 100)
    board.flush()
    assert board.window("grouptexting").samples == 4
    assert board.state("grouptexting") == {}


def test_good_answers_are_written_at_most_every_ten_seconds(board: HealthBoard) -> None:
    start = 1_900_000_000.0
    board.observe("textinghouse", outcome("ok"), 100)
    board.flush()  # the first write of the process
    board.observe("textinghouse", outcome("ok"), 100)
    board.flush()  # all good, 0 s later: kept for the next write
    assert board.window("textinghouse").samples == 1
    board.observe("textinghouse", outcome("error"), 100)
    board.flush()  # an error is written at once, with the good answers kept
    assert board.window("textinghouse").samples == 3
    board.observe("textinghouse", outcome("ok"), 100)
    board.clock = lambda: start + 11
    board.flush()
    assert board.window("textinghouse").samples == 4


def test_window_marks_on_latency(board: HealthBoard) -> None:
    for _ in range(4):
        board.observe("textinghouse", outcome("ok"), 9_000)
    board.flush()
    assert board.state("textinghouse")["reason"] == "latency"


def test_one_probe_after_the_cooldown_and_its_answer_decides(
    stack: Any, board: HealthBoard
) -> None:
    board.mark_unhealthy("clubtexting", "auth")
    other = HealthBoard(board.table, board.db, board.policy, clock=board.clock)
    assert board.verdict("clubtexting").available is False
    later = 1_900_000_000.0 + 61
    board.clock = other.clock = lambda: later
    assert board.verdict("clubtexting").probe is True
    assert other.verdict("clubtexting").available is False  # one prober at a time
    board.observe("clubtexting", outcome("error"), 50)  # the probe failed: another cool-down
    assert board.state("clubtexting")["reason"] == "probe_failed"
    board.clock = other.clock = lambda: later + 61
    assert other.verdict("clubtexting").probe is True
    other.observe("clubtexting", outcome("ok"), 50)
    assert board.state("clubtexting") == {}


# --- acceptance ---------------------------------------------------------------------------


def test_group_texting_down_us_messages_fail_over_to_club_texting_exactly_once(
    stack: Any, sims: Any
) -> None:
    handler = use_rules(
        stack,
        {"rules": [{"countries": ["US"], "providers": {"grouptexting": 1, "clubtexting": 0}}]},
    )
    sims.grouptexting.set_fault("http_503")
    bodies = [{"id": f"g{i}", "to": f"+1212555{i:04d}", "text": f"message {i}"} for i in range(30)]
    for chunk in range(0, 30, 10):
        response = run(stack, handler, bodies[chunk : chunk + 10])
        assert response["batchItemFailures"] == []
    carried = texts(sims, "clubtexting")
    assert carried == {f"message {i}": 1 for i in range(30)}
    assert all(record(stack, f"g{i}")["provider"] == "clubtexting" for i in range(30))
    # Group Texting was tried until the window marked it, then skipped
    assert health(stack).state("grouptexting")["reason"] == "errors"
    assert sends(sims, "grouptexting") < 30


def test_provider_down_mid_stream_every_message_sent_exactly_once(stack: Any, sims: Any) -> None:
    handler = use_rules(
        stack,
        {"rules": [{"countries": ["US"], "providers": {"grouptexting": 1, "clubtexting": 1}}]},
    )
    bodies = [{"id": f"m{i}", "to": f"+1212555{i:04d}", "text": f"stream {i}"} for i in range(60)]
    url, arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
    for chunk in range(0, 60, 10):
        if chunk == 20:
            sims.grouptexting.set_fault("http_503")  # Group Texting goes down mid-stream
        send_bodies(url, bodies[chunk : chunk + 10])
        _, response = poll_once(url, arn, handler)
        assert response["batchItemFailures"] == []  # a refusal moves on at once, no retry
    carried = texts(sims, "clubtexting") + texts(sims, "grouptexting")
    assert carried == {f"stream {i}": 1 for i in range(60)}
    assert {record(stack, f"m{i}")["status"] for i in range(60)} == {"sent"}
