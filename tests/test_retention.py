"""Inbound text retention: the scheduled RetentionFunction and `smsgate retention`
share smsgate.retention; runs are bounded, idempotent and safe against each other; the local
stack's Scheduler fires the function from the template; `--backfill` upgrades old items."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import LambdaContext, load_function
from test_cli import Run, runner, stack_file

from smsgate.erasure import erase
from smsgate.retention import MARGIN_MS, backfill, strip_inbound_text
from smsgate.status import Status
from smsgate.store import DAY, Store, Transition, from_item, now_iso, to_item
from smsgate_local.stack import load_template

US, FR = "+12125550111", "+33612345678"
TEXT = "Tres secret 4111111111111111"
EVENT = json.loads((Path(__file__).parent.parent / "events" / "retention.json").read_text())


@pytest.fixture
def db(stack: Any) -> Any:
    return boto3.client("dynamodb")


def make_store(stack: Any, db: Any, text_days: int = 30) -> Store:
    t = stack.tables
    return Store(t["MessagesTable"], t["StatusTable"], t["OptOutsTable"], db,
                 inbound_text_retention_days=text_days)  # fmt: skip


def inbound(store: Store, message_id: str, sender: str = US, text: str = TEXT) -> None:
    record = {"direction": "in", "provider": "textinghouse", "kind": "mo", "from": sender,
              "keyword": "Tres", "text": text, "created_at": now_iso()}  # fmt: skip
    assert store.advance(message_id, Transition(Status.RECEIVED, source="mo", create=record))


def texts(store: Store, ids: list[str]) -> dict[str, bool]:
    """id -> whether the message still holds its text."""
    return {i: "text" in (store.get_message(i) or {}) for i in ids}


@pytest.fixture
def handler(stack: Any) -> Iterator[Any]:
    yield load_function("retention").lambda_handler


# --------------------------------------------------------------------------- the rule


def test_strips_only_due_texts_and_keeps_the_metadata(stack: Any, db: Any) -> None:
    short, long_ = make_store(stack, db, text_days=1), make_store(stack, db, text_days=5)
    inbound(short, "in-1d")
    inbound(long_, "in-5d")
    claim = short.claim("out1", {"direction": "out", "provider": "textinghouse", "to": US,
                                 "text": TEXT}, 30)  # fmt: skip
    short.advance("out1", Transition(Status.SENT, source="send", lease=claim.lease))
    before = short.get_message("in-1d") or {}

    assert strip_inbound_text(short, now=time.time() + DAY / 2).due == 0  # not yet due
    report = strip_inbound_text(short, now=time.time() + 2 * DAY)
    assert (report.due, report.stripped, report.already_done, report.more) == (1, 1, 0, False)
    assert texts(short, ["in-1d", "in-5d", "out1"]) == {"in-1d": False, "in-5d": True,
                                                         "out1": True}  # fmt: skip
    after = short.get_message("in-1d") or {}
    assert set(before) - set(after) == {"text", "text_expires_at"}
    assert after["text_removed_at"] and after["from"] == US and after["phone"] == US
    assert {k: after[k] for k in ("status", "created_at", "expires_at", "provider")} == {
        k: before[k] for k in ("status", "created_at", "expires_at", "provider")
    }
    # The 5-day text goes on the run after its own expiry; then nothing is left.
    assert strip_inbound_text(short, now=time.time() + 6 * DAY).stripped == 1
    assert strip_inbound_text(short, now=time.time() + 6 * DAY).due == 0


def test_a_bounded_run_leaves_the_rest_to_the_next(stack: Any, db: Any) -> None:
    store = make_store(stack, db, text_days=1)
    ids = [f"in{n}" for n in range(7)]
    for i in ids:
        inbound(store, i)
    later = time.time() + 2 * DAY
    runs = [strip_inbound_text(store, now=later, max_items=3, page_size=2) for _ in range(3)]
    assert [(r.stripped, r.more) for r in runs] == [(3, True), (3, True), (1, False)]
    assert not any(texts(store, ids).values())
    again = strip_inbound_text(store, now=later)
    assert (again.due, again.stripped, again.more) == (0, 0, False)


def test_a_run_stops_before_its_deadline(stack: Any, db: Any) -> None:
    store = make_store(stack, db, text_days=1)
    for n in range(4):
        inbound(store, f"in{n}")
    left = iter([MARGIN_MS + 1, MARGIN_MS + 1, MARGIN_MS - 1])  # the invocation's clock
    report = strip_inbound_text(store, now=time.time() + 2 * DAY, remaining_ms=lambda: next(left))
    assert (report.stripped, report.more) == (2, True)


def test_concurrent_runs_and_erasure_never_strip_twice(stack: Any, db: Any) -> None:
    store = make_store(stack, db, text_days=1)
    for n in range(3):
        inbound(store, f"in{n}")
    inbound(store, "in-fr", FR)
    later = time.time() + 2 * DAY
    other: list[Any] = []

    def interleave() -> int:
        """Before this run's first update, another run does everything and an erasure
        deletes one message: each of this run's updates then finds nothing due."""
        if not other:
            erase(store, FR)
            other.append(strip_inbound_text(store, now=later))
        return 60_000

    report = strip_inbound_text(store, now=later, remaining_ms=interleave)
    assert other[0].stripped == 3
    assert (report.due, report.stripped, report.already_done) == (4, 0, 4)
    assert store.get_message("in-fr") is None  # a conditional update never re-creates it


