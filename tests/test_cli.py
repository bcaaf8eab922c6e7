"""The `smsgate` CLI, run in-process (`main(argv)`) against the template's resources in moto
and the provider simulators; it finds them through a stack.json given with --config."""

from __future__ import annotations

import io
import json
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smsgate.send import parse
from smsgate.status import Status
from smsgate.store import Store, Transition
from smsgate_cli.__main__ import main

CARD = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "address": "1 Main St",
    "city": "New York",
    "state": "NY",
    "zip": "10001",
    "country": "US",
    "type": "Visa",
    "number": "4111111111111111",
    "code": "737",
    "exp_month": "12",
    "exp_year": "30",
}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Result]


def stack_file(stack: Any, sims: Any, path: Path, **urls: str) -> Path:
    data = {
        "endpoint_url": None,
        "region": "us-east-1",
        "send_queue_url": stack.queues["SendQueue"],
        "dlq_url": stack.queues["SendDeadLetterQueue"],
        "messages_table": stack.tables["MessagesTable"],
        "status_table": stack.tables["StatusTable"],
        "optouts_table": stack.tables["OptOutsTable"],
        "secret_arn": stack.secret_arn,
        "health_table": stack.tables["HealthTable"],
        "routing_parameter": stack.parameters["RoutingRulesParameter"],
        "event_bus_name": stack.buses["EventBus"],
        "simulators": {**sims.urls, **urls},
        "lane_urls": {
            lid[: -len("LaneQueue")].lower(): url
            for lid, url in stack.queues.items()
            if lid.endswith("LaneQueue")
        },
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def runner(config: Path | None, monkeypatch: pytest.MonkeyPatch) -> Run:
    def run(*argv: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        out, err = io.StringIO(), io.StringIO()
        prefix = ["--config", str(config)] if config else []
        code = main([*prefix, *argv], out=out, err=err)
        return Result(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def cli(stack: Any, sims: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    return runner(stack_file(stack, sims, tmp_path / "stack.json"), monkeypatch)


@pytest.fixture
def store(stack: Any) -> Store:
    import boto3

    t = stack.tables
    return Store(t["MessagesTable"], t["StatusTable"], t["OptOutsTable"], boto3.client("dynamodb"))


def queued_bodies(stack: Any) -> list[dict[str, Any]]:
    import boto3

    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=stack.queues["SendQueue"], MaxNumberOfMessages=10, VisibilityTimeout=60
        )
        if not answer.get("Messages"):
            return bodies
        bodies.extend(json.loads(m["Body"]) for m in answer["Messages"])


# --------------------------------------------------------------------------- send


def test_send_puts_a_contract_body_on_the_queue(cli: Run, stack: Any) -> None:
    result = cli("send", "--to", "+33 6 12 34 56 78", "--text", "Bonjour STOP sms-s.top",
                 "--provider", "textinghouse", "--commercial", "--sender", "smsgate")  # fmt: skip
    assert result.code == 0, result.err
    message_id = result.out.strip()
    (body,) = queued_bodies(stack)
    assert body == {
        "id": message_id,
        "to": "+33612345678",
        "text": "Bonjour STOP sms-s.top",
        "provider": "textinghouse",
        "commercial": True,
        "sender": "smsgate",
    }
    job = parse(json.dumps(body), "sqs-id", "clubtexting")  # what the sender will read
    assert job.id == message_id and job.provider == "textinghouse"  # type: ignore[union-attr]


def test_send_keeps_the_given_id_and_reads_us_numbers(cli: Run, stack: Any) -> None:
    result = cli("--json", "send", "--to", "2125551234", "--text", "Hi", "--id", "order-42")
    assert result.code == 0, result.err
    assert result.json() == {
        "id": "order-42",
        "to": "+12125551234",
        "queued": True,
        "id_from": "given",
    }
    assert queued_bodies(stack) == [{"id": "order-42", "to": "+12125551234", "text": "Hi"}]


def test_send_refuses_an_invalid_message_and_queues_nothing(cli: Run, stack: Any) -> None:
    for argv in (
        ["--to", "12345", "--text", "Hi"],
        ["--to", "+12125551234", "--text", "Hi", "--id", "not a valid id!"],
        ["--to", "+12125551234", "--text", "Hi", "--provider", "nope"],
    ):
        result = cli("send", *argv)
        assert result.code in (1, 2), argv
        assert "invalid" in result.err
        assert "12345" not in result.err  # the number is not echoed
    assert queued_bodies(stack) == []


def test_bulk_send_reports_the_bad_row_and_sends_the_others(
    cli: Run, stack: Any, tmp_path: Path
) -> None:
    csv = tmp_path / "numbers.csv"
    csv.write_text("phone,id\n+12125551234,a1\nnot-a-number,a2\n+33612345678,a3\n\n")
    result = cli("--json", "send", "--file", str(csv), "--text", "Sale today")
    assert result.code == 1  # some rows refused
    report = result.json()
    assert [r["id"] for r in report["queued"]] == ["a1", "a3"]
    assert [r["line"] for r in report["refused"]] == [3]
    bodies = sorted(queued_bodies(stack), key=lambda b: b["id"])
    assert bodies == [
        {"id": "a1", "to": "+12125551234", "text": "Sale today"},
        {"id": "a3", "to": "+33612345678", "text": "Sale today"},
    ]

    # no header: the number in the first column; a human report with the count
    csv.write_text("\n".join(f"+1212555{n:04d}" for n in range(1, 13)) + "\n")
    result = cli("send", "--file", str(csv), "--text", "Hi", "--provider", "clubtexting")
    assert result.code == 0, result.err
    assert "12 queued, 0 refused" in result.err
    assert len(queued_bodies(stack)) == 12


# --------------------------------------------------------------------------- status, messages


def test_status_shows_the_message_and_its_history_in_order(cli: Run, store: Store) -> None:
    create = {"direction": "out", "provider": "textinghouse", "to": "+33612345678",
              "text": "Bonjour", "created_at": "2026-01-01T00:00:00.000000Z"}  # fmt: skip
    assert store.advance("m1", Transition(Status.QUEUED, source="send", create=create))
    assert store.advance("m1", Transition(Status.SENT, source="send", raw="0"))
    assert store.advance("m1", Transition(Status.DELIVERED, source="dlr", raw="3"))
    result = cli("--json", "status", "m1")
    assert result.code == 0, result.err
    data = result.json()
    assert data["message"]["status"] == "delivered" and data["message"]["text"] == "Bonjour"
    assert [(h["status"], h["source"]) for h in data["history"]] == [
        ("queued", "send"),
        ("sent", "send"),
        ("delivered", "dlr"),
    ]
    human = cli("status", "m1")
    assert human.code == 0
    lines = human.out.splitlines()
    order = [next(i for i, line in enumerate(lines) if f"  {s}" in line and "Z" in line)
             for s in ("queued", "sent", "delivered")]  # fmt: skip
    assert order == sorted(order)
    unknown = cli("status", "nope")
    assert unknown.code == 1 and "may still be on the send queue" in unknown.err


def test_messages_filters_and_never_shows_text(cli: Run, store: Store) -> None:
    rows = [
        ("a", "textinghouse", Status.DELIVERED, "2026-01-01T00:00:01.000000Z"),
        ("b", "grouptexting", Status.FAILED, "2026-01-01T00:00:02.000000Z"),
        ("c", "textinghouse", Status.FAILED, "2026-01-01T00:00:03.000000Z"),
    ]
    for mid, provider, status, at in rows:
        create = {"direction": "out", "provider": provider, "to": "+12125551234",
                  "text": "secret words", "created_at": at}  # fmt: skip
        store.advance(mid, Transition(status, source="send", create=create))
    store.db.put_item(
        TableName=store.messages,
        Item={"id": {"S": "in1"}, "direction": {"S": "in"}, "provider": {"S": "grouptexting"},
              "status": {"S": "received"}, "from": {"S": "+12125550000"},
              "text": {"S": "STOP"}, "created_at": {"S": "2026-01-01T00:00:04.000000Z"}},
    )  # fmt: skip

    everything = cli("--json", "messages").json()["messages"]
    assert [m["id"] for m in everything] == ["in1", "c", "b", "a"]  # newest first
    assert everything[0]["number"] == "+12125550000" and everything[0]["text_length"] == 4
    assert all("text" not in m for m in everything)
    failed = cli("--json", "messages", "--status", "failed").json()["messages"]
    assert [m["id"] for m in failed] == ["c", "b"]
    both = cli("messages", "--json", "--status", "failed", "--provider", "textinghouse")
    assert [m["id"] for m in both.json()["messages"]] == ["c"]
    inbound = cli("--json", "messages", "--direction", "in").json()["messages"]
    assert [m["id"] for m in inbound] == ["in1"]
    assert [m["id"] for m in cli("--json", "messages", "--limit", "2").json()["messages"]] == [
        "in1",
        "c",
    ]
    human = cli("messages")
    assert human.code == 0
    assert "secret words" not in human.out and "STOP" not in human.out
    assert "12" in human.out  # the length column


# --------------------------------------------------------------------------- opt-outs


def test_optouts_add_list_remove(cli: Run, store: Store) -> None:
    assert cli("optouts", "add", "(212) 555-1234").code == 0
    assert store.opted_out(["+12125551234"]) == {"+12125551234"}
    listed = cli("--json", "optouts", "list").json()["optouts"]
    assert [(o["phone"], o["how"]) for o in listed] == [("+12125551234", "manual")]
    assert "+12125551234" in cli("optouts", "list").out
    assert cli("optouts", "remove", "+12125551234").code == 0
    assert store.opted_out(["+12125551234"]) == set()
    again = cli("optouts", "remove", "+12125551234")
    assert again.code == 1 and "not on the opt-out list" in again.err
    assert cli("optouts", "add", "123").code == 1


# --------------------------------------------------------------------------- providers


def test_credits_against_the_simulators(cli: Run, sims: Any) -> None:
    sims.grouptexting.account().credit = 42
    result = cli("--json", "credits")
    assert result.code == 0, result.err
    by_name = {r["provider"]: r for r in result.json()["credits"]}
    assert by_name["grouptexting"]["balance"] == 42
    assert by_name["textinghouse"]["state"] == "ok"
    assert by_name["textinghouse"]["balance"] == sims.textinghouse.account().credit
    assert by_name["clubtexting"]["state"] == "no balance API"
    human = cli("credits")
    assert human.code == 0 and "grouptexting" in human.out and "42" in human.out


def test_providers_show_what_the_senders_see(cli: Run, stack: Any) -> None:
    import boto3

    from smsgate.health import HealthBoard
    from smsgate.providers import Category, Outcome, OutcomeKind
    from smsgate.routing import HealthPolicy

    board = HealthBoard(stack.tables["HealthTable"], boto3.client("dynamodb"), HealthPolicy)
    error = Outcome(OutcomeKind.RETRYABLE, Category.PROVIDER_ERROR, "-10", "error")
    board.observe("grouptexting", error, 120)
    board.flush()
    board.mark_unhealthy("textinghouse", "credit")
    boto3.client("sqs").send_message(
        QueueUrl=stack.queues["ClubTextingLaneQueue"], MessageBody="{}"
    )
    result = cli("--json", "providers")
    assert result.code == 0, result.err
    rows = {r["provider"]: r for r in result.json()["providers"]}
    assert rows["clubtexting"]["health"] == "healthy"
    assert (rows["grouptexting"]["answers"], rows["grouptexting"]["error_rate"]) == (1, 1.0)
    assert rows["textinghouse"]["health"].startswith("skipped: credit until ")
    # each lane's depth, as its queue has it
    assert (rows["clubtexting"]["lane_waiting"], rows["clubtexting"]["lane_in_flight"]) == (1, 0)
    assert rows["grouptexting"]["lane_waiting"] == 0
    human = cli("providers")
    assert human.code == 0 and "skipped: credit" in human.out


def test_routing_check_set_show(cli: Run, tmp_path: Path) -> None:
    good = tmp_path / "rules.json"
    good.write_text(
        json.dumps(
            {"rules": [{"name": "us", "countries": ["US"], "providers": {"clubtexting": 1}}]}
        )
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"providers": {"twilio": 1}}]}))
    assert cli("routing", "check", str(good)).out == "valid: us\n"
    refused = cli("routing", "set", str(bad))
    assert refused.code == 1 and "unknown providers" in refused.err
    assert json.loads(cli("routing", "show").out)["rules"] == []  # the bad file changed nothing
    assert cli("routing", "set", str(good)).code == 0
    shown = json.loads(cli("routing", "show").out)
    assert shown["rules"][0]["providers"] == {"clubtexting": 1.0}
    assert shown["health"]["cooldown_seconds"] == 120  # defaults filled in


