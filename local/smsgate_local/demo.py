"""`make demo`: demo traffic through the running local stack, ending with a table of what
happened to each item (expected vs actual); False when anything is not as expected.

It talks to the stack only as a user would (SQS, DynamoDB, SSM, CloudWatch in moto; the
simulators' callbacks) plus the stack's control endpoint for what only the simulators can do
(an inbound message, a keyword, a credit balance falling)."""

from __future__ import annotations

import json
import random
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

FINAL = {"delivered", "undelivered", "failed"}
Row = tuple[str, str, str, str]  # (what, detail, expected, actual)
KEYWORD, KEYWORD_REPLY = "PIZZA", "Pizza night! 2 for 1 until 10pm. Reply STOP to opt out."


def attach_or_none(state_file: Path) -> dict[str, Any] | None:
    """stack.json of a running stack, or None (no file, or its control endpoint is gone)."""
    try:
        info = json.loads(state_file.read_text(encoding="utf-8"))
        requests.get(f"{info['control_url']}/alarms", timeout=2).raise_for_status()
        return dict(info)
    except (OSError, ValueError, KeyError, requests.RequestException):
        return None


def _clients(info: dict[str, Any]) -> Callable[[str], Any]:
    import boto3

    session = boto3.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - moto
        region_name=info.get("region", "us-east-1"),
    )
    cache: dict[str, Any] = {}

    def client(name: str) -> Any:
        if name not in cache:
            cache[name] = session.client(name, endpoint_url=info["endpoint_url"])
        return cache[name]

    return client


FAILOVER_RULES = {
    "rules": [
        {
            "name": "demo-us",
            "countries": ["US"],
            "providers": {"grouptexting": 1, "clubtexting": 0},
        },
        {"name": "demo-rest", "providers": {"textinghouse": 1}},
    ]
}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _wait_for(
    info: dict[str, Any],
    client: Callable[[str], Any],
    message_id: str,
    statuses: tuple[str, ...],
    timeout: float,
) -> dict[str, Any]:
    """The message's item (DynamoDB's typed form) once its status is one of `statuses`, or as
    it is when `timeout` runs out."""
    item: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        key = {"id": {"S": message_id}}
        table = info["messages_table"]
        item = client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True)
        item = item.get("Item") or {}
        if item.get("status", {}).get("S") in statuses:
            break
        time.sleep(0.3)
    return item