# --------------------------------------------------------------------------- the function


def test_handler_runs_within_its_deadline_then_finishes(
    stack: Any, handler: Any, log_stream: Any, capsys: Any
) -> None:
    from smsgate import wiring

    store = wiring.store()
    for n in range(3):
        inbound(store, f"in{n}")
    past = now_iso()  # make them due now: the function reads the real clock
    for n in range(3):
        boto3.client("dynamodb").update_item(
            TableName=store.messages, Key={"id": {"S": f"in{n}"}},
            UpdateExpression="SET text_expires_at = :past",
            ExpressionAttributeValues={":past": {"S": past}},
        )  # fmt: skip
    short = handler(EVENT, LambdaContext(remaining_ms=MARGIN_MS - 100))
    assert short == {"due": 0, "stripped": 0, "already_done": 0, "more": True}
    done = handler(EVENT, LambdaContext(remaining_ms=30_000))
    assert done == {"due": 3, "stripped": 3, "already_done": 0, "more": False}
    assert handler(EVENT, LambdaContext(remaining_ms=30_000))["due"] == 0

    logged, printed = log_stream.getvalue(), capsys.readouterr().out
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    runs = [line for line in lines if line.get("message") == "inbound text retention"]
    assert [(r["stripped"], r["more"]) for r in runs] == [(0, True), (3, False), (0, False)]
    emf = [json.loads(line) for line in printed.splitlines() if '"_aws"' in line]
    removed = [m["InboundTextRemoved"] for m in emf if "InboundTextRemoved" in m]
    backlog = [m["InboundTextRetentionBacklog"] for m in emf if "InboundTextRetentionBacklog" in m]
    assert (removed, backlog) == ([[0], [3], [0]], [[1], [0], [0]])  # one EMF line per run
    for needle in (US, US.lstrip("+"), "Tres secret", "4111111111111111", "in0"):
        assert needle not in logged + printed, needle