def test_keywords_check_rent_setup(cli: Run, sims: Any) -> None:
    sims.grouptexting.rate_limit_enabled = False  # one new connection per run: see below
    assert cli("--json", "keywords", "check", "PIZZA").json()["available"] is False
    assert "available" in cli("keywords", "check", "DONUTS").out
    assert cli("--json", "keywords", "check", "DONUTS").json()["available"] is True

    rented = cli("keywords", "rent", "DONUTS", stdin=json.dumps(CARD))
    assert rented.code == 0, rented.err
    assert "DONUTS" in sims.grouptexting.account().keywords
    assert CARD["number"] not in rented.out + rented.err

    taken = cli("keywords", "rent", "PIZZA", stdin=json.dumps(CARD))
    assert taken.code == 1 and "not available" in taken.err

    setup = cli("keywords", "setup", "DONUTS", "--autoreply", "Fresh donuts at 5",
                "--email", "ops@example.com")  # fmt: skip
    assert setup.code == 0, setup.err
    config = sims.grouptexting.keyword_config("DONUTS")
    assert config.autoreply == "Fresh donuts at 5" and config.email == "ops@example.com"
    bad = cli("keywords", "setup", "NOTMINE", "--group", "x")
    assert bad.code == 1 and "invalid keyword" in bad.err