@dataclass(frozen=True)
class Demo:
    """What each step of one demo run uses."""

    info: dict[str, Any]
    client: Callable[[str], Any]
    ctl: Callable[..., Any]
    say: Callable[[str], None]
    run: str
    timeout: float

    def queue(self, body: dict[str, Any]) -> None:
        self.client("sqs").send_message(
            QueueUrl=self.info["send_queue_url"], MessageBody=json.dumps(body)
        )

    def wait_for(self, message_id: str, *statuses: str) -> dict[str, Any]:
        """The message's record (plain values) once in one of `statuses`, or as it is then."""
        from boto3.dynamodb.types import TypeDeserializer

        raw = _wait_for(self.info, self.client, message_id, statuses, self.timeout)
        plain = TypeDeserializer()
        return {k: plain.deserialize(v) for k, v in raw.items()}

    @contextmanager
    def rules(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[bool]:
        """The routing rules changed by `change` while the step runs, then put back. Yields
        False when the stack has no routing parameter."""
        name = self.info.get("routing_parameter")
        if not name:
            yield False
            return
        ssm = self.client("ssm")
        before = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        try:
            current = json.loads(before) if before.strip() else {}
        except ValueError:
            current = {}
        try:
            document = change(current if isinstance(current, dict) else {})
            ssm.put_parameter(Name=name, Value=json.dumps(document), Type="String", Overwrite=True)
            self.ctl("/refresh-parameters")
            yield True
        finally:
            ssm.put_parameter(Name=name, Value=before, Type="String", Overwrite=True)
            self.ctl("/refresh-parameters")


def _expired(d: Demo, message_id: str, to: str) -> Row:
    """A one-time code valid for 2 seconds, its provider refusing the first try."""
    d.ctl("/force", provider="grouptexting", body="busy", status=503, request_path="/api/sending")
    d.say("a code valid for 2 s through Group Texting, whose simulator answers 503 once")
    d.queue(
        {
            "id": message_id,
            "to": to,
            "text": f"Your code {d.run[-6:]}",
            "provider": "grouptexting",
            "validity_seconds": 2,
        }
    )
    item = d.wait_for(message_id, "failed", "sent", "delivered")
    actual = f"{item.get('status', 'not recorded')} ({item.get('error_code', '-')})"
    return ("expired (validity)", message_id, "failed (expired)", actual)


def _failover(d: Demo, message_id: str, to: str) -> Row:
    """Routing rules that prefer Group Texting for US numbers, Group Texting answering 503 once:
    the message is carried by Club Texting, its attempts on the record. The stack's rules are
    put back afterwards."""
    with d.rules(lambda _current: FAILOVER_RULES) as ruled:
        if not ruled:
            return ("failover", "no routing parameter in stack.json", "sent via clubtexting", "-")
        # only the send path: the scheduled credit check may call Group Texting meanwhile
        d.ctl(
            "/force", provider="grouptexting", body="busy", status=503, request_path="/api/sending"
        )
        d.say("routing rules: Group Texting first for US numbers; its simulator answers 503 once")
        d.queue({"id": message_id, "to": to, "text": f"Failover demo {d.run}"})
        item = d.wait_for(message_id, "sent")
    attempts = [f"{a['provider']} {a['code']}" for a in item.get("provider_attempts", [])]
    status, provider = item.get("status", "not recorded"), item.get("provider", "?")
    return ("failover", f"{message_id}: {' -> '.join(attempts)}", "sent via clubtexting",
            f"{status} via {provider}")  # fmt: skip


def _protection(d: Demo, message_id: str, blocked: str, allowed: str) -> list[Row]:
    """Destinations: the rules block the United Kingdom; a quote says so before anything is
    sent, and a message queued anyway (past the producer's check) ends failed with the rule."""
    from smsgate.producer import Producer

    def block_gb(current: dict[str, Any]) -> dict[str, Any]:
        return {**current, "destinations": {"block": ["GB"]}}

    with d.rules(block_gb) as ruled:
        if not ruled:
            return [("blocked destination", "no routing parameter", "failed", "-")]
        d.say("routing rules: destinations.block GB; a quote for a UK and a French number")
        name, ssm = d.info["routing_parameter"], d.client("ssm")
        producer = Producer(
            d.info["send_queue_url"],
            sqs=d.client("sqs"),
            routing=lambda: Producer.rules_from_parameter(name, ssm),
            health_table=d.info.get("health_table") or None,
            optouts_table=d.info.get("optouts_table") or None,
            dynamodb=d.client("dynamodb"),
        )
        refused = producer.quote(blocked, f"Welcome offer {d.run}")
        fine = producer.quote(allowed, f"Bonjour {d.run}", provider="textinghouse")
        d.queue({"id": message_id, "to": blocked, "text": f"Welcome offer {d.run}"})
        item = d.wait_for(message_id, "failed", "sent", "delivered")
    row = fine.providers[0] if fine.providers else None
    cost = "no price" if row is None or row.cost is None else f"{row.cost:g}"
    how = f"{row.encoding}, {row.parts} part(s), {cost}" if row else "-"
    return [
        (
            "quote (blocked)",
            f"{refused.to}: {refused.reason}",
            "refuse (destination_blocked)",
            f"{refused.answer} ({refused.code or '-'})",
        ),
        ("quote", f"{fine.to}: {fine.provider or '-'}, {how}", "send", fine.answer),
        (
            "blocked destination",
            message_id,
            "failed (destination_blocked)",
            f"{item.get('status', 'not recorded')} ({item.get('error_code', '-')})",
        ),
    ]


def run_demo(info: dict[str, Any], out: IO[str], timeout: float = 30.0) -> bool:
    http = requests.Session()
    http.trust_env = False
    try:
        return _run_demo(info, out, timeout, http)
    finally:
        http.close()


def _run_demo(info: dict[str, Any], out: IO[str], timeout: float, http: requests.Session) -> bool:
    started = time.monotonic()
    client = _clients(info)
    control = info["control_url"]

    def ctl(path: str, **body: Any) -> Any:
        answer = http.post(f"{control}{path}", json=body, timeout=60)
        answer.raise_for_status()
        return answer.json()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    run = f"{int(time.time()) % 100000:05d}{random.randint(0, 99):02d}"
    rnd = random.Random(run)

    def us() -> str:
        return f"+1212555{rnd.randint(1000, 9999)}"

    def fr() -> str:
        return f"+33612{rnd.randint(100_000, 999_999)}"

    rows: list[Row] = []
    d = Demo(info, client, ctl, say, run, timeout)

    # 1. keyword replies, then the inbound STOP (it must land before the send to that number)
    name = info["keyword_replies_parameter"]
    try:
        replies = json.loads(client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
    except (ValueError, KeyError):
        replies = {}
    replies = {**(replies if isinstance(replies, dict) else {}), KEYWORD: KEYWORD_REPLY}
    client("ssm").put_parameter(
        Name=name,
        Value=json.dumps(replies),
        Type="String",
        Overwrite=True,
    )
    ctl("/refresh-parameters")  # the callbacks function caches the replies for 60 s
    stopper = fr()
    say(f"inbound STOP from {stopper[:5]}****{stopper[-3:]} through the TextingHouse simulator")
    mo = ctl("/inject", provider="textinghouse", kind="mo", from_=stopper.lstrip("+"), txt="STOP")
    opted = "Item" in client("dynamodb").get_item(
        TableName=info["optouts_table"], Key={"phone": {"S": stopper}}, ConsistentRead=True
    )
    rows.append(
        (
            "inbound STOP",
            f"MO answered HTTP {mo['status']}",
            "opted out",
            "opted out" if opted else "not opted out",
        )
    )

    # 2. the messages
    messages = [
        (
            "Club Texting",
            {
                "to": us(),
                "text": f"Hello from smsgate via Club Texting {run}",
                "provider": "clubtexting",
            },
            "sent",
            None,
        ),
        (
            "Group Texting",
            {
                "to": us(),
                "text": f"Hello from smsgate via Group Texting {run}",
                "provider": "grouptexting",
            },
            "sent",
            None,
        ),
        (
            "TextingHouse",
            {
                "to": fr(),
                "text": f"Bonjour de smsgate via TextingHouse {run}",
                "provider": "textinghouse",
            },
            "delivered",
            None,
        ),
        (
            "TextingHouse test 999",
            {"to": "999", "text": f"smsgate test message {run}", "provider": "textinghouse"},
            "delivered",
            None,
        ),
        (
            "invalid number",
            {"to": "12", "text": f"never sent {run}", "provider": "textinghouse"},
            "failed",
            None,
        ),
        (
            "opted-out number",
            {"to": stopper, "text": f"you will not get this {run}", "provider": "textinghouse"},
            "failed",
            "opted_out",
        ),
        (
            "scheduled (send_at)",
            {
                "to": fr(),
                "text": f"Rappel de rendez-vous {run}",
                "provider": "textinghouse",
                "send_at": _iso(time.time() + 2 * 3600),
            },
            "scheduled",
            None,
        ),
    ]
    ids = []
    for n, (_label, body, _expected, _code) in enumerate(messages):
        body = {"id": f"demo-{run}-{n}", **body}
        ids.append(body["id"])
        client("sqs").send_message(QueueUrl=info["send_queue_url"], MessageBody=json.dumps(body))
    say(f"{len(messages)} messages queued on {info['send_queue_url']}")

    # 3. a keyword with its auto-reply, through the Club Texting simulator
    kw = ctl("/inject", provider="clubtexting", kind="keyword", phone=us()[2:], message=KEYWORD)
    rows_kw = (
        "keyword " + KEYWORD,
        f"HTTP {kw['status']}, reply {kw['body']!r}",
        KEYWORD_REPLY,
        kw["body"],
    )

    # 4. wait for each message's expected state
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mid in ids:
            item = (
                client("dynamodb")
                .get_item(
                    TableName=info["messages_table"], Key={"id": {"S": mid}}, ConsistentRead=True
                )
                .get("Item")
            )
            if item:
                found[mid] = {k: next(iter(v.values())) for k, v in item.items()}
        if all(
            found.get(mid, {}).get("status") == exp
            for mid, (_l, _b, exp, _c) in zip(ids, messages, strict=True)
        ):
            break
        time.sleep(0.3)
    for mid, (label, _body, expected, code) in zip(ids, messages, strict=True):
        item = found.get(mid, {})
        actual = str(item.get("status", "not recorded"))
        detail = mid
        if item.get("error_code"):
            error = textwrap.shorten(str(item.get("error", "")), 60, placeholder="…")
            detail += f" ({item['error_code']}: {error})"
        exp = expected + (f" ({code})" if code else "")
        act = actual + (f" ({item.get('error_code')})" if code else "")
        rows.append((label, detail, exp, act))
    rows.append(rows_kw)

    # 4b. failover: Group Texting refuses (HTTP 503, its rate limit) and Club Texting carries it
    rows.append(_failover(d, f"demo-{run}-fo", us()))

    # 4c. validity: Group Texting refuses once (503), and the retry would come after the
    # message's 2-second validity: it ends failed/expired, never sent late
    rows.append(_expired(d, f"demo-{run}-ex", us()))

    # 4d. protection: a blocked destination, and a quote before anything is sent
    rows.extend(_protection(d, f"demo-{run}-gb", f"+4474001{rnd.randint(10_000, 99_999)}", fr()))

    # 5. TextingHouse credit falls below its alarm threshold
    cw = client("cloudwatch")
    credit_alarms = [
        a
        for a in cw.describe_alarms(AlarmNames=list(info.get("alarms", [])))["MetricAlarms"]
        if a.get("MetricName") == "CreditBalance"
        and {"Name": "Provider", "Value": "textinghouse"} in a.get("Dimensions", [])
    ]
    if not credit_alarms:
        rows.append(
            ("low credit alarm", "no CreditBalance alarm for textinghouse", "ALARM", "no alarm")
        )
    else:
        alarm = credit_alarms[0]
        ctl("/credit", provider="textinghouse", credit=1)
        say("TextingHouse simulator credit set to 1; running the credit check")
        ctl("/run", function="CreditCheckFunction")
        state = "?"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ctl("/evaluate")
            state = cw.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"][0][
                "StateValue"
            ]
            if state == "ALARM":
                break
            time.sleep(0.5)
        ctl("/credit", provider="textinghouse", credit=1000)
        ctl("/run", function="CreditCheckFunction")
        rows.append(
            (
                "low credit alarm",
                f"{alarm['AlarmName']} (< {alarm['Threshold']:g}); credit restored",
                "ALARM",
                state,
            )
        )

    # 6. the summary
    ok = all(exp == act for _w, _d, exp, act in rows)
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    width = [
        max(w, len(h)) for w, h in zip(width, ("what", "detail", "expected", "actual"), strict=True)
    ]
    width[2] = min(width[2], 40)
    width[3] = min(width[3], 40)
    # not a terminal (a log, a pipe, a test): one line per item, unwrapped
    columns = shutil.get_terminal_size().columns if out.isatty() else 1000
    for line in summary_lines(rows, width, columns):
        say(line)
    say("")
    say(
        f"demo {'passed' if ok else 'FAILED'}: {sum(e == a for _w, _d, e, a in rows)}/{len(rows)} "
        f"as expected in {time.monotonic() - started:.1f} s"
    )
    return ok


def summary_lines(
    rows: list[tuple[str, str, str, str]], width: list[int], columns: int
) -> list[str]:
    """The summary table, fitted to `columns`: a detail that does not fit wraps at word
    boundaries under its column; a terminal too narrow for the columns gets one block per
    item (what, the outcome, then the detail indented)."""
    lead = width[0] + width[2] + width[3] + 10  # the columns before the detail
    lines = [""]
    if columns - lead >= 24:
        lines.append(
            f"{'what':<{width[0]}}  {'expected':<{width[2]}}  {'actual':<{width[3]}}  ok  detail"
        )
        for what, detail, exp, act in rows:
            mark = "ok" if exp == act else "NO"
            wrapped = textwrap.wrap(detail, columns - lead) or [""]
            lines.append(
                f"{what:<{width[0]}}  {exp[:40]:<{width[2]}}  {act[:40]:<{width[3]}}  {mark}  "
                + wrapped[0]
            )
            lines.extend(" " * lead + more for more in wrapped[1:])
        return lines
    for what, detail, exp, act in rows:
        mark = "ok" if exp == act else "NO"
        outcome = act if exp == act else f"{act} (expected {exp})"
        lines.extend(textwrap.wrap(f"{mark}  {what}: {outcome}", columns, subsequent_indent="    "))
        lines.extend(
            textwrap.wrap(detail, columns, initial_indent="    ", subsequent_indent="    ")
        )
    return lines
