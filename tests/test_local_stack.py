"""End-to-end: the whole local stack (`make run`) started by a fixture on ephemeral ports, in
this process (moto server, simulators, local API, SQS poller, schedules, alarms), driven as a
user drives it: messages on the queue, callbacks through the simulators, state read back from
moto. The last test stops it and checks nothing is left (threads, listening ports)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from smsgate_local.demo import run_demo
from smsgate_local.metrics import AlarmEvaluator, MetricStore
from smsgate_local.ports import busy_ports
from smsgate_local.run import LocalStack, Options, main
from smsgate_local.runtime import ChangeSignal, Function, Scheduler, StreamPoller, streams_client
from smsgate_local.stack import ROOT, load_template, resources_of_type

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


def test_every_template_alarm_is_evaluated_and_none_starts_in_alarm(local: LocalStack) -> None:
    template = load_template()
    expected = {
        local.resolver.resolve(res["Properties"])["AlarmName"]
        for res in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
        if local.resolver.resource_enabled(res)
    }
    assert f"{local.o.prefix}-FailedSendsRising" in expected  # metric math, evaluated too
    assert set(local.info["alarms"]) == expected == set(local.evaluator.states)
    low_credit = [a.name for a in local.evaluator.alarms if a.logical_id.endswith("LowCredit")]
    assert low_credit
    # the credit reads 1000: the low-credit alarms go from INSUFFICIENT_DATA to OK, never ALARM
    assert _wait(lambda: all(local.evaluator.states[n] == "OK" for n in low_credit), 15)
    assert [(c.alarm.name, c.old, c.new) for c in local.evaluator.changes if c.new == "ALARM"] == []
    assert all(c.old == "INSUFFICIENT_DATA" for c in local.evaluator.changes)


def _alarm(local: LocalStack, logical_id: str) -> Any:
    """The template's alarm as the local stack reads it (resolved, not period-capped)."""
    return next(a for a in local._alarm_defs() if a.logical_id == logical_id)


def test_a_low_credit_alarm_starts_without_data_and_clears_with_the_next_reading(
    local: LocalStack,
) -> None:
    """The template's TextingHouseLowCredit (15-minute periods, 2 of 3, missing data
    breaching), on a clock the test moves: no ALARM for want of data at start, ALARM on a low
    reading, OK at the next good reading (not 15 minutes later)."""
    alarm = _alarm(local, "TextingHouseLowCredit")
    assert (alarm.period, alarm.evaluation_periods, alarm.treat_missing) == (900, 3, "breaching")
    store, t0 = MetricStore(), time.time()
    evaluator = AlarmEvaluator([alarm], store, created_at=t0)

    def reading(at: float, value: float) -> str:
        store.record(alarm.namespace, alarm.metric, alarm.dims, value, "Count", at=t0 + at)
        evaluator.evaluate(now=t0 + at + 1)
        return evaluator.states[alarm.name]

    evaluator.evaluate(now=t0 + 5)
    assert evaluator.states[alarm.name] == "INSUFFICIENT_DATA"  # no reading yet: not ALARM
    assert reading(6, 1000) == "OK"
    assert reading(60, 3) == "ALARM"
    assert reading(120, 1000) == "OK"  # restored: clear at once
    # an hour-old stack: 2 of the last 3 periods low alarm; the next good reading clears it
    old = AlarmEvaluator([alarm], store := MetricStore(), created_at=t0 - 3600)
    for at, value in ((-1800, 1000), (-900, 3), (-5, 3)):
        store.record(alarm.namespace, alarm.metric, alarm.dims, value, at=t0 + at)
    old.evaluate(now=t0)
    assert old.states[alarm.name] == "ALARM"
    store.record(alarm.namespace, alarm.metric, alarm.dims, 1000, at=t0 + 1)
    old.evaluate(now=t0 + 2)
    assert old.states[alarm.name] == "OK", old.reasons[alarm.name]
    # a check that stopped reporting still alarms (missing data breaching, 2 of 3 periods)
    old.evaluate(now=t0 + 2 + 1800)
    assert old.states[alarm.name] == "ALARM"