def test_buy_credits_reads_the_card_from_stdin_and_never_shows_it(
    cli: Run, sims: Any, log_stream: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    sims.grouptexting.rate_limit_enabled = False
    before = sims.grouptexting.account().credit
    result = cli("buy-credits", "--credits", "50", stdin=json.dumps(CARD))
    assert result.code == 0, result.err
    assert sims.grouptexting.account().credit == before + 50

    declined = cli("--json", "buy-credits", "--credits", "5",
                   stdin=json.dumps({**CARD, "number": "4000000000000002"}))  # fmt: skip
    assert declined.code == 1 and "declined" in declined.err
    assert declined.json()["ok"] is False

    missing = cli("buy-credits", "--credits", "5", stdin=json.dumps({"number": "4111111111111111"}))
    assert missing.code == 1 and "card details lack" in missing.err

    captured = capfd.readouterr()
    seen = "".join(
        [result.out, result.err, declined.out, declined.err, missing.out, missing.err,
         log_stream.getvalue(), captured.out, captured.err]
    )  # fmt: skip
    for secret in (CARD["number"], "4000000000000002", CARD["code"]):
        assert secret not in seen


def test_the_card_is_never_an_argument() -> None:
    assert main(["buy-credits", "--credits", "5", "--number", "4111111111111111"]) == 2


def test_group_texting_rate_limit_is_waited_out(
    cli: Run, sims: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smsgate_cli import context

    monkeypatch.setattr(context, "RATE_LIMIT_WAIT", 0.4)
    # Each run opens its own connection, through one of the deployment's two connection slots:
    # the slots space them out (a given-back slot rests a second), so the simulator, which
    # admits two connections a second, never has to refuse one.
    results = [cli("--json", "keywords", "check", "DONUTS") for _ in range(4)]
    assert [r.code for r in results] == [0, 0, 0, 0], [r.err for r in results]
    assert not any(r.status == 503 for r in sims.grouptexting.requests)
    assert sims.grouptexting.peak_connections <= 2
    # A 503 all the same (another client of the account): asked again, it succeeds.
    sims.grouptexting.force_answer("busy", status=503, times=1)
    assert cli("--json", "keywords", "check", "DONUTS").code == 0
    assert [r.status for r in sims.grouptexting.requests][-2:] == [503, 200]


# --------------------------------------------------------------------------- doctor


def test_doctor_ok(cli: Run) -> None:
    result = cli("doctor")
    assert result.code == 0, result.out + result.err
    assert "FAIL" not in result.out
    for check in ("messages table", "status table", "opt-outs table", "send queue",
                  "provider secret", "provider clubtexting", "provider grouptexting",
                  "provider textinghouse"):  # fmt: skip
        assert f"OK    {check}" in result.out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_fails_on_an_unreachable_provider(
    stack: Any, sims: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    config = stack_file(stack, sims, tmp_path / "s.json", textinghouse=dead, clubtexting=dead)
    run = runner(config, monkeypatch)
    result = run("doctor")
    assert result.code == 1
    assert "FAIL  provider textinghouse" in result.out
    assert "FAIL  provider clubtexting" in result.out
    assert "OK    provider grouptexting" in result.out
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "status_table": "no-such-table"}))
    report = run("--json", "doctor").json()
    assert report["ok"] is False
    assert {c["check"] for c in report["checks"] if not c["ok"]} == {
        "status table",
        "provider textinghouse",
        "provider clubtexting",
    }


