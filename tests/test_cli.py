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

from smsgate.sender import parse
from smsgate.status import Status
from smsgate.store import Store
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
    result = cli("send", "--to", "+33 6 12 34 56 78", "--text", "Bonjour", "--provider",
                 "textinghouse", "--commercial", "--sender", "smsgate")  # fmt: skip
    assert result.code == 0, result.err
    message_id = result.out.strip()
    (body,) = queued_bodies(stack)
    assert body == {
        "id": message_id,
        "to": "+33612345678",
        "text": "Bonjour",
        "provider": "textinghouse",
        "commercial": True,
        "sender": "smsgate",
    }
    job = parse(json.dumps(body), "sqs-id", "clubtexting")  # what the sender will read
    assert job.id == message_id and job.provider == "textinghouse"  # type: ignore[union-attr]


def test_send_keeps_the_given_id_and_reads_us_numbers(cli: Run, stack: Any) -> None:
    result = cli("--json", "send", "--to", "2125551234", "--text", "Hi", "--id", "order-42")
    assert result.code == 0, result.err
    assert result.json() == {"id": "order-42", "to": "+12125551234", "queued": True}
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
    assert result.code == 1  # some rows rejected
    report = result.json()
    assert [r["id"] for r in report["queued"]] == ["a1", "a3"]
    assert [r["line"] for r in report["rejected"]] == [3]
    bodies = sorted(queued_bodies(stack), key=lambda b: b["id"])
    assert bodies == [
        {"id": "a1", "to": "+12125551234", "text": "Sale today"},
        {"id": "a3", "to": "+33612345678", "text": "Sale today"},
    ]

    # no header: the number in the first column; a human report with the count
    csv.write_text("\n".join(f"+1212555{n:04d}" for n in range(1, 13)) + "\n")
    result = cli("send", "--file", str(csv), "--text", "Hi", "--provider", "clubtexting")
    assert result.code == 0, result.err
    assert "12 queued, 0 rejected" in result.err
    assert len(queued_bodies(stack)) == 12


# --------------------------------------------------------------------------- status, messages


def test_status_shows_the_message_and_its_history_in_order(cli: Run, store: Store) -> None:
    create = {"direction": "out", "provider": "textinghouse", "to": "+33612345678",
              "text": "Bonjour", "created_at": "2026-01-01T00:00:00.000000Z"}  # fmt: skip
    assert store.advance("m1", Status.QUEUED, source="send", create=create)
    assert store.advance("m1", Status.SENT, source="send", raw="0")
    assert store.advance("m1", Status.DELIVERED, source="dlr", raw="3")
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
    assert unknown.code == 1 and "no message" in unknown.err


def test_messages_filters_and_never_shows_text(cli: Run, store: Store) -> None:
    rows = [
        ("a", "textinghouse", Status.DELIVERED, "2026-01-01T00:00:01.000000Z"),
        ("b", "grouptexting", Status.FAILED, "2026-01-01T00:00:02.000000Z"),
        ("c", "textinghouse", Status.FAILED, "2026-01-01T00:00:03.000000Z"),
    ]
    for mid, provider, status, at in rows:
        create = {"direction": "out", "provider": provider, "to": "+12125551234",
                  "text": "secret words", "created_at": at}  # fmt: skip
        store.advance(mid, status, source="send", create=create)
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