def test_failed_sends_rising_is_evaluated_from_its_metric_math(local: LocalStack) -> None:
    alarm = _alarm(local, "FailedSendsRising")
    assert alarm.expression and {q.id for q in alarm.queries} == {"sent", "failed"}
    store, t0 = MetricStore(), time.time()
    evaluator = AlarmEvaluator([alarm], store, created_at=t0 - 3600)
    sent, failed = (next(q for q in alarm.queries if q.id == i) for i in ("sent", "failed"))

    def period(end: float, n_sent: int, n_failed: int) -> None:
        store.record(sent.namespace, sent.metric, sent.dims, n_sent, at=t0 + end - 10)
        store.record(failed.namespace, failed.metric, failed.dims, n_failed, at=t0 + end - 10)

    for end in (-600, -300, 0):  # three 5-minute periods, 2 of 12 sends failed in each
        period(end, 10, 2)
    evaluator.evaluate(now=t0)
    assert evaluator.states[alarm.name] == "OK"  # 17 % < 20 %
    for end in (-600, -300, 0):  # 6 of 16: 37 % in each of the three
        period(end, 0, 4)
    evaluator.evaluate(now=t0)
    assert evaluator.states[alarm.name] == "ALARM", evaluator.reasons[alarm.name]
    period(250, 60, 0)  # the newest period is fine again
    evaluator.evaluate(now=t0 + 250)
    assert evaluator.states[alarm.name] == "OK", evaluator.reasons[alarm.name]
    quiet = AlarmEvaluator([alarm], store := MetricStore(), created_at=t0 - 3600)
    for end in (-600, -300, 0):  # every send failed, but 3 sends a period: below the minimum
        period(end, 0, 3)
    quiet.evaluate(now=t0)
    assert quiet.states[alarm.name] == "OK"


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
    assert any(c.alarm.name == name and c.new == "ALARM" for c in local.evaluator.changes)
    # restored: OK as soon as the credit check reads it again (every 3 s with --fast)
    assert _wait(lambda: _credit_alarm(local)["StateValue"] == "OK", 10), _credit_alarm(local)
    assert local.evaluator.states[name] == "OK"


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