# --------------------------------------------------------------------------- usage


COMMANDS = [
    [],
    ["send"],
    ["status"],
    ["messages"],
    ["optouts"],
    ["optouts", "list"],
    ["optouts", "add"],
    ["optouts", "remove"],
    ["credits"],
    ["keywords"],
    ["keywords", "check"],
    ["keywords", "rent"],
    ["keywords", "setup"],
    ["buy-credits"],
    ["providers"],
    ["routing"],
    ["routing", "show"],
    ["routing", "check"],
    ["routing", "set"],
    ["doctor"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "smsgate")
def test_help_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    assert "usage: smsgate" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--text", "no recipient"]) == 2
    assert main(["nope"]) == 2
    assert main(["messages", "--limit", "0"]) == 2
    assert "usage" in capsys.readouterr().err


def test_no_stack_configured_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from smsgate_cli import config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "REPO_ROOT", tmp_path)
    monkeypatch.delenv("MESSAGES_TABLE", raising=False)
    assert main(["status", "x"]) == 2
    assert "make run" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.json"), "doctor"]) == 2
    assert main(["--local", "doctor"]) == 2


def test_local_stack_file_is_the_default(
    stack: Any, sims: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".local").mkdir()
    stack_file(stack, sims, tmp_path / ".local" / "stack.json")
    monkeypatch.chdir(tmp_path)
    result = runner(None, monkeypatch)("--json", "doctor")
    assert result.code == 0, result.out
    assert result.json()["checks"][0]["detail"].startswith("file ")


# --------------------------------------------------------------------------- send: the producer