def test_local_stack_scheduler_fires_the_template_schedule(stack: Any) -> None:
    """`make run` loads every template function and its Schedule events (runtime.py); the
    retention function must be among them, at RetentionRate."""
    from smsgate_local.runtime import Scheduler, load_functions
    from smsgate_local.stack import _Resolver

    template = load_template()
    refs = dict(stack.refs)
    for lid in template["Resources"]:
        refs.setdefault(lid, f"{stack.prefix}-{lid}")
    functions = load_functions(template, _Resolver(template, refs, stack.attrs).resolve,
                               stack.prefix)  # fmt: skip
    scheduler = Scheduler(functions)
    (run,) = [r for r in scheduler.runs if r.function.logical_id == "RetentionFunction"]
    assert (run.expression, run.interval) == ("rate(1 hour)", 3600)
    assert scheduler.run_now("RetentionFunction") == {
        "due": 0, "stripped": 0, "already_done": 0, "more": False,
    }  # fmt: skip
    assert run.runs == 1 and run.last_error is None


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(stack: Any, sims: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    return runner(stack_file(stack, sims, tmp_path / "stack.json"), monkeypatch)


def test_cli_applies_the_same_rule_without_a_bound(cli: Run, stack: Any, db: Any) -> None:
    store = make_store(stack, db, text_days=1)
    for n in range(3):
        inbound(store, f"in{n}")
    past = {":past": {"S": "2020-01-01T00:00:00.000000Z"}}
    db.update_item(TableName=store.messages, Key={"id": {"S": "in0"}},
                   UpdateExpression="SET text_expires_at = :past",
                   ExpressionAttributeValues=past)  # fmt: skip
    dry = cli("--json", "retention")
    assert dry.code == 0 and dry.json()["due"] == 1 and dry.json()["text_removed"] == 0
    applied = cli("--json", "retention", "--apply")
    assert applied.json() == {"due": 1, "text_removed": 1, "already_done": 0, "applied": True}
    assert texts(store, ["in0", "in1", "in2"]) == {"in0": False, "in1": True, "in2": True}


# --------------------------------------------------------------------------- backfill

OLD_AT = "2026-01-10T08:00:00.000000Z"  # before retention existed
OLD_EPOCH = 1768032000  # OLD_AT in seconds


def test_backfill_gives_old_items_what_new_ones_get(cli: Run, stack: Any, db: Any) -> None:
    t = stack.tables
    old = [
        {"id": "old-out", "direction": "out", "to": FR, "text": "x", "status": "sent",
         "created_at": OLD_AT},
        {"id": "old-in", "direction": "in", "from": US, "text": TEXT, "status": "received",
         "created_at": OLD_AT},
        {"id": "old-erased", "direction": "out", "status": "sent", "created_at": OLD_AT,
         "erased_at": OLD_AT},
    ]  # fmt: skip
    for item in old:
        db.put_item(TableName=t["MessagesTable"], Item=to_item(item))
    history = {"message_id": "old-in", "at": f"{OLD_AT}#received", "status": "received"}
    audit = {"message_id": "audit#erasure", "at": OLD_AT, "messages_found": 1}
    for item in (history, audit):
        db.put_item(TableName=t["StatusTable"], Item=to_item(item))
    inbound(make_store(stack, db), "new-in")  # already has everything: left alone

    dry = cli("--json", "retention", "--backfill")
    assert dry.code == 0, dry.err
    assert dry.json() == {"messages": 3, "history": 1, "more": False, "applied": False}
    bounded = cli("--json", "retention", "--backfill", "--apply", "--max-items", "2")
    assert bounded.json() == {"messages": 2, "history": 0, "more": True, "applied": True}
    rest = cli("--json", "retention", "--backfill", "--apply", "--retention-days", "400")
    assert rest.json() == {"messages": 1, "history": 1, "more": False, "applied": True}
    again = cli("--json", "retention", "--backfill", "--apply")
    assert again.json() == {"messages": 0, "history": 0, "more": False, "applied": True}

    store = make_store(stack, db)
    got = {i["id"]: store.get_message(i["id"]) or {} for i in old}
    days = sorted((got[i]["expires_at"] - OLD_EPOCH) // DAY for i in got)
    assert days == [90, 90, 400]  # two in the bounded run, the last with --retention-days
    assert got["old-out"]["phone"] == FR
    assert got["old-in"]["phone"] == US
    assert got["old-in"]["text_expires_at"] == "2026-02-09T08:00:00.000000Z"  # + 30 days
    assert "phone" not in got["old-erased"] and got["old-erased"]["expires_at"]
    (entry,) = store.history("old-in")
    assert entry["expires_at"] == OLD_EPOCH + 400 * DAY  # the second run's --retention-days
    audits = [from_item(i) for i in db.scan(TableName=t["StatusTable"])["Items"]]
    assert all("expires_at" not in a for a in audits if a["message_id"] == "audit#erasure")
    # Backfilled inbound text is then stripped by the ordinary retention rule.
    assert strip_inbound_text(store).stripped == 1
    assert backfill(store, apply=True).messages == 0