def _cli(local: LocalStack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The `smsgate` CLI as a user runs it against this stack (another process)."""
    smsgate = Path(sys.executable).parent / "smsgate"
    config = str(local.o.state_dir / "stack.json")
    return subprocess.run(  # noqa: S603 - fixed arguments
        [str(smsgate), "--config", config, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"},
    )


def test_a_purchase_shows_in_the_view_at_once_and_the_cli_agrees(local: LocalStack) -> None:
    """`smsgate buy-credits` raises Group Texting's balance: the local stack runs the credit
    check at once (not at its next scheduled run, paused here), so the view, `smsgate
    providers` (the health table) and `smsgate credits` (the provider) say the same."""
    run = next(r for r in local.scheduler.runs if r.function.logical_id == "CreditCheckFunction")
    gt = local.sims.grouptexting
    saved = run.next_at, gt.rate_limit_enabled
    run.next_at, gt.rate_limit_enabled = float("inf"), False
    try:
        before = gt.account().credit
        bought = _cli(local, "buy-credits", "--credits", "500", stdin=json.dumps(CARD))
        assert bought.returncode == 0, bought.stderr
        assert "4111" not in bought.stdout + bought.stderr
        after = gt.account().credit
        assert after == before + 500
        assert _wait(lambda: local.credits()["grouptexting"] == f"{after:g}", 5), local.credits()
        assert any(f"credit {after:g}" in line for line in local.view_lines(120, 40))
        providers = json.loads(_cli(local, "--json", "providers").stdout)["providers"]
        credits = json.loads(_cli(local, "--json", "credits").stdout)["credits"]
        shown = {r["provider"]: r["credit"] for r in providers}
        live = {r["provider"]: r["balance"] for r in credits}
        assert shown["grouptexting"] == live["grouptexting"] == after
        assert (
            shown["textinghouse"] == live["textinghouse"] == float(local.credits()["textinghouse"])
        )
    finally:
        run.next_at, gt.rate_limit_enabled = saved


def test_the_view_of_the_running_stack_fits_the_terminal(local: LocalStack) -> None:
    mid = _send(local, to="+33612345678", text="Bonjour view", provider="textinghouse")
    assert _status_of(local, mid, "delivered").get("status") == "delivered"
    time.sleep(1.6)  # the view reads the messages table again at most every 1.5 s
    for width, height in ((80, 24), (120, 40), (40, 10)):
        lines = local.view_lines(width, height)
        assert len(lines) <= height and all(len(line) <= width for line in lines), lines
        assert lines[0].startswith("smsgate local  ")
        shown = [line.split()[0] for line in lines if line.strip()]
        assert shown[1:4] == [
            "clubtexting",
            "grouptexting",
            "textinghouse",
        ]
    big = local.view_lines(120, 40)
    assert any(line.startswith(mid[:28]) for line in big), big  # its row in recent messages
    assert not any("Bonjour" in line or "+33612345678" in line for line in big)


def test_without_a_terminal_each_event_is_one_line(local: LocalStack) -> None:
    out, saved = io.StringIO(), local.echo
    local.echo = out
    try:
        mid = _send(local, to="+33612345678", text="Bonjour echo", provider="textinghouse")
        assert _status_of(local, mid, "delivered").get("status") == "delivered"
        assert _wait(lambda: out.getvalue().count(mid) >= 2, 10), out.getvalue()
    finally:
        local.echo = saved
    lines = [line for line in out.getvalue().splitlines() if mid in line]
    assert [line.split(" ", 2)[1] for line in lines[:2]] == ["status", "status"]
    assert "queued -> sent" in lines[0] and "sent -> delivered" in lines[1]
    assert "Bonjour" not in out.getvalue() and "+33612345678" not in out.getvalue()


class _Counting:
    """A boto3 client that counts the calls made through it (and makes them)."""

    def __init__(self, client: Any) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(*args, **kwargs)

        return call


def test_an_idle_stack_waits_instead_of_polling(local: LocalStack) -> None:
    """A stream poller with nothing written reads nothing (it waits for moto server's
    DynamoDB writes); the hold scheduler reads its group once, then after a change only."""
    signal = ChangeSignal()
    streams = _Counting(streams_client(boto3.Session(), local.info["endpoint_url"]))
    handled: list[int] = []
    fn = Function("Idle", "idle", lambda event, ctx: handled.append(1), 3, {}, threading.Lock())
    arn = local.stream_pollers[0].stream_arn
    poller = StreamPoller(streams, fn, arn, starting_position="LATEST", changes=signal)
    poller.start()
    try:
        assert _wait(lambda: streams.calls, 5)
        counts = [-1]  # its first read done: no call for a second
        assert _wait(lambda: counts.append(len(streams.calls)) or counts[-1] == counts[-2], 10, 1)
        first = len(streams.calls)
        time.sleep(3)
        assert len(streams.calls) == first, streams.calls[first:]
        signal.bump()
        assert _wait(lambda: len(streams.calls) > first, 2)
    finally:
        poller.stop()
    writes = local.moto.changes["dynamodb"].value
    key = {"provider": {"S": "idle-test"}, "slot": {"S": "x"}}
    _client(local, "dynamodb").put_item(TableName=local.info["health_table"], Item=key)
    assert local.moto.changes["dynamodb"].value > writes  # moto server tells of each write
    _client(local, "dynamodb").delete_item(TableName=local.info["health_table"], Key=key)

    group = next(iter(local.stack.schedule_groups.values()))
    scheduler_client = _Counting(_client(local, "scheduler"))
    holds = ChangeSignal()
    scheduler = Scheduler(
        {}, scheduler_client=scheduler_client, sqs=_client(local, "sqs"), hold_group=group,
        tick=0.1, hold_changes=holds,
    )  # fmt: skip
    scheduler.start()
    try:
        assert _wait(lambda: "list_schedules" in scheduler_client.calls, 2)
        time.sleep(1.0)
        assert scheduler_client.calls.count("list_schedules") == 1
        holds.bump()
        assert _wait(lambda: scheduler_client.calls.count("list_schedules") == 2, 2)
    finally:
        scheduler.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def test_a_second_make_run_names_the_one_holding_its_port(
    local: LocalStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Its ports are the running stack's (its stack.json says so): exit 2, no traceback, who
    holds which port and the RUN_ARGS that start it beside the other."""
    moto = _port(local.info["endpoint_url"])
    others = ["--api-port", "0", "--control-port", "0", "--clubtexting-port", "0"]
    others += ["--grouptexting-port", "0", "--textinghouse-port", "0", "--no-view"]
    state = str(local.o.state_dir)
    assert main(["run", "--moto-port", str(moto), *others, "--state-dir", state]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        f"port {moto} on 127.0.0.1 (moto) is in use by another `make run` (pid {os.getpid()}" in err
    )
    suggested = re.search(r'make run RUN_ARGS="([^"]+)"', err)
    assert suggested, err
    flags = suggested.group(1).split()
    assert flags[0] == "--moto-port" and "--state-dir" in flags
    assert busy_ports("127.0.0.1", {"moto": int(flags[1])}) == {}  # what it suggests is free
    assert "--api-port" in err and "0 picks any free port" in err

    with socket.socket() as other:  # some other program on the port, no stack.json
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        args = ["run", "--moto-port", str(port), *others, "--state-dir", str(tmp_path)]
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 (moto) is in use by pid {os.getpid()} (" in err
    assert "Traceback" not in err and "RUN_ARGS=" in err


def _banner_commands(banner: str) -> list[str]:
    lines = banner.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("send a message"))
    block = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        block.append(line.strip())
    return block


def test_the_banners_commands_work_as_pasted(local: LocalStack) -> None:
    commands = _banner_commands(local.banner())
    assert commands[0].startswith(".venv/bin/smsgate ") and " send --to " in commands[0]
    assert any(c.startswith("AWS_ACCESS_KEY_ID=local ") and " aws " in c for c in commands)
    assert any(" -c " in c and "python" in c for c in commands)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # another terminal
    ran = []
    for command in commands:
        if " aws " in f" {command}" and shutil.which("aws") is None:
            continue  # the AWS CLI is not installed here
        done = subprocess.run(  # noqa: S603 - the banner's own lines
            [shutil.which("bash") or "/bin/bash", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        ran.append(done.stdout)
    assert len(ran) >= 3
    mid = ran[0].strip()  # `smsgate send` prints the id it gave the message
    assert _status_of(local, mid, "delivered").get("status") == "delivered"


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