def put_record(store: Store, message_id: str, **attrs: Any) -> None:
    """A message record as a sender writes it when it takes the message (what `send` and
    `status` read), put directly."""
    from boto3.dynamodb.types import TypeSerializer

    item = {"id": message_id, "direction": "out", "created_at": "2026-03-01T10:00:00.000000Z",
            **attrs}  # fmt: skip
    serialiser = TypeSerializer()
    store.db.put_item(
        TableName=store.messages, Item={k: serialiser.serialize(v) for k, v in item.items()}
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Set the CLI's clock (UTC, ISO 8601) for the ids made from a message's content."""
    from datetime import datetime

    from smsgate_cli import send

    def at(moment: str) -> None:
        monkeypatch.setattr(send, "now", lambda: datetime.fromisoformat(moment))

    at("2026-03-01T10:30:00+00:00")
    return at


def test_send_refuses_what_the_sender_would_refuse(cli: Run, stack: Any, tmp_path: Path) -> None:
    cases = [
        (["--to", "2125551234", "--text", "x" * 131, "--provider", "clubtexting"],
         "clubtexting: rule:length: message is 131 characters, limit 130"),
        (["--to", "2125551234", "--text", "Don't", "--provider", "clubtexting"],
         "clubtexting: rule:quotes"),
        (["--to", "2125551234", "--text", "Sale", "--subject", 'a "deal"', "--provider",
          "clubtexting"], "clubtexting: rule:quotes"),
        (["--to", "+33612345678", "--text", "Bonjour", "--sender", "TwelveChars1"],
         "textinghouse: rule:sender: sender id must be 1-11 of [A-Za-z0-9]"),
        (["--to", "+33612345678", "--text", "Promo", "--commercial"],
         "textinghouse: rule:stop_mention: a commercial message must end with 'STOP sms-s.top'"),
        (["--to", "+33612345678", "--text", "Bonjour", "--provider", "grouptexting"],
         "grouptexting: rule:number"),
    ]  # fmt: skip
    for argv, reason in cases:
        result = cli("send", *argv)
        assert result.code == 1, (argv, result.err)
        assert f"refused, nothing queued: {reason}" in result.err
        assert result.out == ""
    as_json = cli("--json", "send", *cases[0][0])
    assert as_json.code == 1
    document = as_json.json()
    assert document["ok"] is False and document["exit_code"] == 1
    assert document["refused"]["reason"] == cases[0][1]
    assert document["refused"]["candidates"] == ["clubtexting"]
    # routed: the rules in force are read; a 150-character US text goes to Group Texting, a
    # 170-character one fits no candidate
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [
        {"name": "us", "countries": ["US"], "providers": {"clubtexting": 1, "grouptexting": 1}}
    ]}))  # fmt: skip
    assert cli("routing", "set", str(rules)).code == 0
    assert cli("send", "--to", "2125551234", "--text", "y" * 150).code == 0
    routed = cli("send", "--to", "2125551234", "--text", "y" * 170)
    assert routed.code == 1 and "clubtexting: rule:length" in routed.err
    assert [b["text"] for b in queued_bodies(stack)] == ["y" * 150]


def test_the_id_is_made_from_the_message_and_the_hour(
    cli: Run, stack: Any, store: Store, clock: Callable[[str], None]
) -> None:
    first = cli("send", "--to", "+1 212 555 1234", "--text", "Hi", "--provider", "clubtexting")
    assert first.code == 0, first.err
    message_id = first.out.strip()
    assert len(message_id) == 32 and message_id.startswith("2026030110h")
    assert "the UTC hour 2026-03-01 10:00" in first.err and "--again" in first.err
    # the same message however the number is written: the same id
    again = cli("--json", "send", "--to", "2125551234", "--text", "Hi", "--provider",
                "clubtexting")  # fmt: skip
    assert again.json()["id"] == message_id and again.json()["id_from"] == "content"
    # another text, another provider, another hour: another id
    other = {
        cli("send", "--to", "2125551234", "--text", "Hi!", "--provider", "clubtexting").out,
        cli("send", "--to", "2125551234", "--text", "Hi", "--provider", "grouptexting").out,
    }
    assert message_id + "\n" not in other and len(other) == 2
    clock("2026-03-01T11:30:00+00:00")
    later = cli("send", "--to", "2125551234", "--text", "Hi", "--provider", "clubtexting")
    assert later.out.startswith("2026030111h")
    ids = [b["id"] for b in queued_bodies(stack)]
    assert ids.count(message_id) == 2  # no record yet: the claim drops the copy (one send)

    # once a sender has taken it, the same send is reported and not queued again
    clock("2026-03-01T10:45:00+00:00")
    put_record(store, message_id, status="sent", provider="clubtexting", to="+12125551234",
               text="Hi")  # fmt: skip
    known = cli("send", "--to", "2125551234", "--text", "Hi", "--provider", "clubtexting")
    assert known.code == 0 and known.out.strip() == message_id
    assert "already known (status sent): not queued again" in known.err
    as_json = cli("--json", "send", "--to", "2125551234", "--text", "Hi", "--provider",
                  "clubtexting").json()  # fmt: skip
    assert as_json == {"id": message_id, "to": "+12125551234", "queued": False, "known": True,
                       "status": "sent"}  # fmt: skip
    # ten minutes into the next hour, the previous hour's id still counts
    clock("2026-03-01T11:05:00+00:00")
    grace = cli("send", "--to", "2125551234", "--text", "Hi", "--provider", "clubtexting")
    assert grace.code == 0 and grace.out.strip() == message_id and "already known" in grace.err
    # --again: a random id, sent again on purpose
    on_purpose = cli("send", "--to", "2125551234", "--text", "Hi", "--provider", "clubtexting",
                     "--again")  # fmt: skip
    assert on_purpose.code == 0 and on_purpose.out.strip() != message_id
    assert "random" in on_purpose.err
    assert [b["id"] for b in queued_bodies(stack)] == [on_purpose.out.strip()]


def test_an_id_that_names_another_message_is_refused(cli: Run, stack: Any, store: Store) -> None:
    put_record(store, "order-1", status="delivered", provider="textinghouse",
               to="+33612345678", text="Shipped")  # fmt: skip
    same = cli("send", "--to", "+33612345678", "--text", "Shipped", "--id", "order-1")
    assert same.code == 0 and "already known (status delivered)" in same.err
    changed = cli("--json", "send", "--to", "+33612345678", "--text", "Cancelled", "--id",
                  "order-1")  # fmt: skip
    assert changed.code == 1
    document = changed.json()
    assert "id order-1 already names another message (text differs" in document["error"]
    assert document["status"] == "delivered" and document["exit_code"] == 1
    other_number = cli("send", "--to", "+33612345679", "--text", "Shipped", "--id", "order-1")
    assert other_number.code == 1 and "(to differs" in other_number.err
    assert queued_bodies(stack) == []


def test_a_csv_reads_every_column_of_the_body(cli: Run, stack: Any, tmp_path: Path) -> None:
    sheet = tmp_path / "messages.csv"
    sheet.write_text(
        "Phone,Message,Provider,ID,Subject,Commercial,Express,Sender,Failover\n"
        "2125551234,Sale today,clubtexting,c1,Deals,no,yes,,0\n"
        "+33612345678,Promo STOP sms-s.top,textinghouse,t1,,true,false,Shop,\n"
        "2125551235,Hello,,g1,,0,0,,1\n"
    )
    result = cli("--json", "send", "--file", str(sheet))
    assert result.code == 0, result.err
    assert result.json()["summary"] == "3 queued, 0 refused"
    bodies = {b["id"]: b for b in queued_bodies(stack)}
    assert bodies == {
        "c1": {"id": "c1", "to": "+12125551234", "text": "Sale today", "provider": "clubtexting",
               "subject": "Deals", "commercial": False, "express": True, "failover": False},
        "t1": {"id": "t1", "to": "+33612345678", "text": "Promo STOP sms-s.top",
               "provider": "textinghouse", "commercial": True, "express": False,
               "sender": "Shop"},
        "g1": {"id": "g1", "to": "+12125551235", "text": "Hello", "commercial": False,
               "express": False, "failover": True},
    }  # fmt: skip


def test_a_csv_refuses_rows_with_their_reasons_and_counts_what_was_queued(
    cli: Run, stack: Any, tmp_path: Path
) -> None:
    sheet = tmp_path / "messages.csv"
    sheet.write_text(
        "to,text,id,commercial\n"
        "2125551234,fine,a1,\n"
        "2125551235,second,a1,\n"  # the id of line 2
        "2125551236,maybe,a3,perhaps\n"  # not a boolean
        '2125551237,"Don\'t",a4,\n'  # quotes (Club Texting, named below)
        "2125551238,too,many,cells,here\n"
        "2125551239,,a6,\n"  # no text
        "2125551240,twice,,\n"
        "2125551240,twice,,\n"  # the same message as the line before
    )
    result = cli("send", "--file", str(sheet), "--provider", "clubtexting")
    assert result.code == 1
    err = result.err
    assert f"{sheet}:3: the id of line 2 (id a1): not queued" in err
    assert f"{sheet}:4: commercial: expected true/false, yes/no or 1/0" in err
    assert f"{sheet}:5: clubtexting: rule:quotes" in err
    assert f"{sheet}:6: 5 cells for 4 columns" in err
    assert f"{sheet}:7: no text" in err
    assert f"{sheet}:9: the same message as line 8" in err
    assert err.strip().endswith("2 queued, 6 refused")
    assert sorted(b["text"] for b in queued_bodies(stack)) == ["fine", "twice"]


def test_a_csv_that_cannot_be_read_as_messages_exits_2_once(
    cli: Run, stack: Any, tmp_path: Path
) -> None:
    sheet = tmp_path / "messages.csv"
    sheet.write_text("to,txt,colour\n2125551234,hi,red\n2125551235,ho,blue\n")
    unknown = cli("send", "--file", str(sheet), "--text", "x")
    assert unknown.code == 2
    assert "unknown columns 'txt', 'colour' (accepted: to, phone, number, mobile, text," in (
        unknown.err
    )
    assert unknown.err.count("error:") == 1
    as_json = cli("--json", "send", "--file", str(sheet), "--text", "x").json()
    assert as_json["exit_code"] == 2 and as_json["unknown"] == ["txt", "colour"]
    assert "failover" in as_json["accepted"]

    sheet.write_text("text,id\nhello,a\nworld,b\n")
    no_number = cli("send", "--file", str(sheet))
    assert no_number.code == 2 and no_number.err.count("no number column") == 1

    sheet.write_text("to\n2125551234\n")
    no_text = cli("send", "--file", str(sheet))
    assert no_text.code == 2 and "--text (or a text column)" in no_text.err

    # a spreadsheet's ;-separated export: read as it is, said on stderr
    sheet.write_text("to;text\n2125551234;Bonjour, hello\n2125551235;Hi\n")
    detected = cli("send", "--file", str(sheet), "--provider", "grouptexting")
    assert detected.code == 0, detected.err
    assert "as ';'-separated" in detected.err and "2 queued, 0 refused" in detected.err
    assert sorted(b["text"] for b in queued_bodies(stack)) == ["Bonjour, hello", "Hi"]
    # ... and when told the wrong delimiter, the hint
    wrong = cli("send", "--file", str(sheet), "--delimiter", ",")
    assert wrong.code == 2 and "try --delimiter ';'" in wrong.err

    missing = cli("send", "--file", str(tmp_path / "nope.csv"), "--text", "x")
    assert missing.code == 2 and "cannot read" in missing.err
    assert queued_bodies(stack) == []


def test_usage_errors_have_one_exit_code_and_one_wording(cli: Run, stack: Any) -> None:
    no_text = cli("send", "--to", "2125551234")
    no_to = cli("send", "--text", "Hi")
    for result, message in (
        (no_text, "smsgate send: error: the following arguments are required: --text"),
        (no_to, "smsgate send: error: one of the arguments --to --file is required"),
    ):
        assert result.code == 2 and message in result.err
        assert result.err.startswith("usage: smsgate send")
    with_file = cli("send", "--file", "x.csv", "--id", "a", "--text", "Hi")
    assert with_file.code == 2 and "argument --id: not allowed with argument --file" in (
        with_file.err
    )
    # --json: a JSON document on stdout, errors too
    twilio = cli("--json", "send", "--to", "2125551234", "--text", "Hi", "--provider", "twilio")
    assert twilio.code == 2
    document = twilio.json()
    assert document["ok"] is False and document["exit_code"] == 2
    assert "invalid choice: 'twilio'" in document["error"]
    assert document["usage"].startswith("usage: smsgate send")
    after = cli("send", "--to", "2125551234", "--json")  # --json after the command
    assert after.code == 2 and after.json()["error"].startswith("the following arguments")
    missing = cli("--json", "status", "nope")
    assert missing.code == 1
    assert missing.json() == {
        "ok": False,
        "exit_code": 1,
        "id": "nope",
        "found": False,
        "error": missing.json()["error"],
    }
    assert queued_bodies(stack) == []


def test_no_stack_in_json_is_a_json_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--json", "--config", str(tmp_path / "missing.json"), "doctor"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["exit_code"] == 2 and "no such file" in document["error"]


def test_status_is_readable_and_raw_under_json(cli: Run, store: Store) -> None:
    put_record(
        store,
        "m-read",
        status="sent",
        provider="grouptexting",
        to="+12125551234",
        text="Hi",
        expires_at=1780000000,
        provider_attempts=[
            {"provider": "clubtexting", "code": "-2", "outcome": "retryable",
             "at": "2026-03-01T10:00:01.000000Z"},
            {"provider": "grouptexting", "code": "1", "outcome": "sent",
             "at": "2026-03-01T10:00:02.000000Z"},
        ],
        segments=1,
    )  # fmt: skip
    human = cli("status", "m-read")
    assert human.code == 0, human.err
    assert "2026-05-28T20:26:40Z (UTC)" in human.out  # expires_at, not epoch seconds
    assert "1780000000" not in human.out
    assert "provider attempts:" in human.out
    assert not any(ch in human.out for ch in "[]{}") and "Decimal" not in human.out
    lines = human.out.splitlines()
    attempt = next(line for line in lines if line.startswith("2026-03-01T10:00:01"))
    assert attempt.split() == ["2026-03-01T10:00:01.000000Z", "clubtexting", "retryable", "-2"]
    raw = cli("--json", "status", "m-read").json()
    assert raw["message"]["expires_at"] == 1780000000  # the item as stored
    assert raw["message"]["provider_attempts"][1]["outcome"] == "sent"


def test_events_follow_cleans_up_on_sigterm(
    cli: Run, stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    import boto3

    from smsgate_cli import bus

    real = bus.BusTap.receive
    terminated: list[bool] = []

    def receive(self: Any, wait: int = 1) -> list[dict[str, Any]]:
        if not terminated:
            terminated.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` (or a supervisor) would
        return real(self, 0)

    def never(signum: int, frame: object) -> None:
        raise AssertionError("SIGTERM reached the test's own handler")

    monkeypatch.setattr(bus.BusTap, "receive", receive)
    previous = signal.signal(signal.SIGTERM, never)
    try:
        result = cli("events", "--follow")
        assert signal.getsignal(signal.SIGTERM) is never  # put back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.code == 0, result.err
    assert terminated and "SIGTERM" in result.err
    events = boto3.client("events")
    assert events.list_rules(EventBusName=stack.buses["EventBus"])["Rules"] == []
    queues = boto3.client("sqs").list_queues().get("QueueUrls", [])
    assert not [q for q in queues if "smsgate-tap" in q]


def test_help_says_what_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--help"]) == 0
    text = capsys.readouterr().out
    assert "DESIGN" not in text and "--again" in text and "UTC hour" in text
    assert "Exit codes: 0 done, 1 refused or failed, 2 usage or configuration error" in text
    for argv in (["buy-credits", "--help"], ["keywords", "rent", "--help"]):
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert "exp_month, exp_year" in text and "MM and YY" in text
        assert "MC, Visa, AX, DS or JCB" in text


BROKEN_PIPE_SCRIPT = """
import json, os, sys
os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing",
                  AWS_SECRET_ACCESS_KEY="testing")
