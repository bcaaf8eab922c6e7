"""End-to-end: the whole local stack (`make run`) started by a fixture on ephemeral ports, in
this process (moto server, simulators, local API, SQS poller, schedules, alarms), driven as a
user drives it: messages on the queue, callbacks through the simulators, state read back from
moto. The last test stops it and checks nothing is left (threads, listening ports)."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from smsgate_local.demo import run_demo
from smsgate_local.run import LocalStack, Options

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    before = set(threading.enumerate())
    options = Options(
        ports={
            k: 0 for k in ("moto", "api", "control", "clubtexting", "grouptexting", "textinghouse")
        },
        state_dir=tmp_path_factory.mktemp("local-stack"),
        fast=True,
        view=False,
        dlr_delay=0.05,
    )
    stack = LocalStack(options).start()
    stack.threads_before = before  # type: ignore[attr-defined]
    yield stack
    stack.stop()


def _client(local: LocalStack, name: str) -> Any:
    return local.client(name)


def _wait(check: Callable[[], Any], timeout: float = 15.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def _message(local: LocalStack, mid: str) -> dict[str, Any]:
    item = _client(local, "dynamodb").get_item(
        TableName=local.info["messages_table"], Key={"id": {"S": mid}}, ConsistentRead=True
    )
    return {k: next(iter(v.values())) for k, v in item.get("Item", {}).items()}


def _send(local: LocalStack, **body: Any) -> str:
    mid = body.setdefault("id", f"e2e-{uuid.uuid4().hex[:12]}")
    _client(local, "sqs").send_message(
        QueueUrl=local.info["send_queue_url"], MessageBody=json.dumps(body)
    )
    return str(mid)


def _status_of(local: LocalStack, mid: str, want: str, timeout: float = 15.0) -> dict[str, Any]:
    return _wait(lambda: (m := _message(local, mid)).get("status") == want and m, timeout) or (
        _message(local, mid)
    )


def test_stack_json_lists_the_endpoints(local: LocalStack) -> None:
    saved = json.loads((local.o.state_dir / "stack.json").read_text())
    for key in (
        "endpoint_url",
        "region",
        "send_queue_url",
        "send_queue_arn",
        "dlq_url",
        "messages_table",
        "status_table",
        "optouts_table",
        "secret_arn",
        "keyword_replies_parameter",
        "api_url",
        "callback_token",
        "simulators",
    ):
        assert saved[key], key
    assert set(saved["simulators"]) == {"clubtexting", "grouptexting", "textinghouse"}
    assert all(u.startswith("http://127.0.0.1:") for u in saved["simulators"].values())


def test_send_is_sent_then_delivered_by_the_receipt(local: LocalStack) -> None:
    mid = _send(local, to="+33612345678", text="Bonjour e2e", provider="textinghouse")
    item = _status_of(local, mid, "delivered")
    assert item.get("status") == "delivered", item
    history = _client(local, "dynamodb").query(
        TableName=local.info["status_table"],
        KeyConditionExpression="message_id = :m",
        ExpressionAttributeValues={":m": {"S": mid}},
    )["Items"]
    statuses = [h["status"]["S"] for h in sorted(history, key=lambda h: h["at"]["S"])]
    assert statuses[-2:] == ["sent", "delivered"], statuses
    assert local.sims.textinghouse.callbacks, "the simulator sent the receipt"


def test_a_send_and_its_receipt_are_exactly_two_status_events_on_the_bus(
    local: LocalStack,
) -> None:
    """Application events: the tables' streams -> the events function -> the bus, read as an
    application would (a rule -> SQS), and shown by the view."""
    from smsgate_cli.bus import BusTap

    bus = local.info["event_bus_name"]
    assert bus and json.loads((local.o.state_dir / "stack.json").read_text())["event_bus_name"]
    seen: list[dict[str, Any]] = []
    with BusTap(_client(local, "events"), _client(local, "sqs"), bus) as tap:
        mid = _send(local, to="+33612345678", text="Bonjour events", provider="textinghouse")
        assert _status_of(local, mid, "delivered").get("status") == "delivered"

        def arrived() -> bool:
            seen.extend(e for e in tap.receive(wait=1) if e["detail"].get("message_id") == mid)
            return len(seen) >= 2

        _wait(arrived, 15)
        time.sleep(1.0)  # nothing else for this message may follow
        seen.extend(e for e in tap.receive(wait=1) if e["detail"].get("message_id") == mid)
    assert [e["detail-type"] for e in seen] == ["Message Status Changed"] * 2
    assert [(e["detail"]["old_status"], e["detail"]["new_status"]) for e in seen] == [
        ("queued", "sent"),
        ("sent", "delivered"),
    ]
    assert _wait(lambda: any(mid in line for line in local.bus_events), 5), local.bus_events
    assert "recent events" in local.view_text()


def test_events_follow_prints_until_ctrl_c_then_removes_its_tap(local: LocalStack) -> None:
    import os
    import signal
    import subprocess
    import sys

    smsgate = Path(sys.executable).parent / "smsgate"
    config = str(local.o.state_dir / "stack.json")
    cli = subprocess.Popen(  # noqa: S603 - fixed arguments
        [str(smsgate), "--config", config, "--json", "events", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"},
    )
    bus = local.info["event_bus_name"]
    rules = lambda: _client(local, "events").list_rules(EventBusName=bus)["Rules"]  # noqa: E731
    before = len(rules())
    assert _wait(lambda: len(rules()) > before, 15), "the CLI never subscribed"
    mid = _send(local, to="+33612345678", text="Bonjour follow", provider="textinghouse")
    assert _status_of(local, mid, "delivered").get("status") == "delivered"
    time.sleep(2.0)
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err
    mine = [json.loads(line) for line in out.splitlines() if mid in line]
    assert [(e["detail"]["old_status"], e["detail"]["new_status"]) for e in mine] == [
        ("queued", "sent"),
        ("sent", "delivered"),
    ]
    assert len(rules()) == before, "its rule is gone"
    queues = _client(local, "sqs").list_queues().get("QueueUrls", [])
    assert not [q for q in queues if "smsgate-tap-" in q], queues


def test_inbound_stop_opts_out_and_the_next_send_fails(local: LocalStack) -> None:
    number = "33698765432"
    status, _ = local.sims.textinghouse.inject_mo(from_=number, txt="STOP")
    assert status == 200
    optout = _client(local, "dynamodb").get_item(
        TableName=local.info["optouts_table"], Key={"phone": {"S": "+" + number}}
    )
    assert "Item" in optout
    mid = _send(local, to="+" + number, text="after stop", provider="textinghouse")
    item = _status_of(local, mid, "failed")
    assert (item.get("status"), item.get("error_code")) == ("failed", "opted_out"), item


def test_keyword_gets_its_auto_reply(local: LocalStack) -> None:
    _client(local, "ssm").put_parameter(
        Name=local.info["keyword_replies_parameter"],
        Value=json.dumps({"TACO": "Taco Tuesday: 2 for 1."}),
        Type="String",
        Overwrite=True,
    )
    status, body = local.sims.grouptexting.inject_keyword(phone="2125550199", message="taco")
    assert (status, body) == (200, "Taco Tuesday: 2 for 1.")


def test_every_route_answers_and_refuses_a_wrong_token(local: LocalStack) -> None:
    api, token = local.info["api_url"], local.info["callback_token"]
    assert len(local.routes) == 6
    for method, path, _fn in local.routes:
        if method == "GET":
            kwargs: dict[str, Any] = {
                "params": {
                    "PhoneNumber": "2125550111",
                    "from": "2125550111",
                    "Message": "hi",
                    "message": "hi",
                }
            }
        elif path.endswith("/dlr"):
            kwargs = {"json": {"apimsgid": "nope", "climsgid": "nope", "status": "3"}}
        else:
            kwargs = {
                "json": {"from": "33611112222", "txt": "hello", "date": "2024-01-01 10:00:00"}
            }
        good = requests.request(method, api + path.replace("{token}", token), timeout=10, **kwargs)
        assert 200 <= good.status_code < 300, (path, good.status_code, good.text)
        bad = requests.request(method, api + path.replace("{token}", "wrong"), timeout=10, **kwargs)
        assert bad.status_code == 403, (path, bad.status_code)


def _credit_alarm(local: LocalStack) -> dict[str, Any]:
    alarms = _client(local, "cloudwatch").describe_alarms(AlarmNames=local.info["alarms"])
    for alarm in alarms["MetricAlarms"]:
        if (
            alarm["MetricName"] == "CreditBalance"
            and {
                "Name": "Provider",
                "Value": "textinghouse",
            }
            in alarm["Dimensions"]
        ):
            return dict(alarm)
    raise AssertionError("no CreditBalance alarm for textinghouse")


def test_credit_alarm_fires_when_the_balance_drops(local: LocalStack) -> None:
    name = _credit_alarm(local)["AlarmName"]
    assert _wait(lambda: _credit_alarm(local)["StateValue"] == "OK", 15), _credit_alarm(local)
    account = local.sims.textinghouse.account()
    account.credit = 3
    try:
        assert _wait(lambda: _credit_alarm(local)["StateValue"] == "ALARM", 25), _credit_alarm(
            local
        )
    finally:
        account.credit = 1000
    assert local.evaluator.states[name] == "ALARM"
    assert any(c.alarm.name == name and c.new == "ALARM" for c in local.evaluator.changes)


def test_the_demo_passes(local: LocalStack) -> None:
    out = io.StringIO()
    assert run_demo(local.info, out), out.getvalue()
    assert "demo passed" in out.getvalue()
    # routing: Group Texting refused (503), Club Texting carried it; the rules were put back
    assert re.search(
        r"^failover\s+sent via clubtexting\s+sent via clubtexting\s+ok\s+\S+: "
        r"grouptexting http_503 -> clubtexting 1$",
        out.getvalue(),
        re.M,
    ), out.getvalue()


def test_stop_leaves_no_thread_or_port(local: LocalStack) -> None:
    info = local.info
    ports = [
        int(u.rsplit(":", 1)[1].split("/")[0])
        for u in (
            info["endpoint_url"],
            info["api_url"],
            info["control_url"],
            *info["simulators"].values(),
        )
    ]
    state = Path(local.o.state_dir) / "stack.json"
    local.stop()
    assert not state.exists()
    before = local.threads_before  # type: ignore[attr-defined]
    left = _wait(
        lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()], 10
    )
    assert left, [t.name for t in threading.enumerate() if t not in before]
    for port in ports:
        with socket.socket() as s:  # nobody answers on the port any more
            assert s.connect_ex(("127.0.0.1", port)) != 0, port
        with socket.socket() as s:  # and a restarted server can bind it (TIME_WAIT aside)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
