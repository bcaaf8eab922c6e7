"""`smsgate quote` and `smsgate spend` (cli/smsgate_cli/protection.py) and `Producer.quote`
(smsgate/quote.py), against the template's resources in moto: what the sender would do with a
message and what it would cost, with the recipient's velocity and the month's spend read from
the health table. A quote sends nothing, queues nothing and writes nothing, and never shows
the number in full or the text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_cli import Run, cli, queued_bodies, runner, stack_file

import smsgate.quote
import smsgate_cli.protection
from smsgate.producer import Producer, Refused
from smsgate.store.counters import recipient_key

__all__ = ["cli"]  # fixture

US, FR, NG = "+12125551234", "+33612345678", "+2348031234567"
US_RULES: dict[str, Any] = {
    "rules": [
        {"name": "us", "countries": ["US"], "providers": {"clubtexting": 1, "grouptexting": 0}},
        {"name": "rest", "providers": {"textinghouse": 1}},
    ],
    "prices": {"clubtexting": 0.035, "grouptexting": 0.03, "textinghouse": 0.05},
}
DAY = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)  # a Wednesday: 10:30 in New York
NIGHT = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)  # 22:00 in New York, 04:00 in Paris
FR_COMMERCIAL = "Soldes -20% ce week-end. STOP sms-s.top"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The quote's clock (and `smsgate spend`'s current month), set by the test:
    `clock(moment)`. Producer.quote takes no `now` of its own."""

    def set_to(moment: datetime) -> None:
        class Frozen(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return moment.astimezone(tz) if tz else moment.replace(tzinfo=None)

        monkeypatch.setattr(smsgate.quote, "datetime", Frozen)
        monkeypatch.setattr(smsgate_cli.protection, "now", lambda: moment)

    set_to(DAY)
    return set_to


def use_rules(stack: Any, **extra: Any) -> dict[str, Any]:
    """US_RULES (and `extra`) in the stack's routing parameter, as `smsgate routing set`."""
    document = {**US_RULES, **extra}
    boto3.client("ssm").put_parameter(
        Name=stack.parameters["RoutingRulesParameter"],
        Value=json.dumps(document),
        Type="String",
        Overwrite=True,
    )
    return document


def producer(stack: Any, document: dict[str, Any] | None = None) -> Producer:
    return Producer(
        stack.queues["SendQueue"],
        sqs=boto3.client("sqs"),
        routing=document or US_RULES,
        default_provider="clubtexting",
        health_table=stack.tables["HealthTable"],
        dynamodb=boto3.client("dynamodb"),
    )


def put(stack: Any, item: dict[str, Any]) -> None:
    boto3.client("dynamodb").put_item(TableName=stack.tables["HealthTable"], Item=item)


def seed_velocity(stack: Any, phone: str, moment: datetime, hour: int, day: int) -> None:
    put(
        stack,
        {
            "provider": {"S": recipient_key(phone)},
            "slot": {"S": f"day#{moment:%Y-%m-%d}"},
            "day": {"N": str(day)},
            f"h{moment:%H}": {"N": str(hour)},
        },
    )


def seed_spend(stack: Any, provider: str, month: str, spend: str, messages: int) -> None:
    put(
        stack,
        {
            "provider": {"S": provider},
            "slot": {"S": f"spend#{month}"},
            "spend": {"N": spend},
            "messages": {"N": str(messages)},
        },
    )


def scan(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]


def open_row(provider: str, encoding: str, parts: int, cost: float | None) -> dict[str, Any]:
    """One provider's row of Quote.as_dict(), neither refused nor held."""
    return {"provider": provider, "encoding": encoding, "parts": parts, "cost": cost,
            "refused": "", "over_budget": "", "opens_at": ""}  # fmt: skip


def human(result: Any, *numbers: str) -> str:
    """The human output, checked: it fits 80 columns and never holds a full number."""
    for line in result.out.splitlines():
        assert len(line) <= 80, line
    for number in numbers:
        assert number not in result.out + result.err
        assert number.removeprefix("+") not in result.out + result.err
    return str(result.out)


# --------------------------------------------------------------------------- a plain quote


def test_a_plain_quote_through_producer_quote(stack: Any, clock: Any) -> None:
    quoted = producer(stack).quote(US, "Your order has shipped.")
    assert quoted.as_dict() == {
        "to": "+1212****234",
        "route": "us",
        "providers": [
            open_row("clubtexting", "gsm7", 1, 0.035),
            open_row("grouptexting", "gsm7", 1, 0.03),
        ],
        "answer": "send",
        "provider": "clubtexting",
        "at": "2026-12-02T15:30:00.000000Z",
        "code": "",
        "reason": "",
        "velocity": {"per_hour": 10, "per_day": 50, "this_hour": 0, "today": 0},
        "budget": {"caps": {}, "spent": {}},
    }

    # UCS-2: Club Texting bills one message; Group Texting's character set refuses it
    unicode = producer(stack).quote(US, "Olá ✓")
    assert [(r.provider, r.encoding, r.parts, r.cost) for r in unicode.providers] == [
        ("clubtexting", "ucs2", 1, 0.035),
        ("grouptexting", "ucs2", 1, None),
    ]
    assert unicode.providers[1].refused.startswith("rule:charset: ")
    assert (unicode.answer, unicode.provider) == ("send", "clubtexting")

    # TextingHouse bills GSM 7 parts: 200 characters are 2 parts at 0.05
    long = producer(stack).quote(FR, "a" * 200)
    assert (long.route, long.answer, long.provider) == ("rest", "send", "textinghouse")
    (row,) = long.providers
    assert (row.encoding, row.parts, row.cost) == ("gsm7", 2, 0.1)


def test_a_plain_quote_through_the_cli(cli: Run, stack: Any, clock: Any) -> None:
    use_rules(stack)
    result = cli("quote", "--to", "+1 212 555 1234", "--text", "Your order has shipped.")
    assert result.code == 0, result.err
    out = human(result, US)
    assert "Your order has shipped." not in out + result.err
    assert out.splitlines() == [
        "quote for +1212****234 (route us)",
        "PROVIDER      ENCODING  PARTS  COST   NOTE",
        "clubtexting   gsm7      1      0.035",
        "grouptexting  gsm7      1      0.03",
        "would send now through clubtexting (gsm7, 1 part, 0.035)",
        "recipient: 0 this hour of 10, 0 today of 50",
    ]

    result = cli("quote", "--to", FR, "--text", "a" * 200)
    assert result.code == 0, result.err
    assert "would send now through textinghouse (gsm7, 2 parts, 0.1)" in human(result, FR)

    # a refusal's long reason is wrapped, not cut: every line fits 80 columns
    result = cli("quote", "--to", US, "--text", "Olá ✓ " * 30)
    assert result.code == 1
    out = human(result, US)
    assert "would be refused: rule:length: message is 180 characters, limit 130" in out
    assert "outside the allowed set" in out and "Olá" not in out


def test_the_json_document_is_the_quote(cli: Run, stack: Any, clock: Any) -> None:
    use_rules(stack, monthly_budgets={"clubtexting": 10, "total": 50})
    seed_spend(stack, "clubtexting", "2026-12", "2.5", 70)
    result = cli("--json", "quote", "--to", US, "--text", "Hi", "--subject", "News")
    assert result.code == 0, result.err
    data = result.json()
    expected = producer(stack, use_rules(stack, monthly_budgets={"clubtexting": 10,
                                                                 "total": 50}))  # fmt: skip
    as_dict = expected.quote(US, "Hi", subject="News").as_dict()
    assert data == json.loads(json.dumps(as_dict))
    assert set(data) == {"to", "route", "providers", "answer", "provider", "at", "code",
                         "reason", "velocity", "budget"}  # fmt: skip
    assert set(data["providers"][0]) == {"provider", "encoding", "parts", "cost", "refused",
                                         "over_budget", "opens_at"}  # fmt: skip
    assert data["budget"] == {
        "caps": {"clubtexting": 10.0, "total": 50.0},
        "spent": {"clubtexting": 2.5},
        "spent_total": 2.5,
    }
    assert US not in result.out and data["to"] == "+1212****234"

    result = cli("quote", "--to", US, "--text", "Hi")
    assert "budget this month: clubtexting 2.5 of 10 (25%); total 2.5 of 50 (5%)" in human(
        result, US
    )


# --------------------------------------------------------------------------- quiet hours


def test_a_commercial_quote_at_night_is_held_until_the_quiet_hours_end(
    cli: Run, stack: Any, clock: Any
) -> None:
    clock(NIGHT)
    quoted = producer(stack).quote(US, "Sale today", commercial=True)
    assert (quoted.answer, quoted.provider) == ("hold", "clubtexting")
    assert quoted.at == "2026-12-03T13:00:00.000000Z"  # 08:00 in New York
    assert quoted.reason == "commercial message outside its window" and quoted.code == ""
    assert {r.opens_at for r in quoted.providers} == {"2026-12-03T13:00:00.000000Z"}

    # TextingHouse keeps France's working hours and its own: 08:00 in Paris
    held = producer(stack).quote(FR, FR_COMMERCIAL, commercial=True, sender="smsgate")
    assert (held.answer, held.provider, held.at) == (
        "hold",
        "textinghouse",
        "2026-12-03T07:00:00.000000Z",
    )

    use_rules(stack)
    result = cli("quote", "--to", US, "--text", "Sale today", "--commercial")
    assert result.code == 0, result.err  # it would go, later
    out = human(result, US)
    assert "clubtexting   gsm7      1      0.035  opens 2026-12-03T13:00:00Z" in out
    assert "would be held until 2026-12-03T13:00:00Z (quiet hours), then go through" in out
    assert "Sale today" not in out

    # by day it goes now
    clock(DAY)
    result = cli("quote", "--to", US, "--text", "Sale today", "--commercial")
    assert result.code == 0
    assert "would send now through clubtexting" in result.out


# --------------------------------------------------------------------------- destinations


def test_a_blocked_destination_is_refused_and_nothing_is_queued(
    cli: Run, stack: Any, clock: Any
) -> None:
    document = use_rules(stack, destinations={"block": ["NG"]})
    quoted = producer(stack, document).quote(NG, "Hello")
    assert (quoted.answer, quoted.code, quoted.reason) == (
        "refuse",
        "destination_blocked",
        "destinations.block has NG",
    )

    result = cli("quote", "--to", NG, "--text", "Hello")
    assert result.code == 1
    assert "would be refused: destination_blocked: destinations.block has NG" in human(result, NG)
    result = cli("--json", "quote", "--to", NG, "--text", "Hello")
    assert result.code == 1 and result.json()["answer"] == "refuse"
    assert queued_bodies(stack) == []


def test_an_opted_out_number_is_refused_first(cli: Run, stack: Any, clock: Any) -> None:
    from smsgate.store import Store

    Store(
        stack.tables["MessagesTable"], stack.tables["StatusTable"], stack.tables["OptOutsTable"]
    ).add_opt_out(US, "manual")
    result = cli("quote", "--to", US, "--text", "Hello")
    assert result.code == 1
    assert "would be refused: opted_out: recipient has opted out" in human(result, US)
    # without the opt-outs table the producer cannot know: it says what the rest would do
    assert producer(stack).quote(US, "Hello").answer == "send"


def test_send_refuses_a_blocked_destination_before_queueing(
    cli: Run, stack: Any, clock: Any
) -> None:
    use_rules(stack, destinations={"block": ["NG"]})
    result = cli("send", "--to", NG, "--text", "Hello")
    assert result.code == 1
    assert "destination_blocked" in result.err
    assert queued_bodies(stack) == []


def test_a_per_provider_block_steers_to_the_next_provider(cli: Run, stack: Any, clock: Any) -> None:
    document = use_rules(stack, destinations={"providers": {"clubtexting": {"block": ["+1212"]}}})
    quoted = producer(stack, document).quote(US, "Hello")
    first, second = quoted.providers
    assert first.refused == (
        "destination_blocked: destination refused: "
        "destinations.providers.clubtexting.block has +1212"
    )
    assert second.refused == "" and second.cost == 0.03
    assert (quoted.answer, quoted.provider) == ("send", "grouptexting")

    result = cli("quote", "--to", US, "--text", "Hello")
    assert result.code == 0, result.err
    out = human(result, US)
    assert "0.035  refused: destination_blocked\n    destination refused: destinations." in out
    assert "would send now through grouptexting (gsm7, 1 part, 0.03)" in out


# --------------------------------------------------------------------------- velocity


def test_velocity_counts_come_from_the_health_table(cli: Run, stack: Any, clock: Any) -> None:
    seed_velocity(stack, US, DAY, hour=3, day=7)
    quoted = producer(stack).quote(US, "Hello")
    assert quoted.velocity == {"per_hour": 10, "per_day": 50, "this_hour": 3, "today": 7}
    assert quoted.answer == "send"

    use_rules(stack)
    result = cli("quote", "--to", US, "--text", "Hello")
    assert result.code == 0, result.err
    assert "recipient: 3 this hour of 10, 7 today of 50" in human(result, US)


def test_a_reached_velocity_limit_is_refused_or_held(cli: Run, stack: Any, clock: Any) -> None:
    seed_velocity(stack, US, DAY, hour=10, day=12)
    quoted = producer(stack).quote(US, "Hello")
    assert (quoted.answer, quoted.code, quoted.reason) == (
        "refuse",
        "velocity_exceeded",
        "recipient velocity: 10 messages this hour already",
    )

    use_rules(stack)
    result = cli("quote", "--to", US, "--text", "Hello")
    assert result.code == 1
    out = human(result, US)
    assert "would be refused: velocity_exceeded: recipient velocity: 10 messages this hour" in out
    assert "recipient: 10 this hour of 10, 12 today of 50" in out

    # when_exceeded "hold": held until the next clock hour
    use_rules(stack, velocity={"when_exceeded": "hold"})
    result = cli("--json", "quote", "--to", US, "--text", "Hello")
    assert result.code == 0, result.err
    data = result.json()
    assert (data["answer"], data["at"], data["code"]) == (
        "hold",
        "2026-12-02T16:00:00.000000Z",
        "velocity_exceeded",
    )


# --------------------------------------------------------------------------- budgets


def test_a_reached_budget_skips_the_provider_then_waits(cli: Run, stack: Any, clock: Any) -> None:
    document = use_rules(stack, monthly_budgets={"clubtexting": 1})
    seed_spend(stack, "clubtexting", "2026-12", "0.99", 28)
    quoted = producer(stack, document).quote(US, "Hello")
    assert quoted.providers[0].over_budget == (
        "budget_exhausted: clubtexting's monthly budget (1) would be passed"
    )
    assert quoted.providers[0].refused == ""  # its rules and destinations accept it
    assert (quoted.answer, quoted.provider) == ("send", "grouptexting")

    document = use_rules(stack, monthly_budgets={"total": 1})
    quoted = producer(stack, document).quote(US, "Hello")
    assert (quoted.answer, quoted.code) == ("wait", "budget_exhausted")
    assert quoted.reason == "the total monthly budget (1) would be passed"

    result = cli("quote", "--to", US, "--text", "Hello")
    assert result.code == 1
    out = human(result, US)
    assert "would wait: budget_exhausted: the total monthly budget (1) would be passed" in out
    assert "budget this month: total 0.99 of 1 (99% warning)" in out
    assert queued_bodies(stack) == []


# --------------------------------------------------------------------------- nothing written


def test_a_quote_writes_nothing(cli: Run, stack: Any, clock: Any) -> None:
    use_rules(stack, monthly_budgets={"total": 5})
    seed_velocity(stack, US, DAY, hour=1, day=1)
    seed_spend(stack, "clubtexting", "2026-12", "0.5", 14)
    health = scan(stack.tables["HealthTable"])
    for argv in (
        ["--to", US, "--text", "Hello"],
        ["--to", US, "--text", "Sale today", "--commercial"],
        ["--to", FR, "--text", FR_COMMERCIAL, "--commercial", "--sender", "smsgate"],
        ["--to", US, "--text", "Hello", "--provider", "grouptexting", "--no-failover"],
        ["--json", "--to", NG, "--text", "Hello"],
    ):
        result = cli("quote", *argv)
        assert result.code == 0, (argv, result.err)
    producer(stack).quote(US, "Hello")
    assert scan(stack.tables["MessagesTable"]) == []
    assert scan(stack.tables["StatusTable"]) == []
    assert scan(stack.tables["HealthTable"]) == health
    assert queued_bodies(stack) == []


def test_an_invalid_message_is_refused_without_echoing_it(cli: Run, stack: Any, clock: Any) -> None:
    with pytest.raises(Refused) as caught:
        producer(stack).quote("12345", "Hello")
    assert caught.value.code == "invalid_body"

    use_rules(stack)
    result = cli("quote", "--to", "12345", "--text", "Hello")
    assert result.code == 1
    assert "would be refused: invalid_body" in result.err
    assert "12345" not in result.out + result.err
    result = cli("--json", "quote", "--to", "12345", "--text", "Hello")
    assert result.code == 1
    data = result.json()
    assert data["ok"] is False and data["error_code"] == "invalid_body"
    assert "12345" not in result.out

    result = cli("quote", "--to", US)  # no --text: a usage error
    assert result.code == 2 and "--text" in result.err
    assert queued_bodies(stack) == []


# --------------------------------------------------------------------------- spend


def test_spend_per_provider_against_the_budgets(cli: Run, stack: Any, clock: Any) -> None:
    use_rules(stack, monthly_budgets={"clubtexting": 10, "textinghouse": 0.1, "total": 50})
    seed_spend(stack, "clubtexting", "2026-11", "9.5", 120)
    seed_spend(stack, "textinghouse", "2026-11", "0.1", 2)
    seed_spend(stack, "grouptexting", "2026-10", "3", 100)  # another month

    result = cli("--json", "spend", "--month", "2026-11")
    assert result.code == 0, result.err
    assert result.json() == {
        "month": "2026-11",
        "providers": [
            {"provider": "clubtexting", "spend": 9.5, "messages": 120, "budget": 10.0,
             "used": 0.95, "state": "warning"},
            {"provider": "grouptexting", "spend": 0.0, "messages": 0, "budget": None,
             "used": None, "state": None},
            {"provider": "textinghouse", "spend": 0.1, "messages": 2, "budget": 0.1,
             "used": 1.0, "state": "exhausted"},
        ],
        "total": {"provider": "total", "spend": 9.6, "messages": 122, "budget": 50.0,
                  "used": 0.192, "state": "ok"},
    }  # fmt: skip

    result = cli("spend", "--month", "2026-11")
    assert result.code == 0, result.err
    assert human(result).splitlines() == [
        "spend in 2026-11 (UTC), in the currency of the routing rules' prices",
        "PROVIDER      SPEND  MESSAGES  BUDGET  USED",
        "clubtexting   9.5    120       10      95% warning",
        "grouptexting  0      0         -       -",
        "textinghouse  0.1    2         0.1     100% exhausted",
        "total         9.6    122       50      19%",
    ]

    # the default: the current UTC month (none spent yet)
    result = cli("--json", "spend")
    assert result.code == 0, result.err
    data = result.json()
    assert data["month"] == "2026-12"
    assert [(r["spend"], r["messages"]) for r in data["providers"]] == [(0.0, 0)] * 3
    assert data["total"]["state"] == "ok"


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "26-11", "december", ""])
def test_spend_refuses_a_bad_month(cli: Run, month: str) -> None:
    result = cli("spend", "--month", month)
    assert result.code == 2
    assert "YYYY-MM" in result.err and "usage:" in result.err
    result = cli("--json", "spend", "--month", month)
    assert result.code == 2 and result.json()["exit_code"] == 2


def test_spend_needs_the_health_table(
    stack: Any, sims: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = stack_file(stack, sims, tmp_path / "stack.json")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "health_table": None}))
    result = runner(path, monkeypatch)("spend")
    assert result.code == 1
    assert "no health table" in result.err