from moto import mock_aws
with mock_aws():
    import boto3
    from smsgate_local.stack import build_stack
    stack = build_stack({"callback_token": "t" * 32})
    boto3.client("dynamodb").put_item(
        TableName=stack.tables["MessagesTable"],
        Item={"id": {"S": "m1"}, "status": {"S": "sent"}, "direction": {"S": "out"},
              "text": {"S": "x" * 5000}})
    config = sys.argv[1]
    with open(config, "w") as fh:
        json.dump({"region": "us-east-1", "send_queue_url": stack.queues["SendQueue"],
                   "messages_table": stack.tables["MessagesTable"],
                   "status_table": stack.tables["StatusTable"],
                   "optouts_table": stack.tables["OptOutsTable"],
                   "secret_arn": stack.secret_arn}, fh)
    sys.stdin.readline()  # the reader has gone: write into a closed pipe
    from smsgate_cli.__main__ import main
    code = main(["--config", config, *sys.argv[2:]])
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["status", "m1"], ["--json", "status", "m1"]])
def test_a_closed_pipe_is_no_traceback(tmp_path: Path, argv: list[str]) -> None:
    """`smsgate status ID | head`: head leaves after its lines; smsgate says nothing more."""
    import subprocess

    process = subprocess.Popen(  # noqa: S603 - this interpreter, this test's script
        [sys.executable, "-c", BROKEN_PIPE_SCRIPT, str(tmp_path / "stack.json"), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert process.stdin and process.stdout and process.stderr
    process.stdout.close()  # as `head` does once it has its lines
    process.stdin.write(b"go\n")
    process.stdin.close()
    err = process.stderr.read()
    process.wait(timeout=90)
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"BrokenPipeError" not in err
    assert b"Exception ignored" not in err


# --------------------------------------------------------------------------- later, cancel


def test_send_at_and_valid_for_reach_the_body(cli: Run, stack: Any) -> None:
    from datetime import UTC, datetime, timedelta

    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    result = cli("send", "--to", "+33612345678", "--text", "Rappel", "--provider",
                 "textinghouse", "--at", when.isoformat(), "--valid-for", "5m")  # fmt: skip
    assert result.code == 0, result.err
    (body,) = queued_bodies(stack)
    assert body["send_at"] == when.isoformat() and body["validity_seconds"] == 300


def test_send_at_mistakes_are_refused(cli: Run, stack: Any) -> None:
    base = ("send", "--to", "+33612345678", "--text", "x", "--provider", "textinghouse")
    past = cli(*base, "--at", "2020-01-01T09:00:00Z")
    assert past.code == 1 and "send_at: is in the past" in past.err
    naive = cli(*base, "--at", "2030-01-01T09:00:00")
    assert naive.code == 1 and "send_at" in naive.err
    for bad in ("5 minutes", "-5m", "0", "m"):
        result = cli(*base, f"--valid-for={bad}")
        assert result.code == 2 and "duration" in result.err, bad
    assert queued_bodies(stack) == []


def test_cancel_answers_from_the_sender(cli: Run, stack: Any, store: Store) -> None:
    import threading

    from conftest import load_function
    from sqs_source import poll_once

    put_record(store, "gone-1", status="delivered", to="+33612345678")
    late = cli("cancel", "gone-1")
    assert late.code == 1 and "too late" in late.out
    assert queued_bodies(stack) == []  # nothing was asked of the sender
    put_record(store, "held-1", status="scheduled", to="+33612345678", lease="")
    answer: dict[str, Result] = {}
    asking = threading.Thread(
        target=lambda: answer.update(r=cli("--json", "cancel", "held-1", "--wait", "30"))
    )
    asking.start()
    handler = load_function("send").lambda_handler
    url, arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
    while asking.is_alive():
        poll_once(url, arn, handler, 30_000)
        asking.join(0.2)
    result = answer["r"]
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "id": "held-1", "status": "failed", "cancelled": True, "result": "cancelled"
    }  # fmt: skip
    again = cli("cancel", "held-1")
    assert again.code == 0 and "already cancelled" in again.out
