"""`make soak`: smsgate's reliability counts. Each check prints `N passed, N failed`;
the exit status is non-zero when any check failed. Results: benchmarks/results/soak.json.

    python -m benchmarks.soak [--messages 1000] [--fault-messages 300] [--bodies 10000]

Every check runs on a fresh stack: in-process moto (built from template.yaml) and the provider
simulators over real loopback HTTP, the real functions' handlers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    Context,
    Env,
    accepted_per_id,
    dlr_event,
    load_function,
    machine,
    null_stream,
    quiet_logs,
    quiet_stdout,
    scan,
    sqs_event,
    sqs_record,
    start_env,
    th_sends,
)
from smsgate_local.harness import Serialised

FINAL = {"delivered", "undelivered", "failed"}
SETTLED = {"sent", "delivered", "undelivered", "failed", "unknown"}
RANK = {"queued": 0, "scheduled": 1, "sent": 2, "unknown": 3}
TH_CODE_STATUS = {
    "0": "sent",
    "1": "sent",
    "3": "delivered",
    "4": "undelivered",
    "5": "undelivered",
    "6": "undelivered",
    "7": "failed",
    "20": "failed",
}


def _send_handler(env: Env) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    from smsgate import wiring

    app = load_function("send")
    quiet_logs(null_stream())
    service = wiring.send_service()
    if env.endpoint is None and not isinstance(service.store.db, Serialised):
        service.store.db = Serialised(service.store.db)
        if service.health is not None:
            service.health.db = service.store.db
    return app.lambda_handler  # type: ignore[no-any-return]


def _messages(env: Env) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in scan(env.stack.tables["MessagesTable"])}


def _result(name: str, passed: int, failed: int, **details: Any) -> dict[str, Any]:
    return {"check": name, "passed": passed, "failed": failed, "ok": failed == 0, **details}


# --------------------------------------------------------------------------- 1 redelivery


def redelivery(env: Env, n: int) -> dict[str, Any]:
    """Every record delivered 3 times across 2 concurrent consumers: consumer A delivers each
    batch twice, consumer B once, at the same time."""
    send = _send_handler(env)
    events = [
        sqs_event(
            [
                sqs_record(
                    {"id": f"r{i:05d}", "to": f"+336{i:08d}", "text": f"redelivery {i}"},
                    message_id=f"00000000-0000-4000-8000-{i:012d}",
                )
                for i in range(b, min(b + 10, n))
            ]
        )
        for b in range(0, n, 10)
    ]
    retry: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def consumer(copies: int) -> None:
        for event in events:
            for _ in range(copies):
                try:
                    response = send(event, Context())
                except Exception as exc:  # an unhandled exception is a failed check
                    with lock:
                        errors.append(repr(exc))
                    continue
                failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
                if failed:
                    with lock:
                        retry.append(
                            sqs_event([r for r in event["Records"] if r["messageId"] in failed])
                        )

    threads = [threading.Thread(target=consumer, args=(c,)) for c in (2, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    retried = len(retry)
    for _ in range(10):  # a record that found its copy in flight comes back (SQS redelivery)
        todo, retry[:] = list(retry), []
        if not todo:
            break
        time.sleep(0.2)
        for event in todo:
            response = send(event, Context())
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            if failed:
                retry.append(sqs_event([r for r in event["Records"] if r["messageId"] in failed]))
    accepted = accepted_per_id(env.sims)
    records = _messages(env)
    ids = [f"r{i:05d}" for i in range(n)]
    good = [i for i in ids if accepted[i] == 1 and records.get(i, {}).get("status") == "sent"]
    lost = [i for i in ids if records.get(i, {}).get("status") not in SETTLED]
    return _result(
        "redelivery",
        len(good),
        n - len(good),
        messages=n,
        deliveries=3 * n,
        provider_send_requests=len(th_sends(env.sims)),
        duplicates=sum(1 for i in ids if accepted[i] > 1),
        lost=len(lost),
        unhandled_exceptions=len(errors),
        records_returned_for_retry=retried,
        still_returned_after_redelivery=len(retry),
    )


# --------------------------------------------------------------------------- 2 faults


def _fault_body(k: int) -> dict[str, str]:
    """Every tenth message repeats its neighbour's number and text (another id): TextingHouse
    refuses it as a flood (350) while the first is less than 10 s old."""
    k = k - 1 if k % 10 == 9 else k
    return {"to": f"+336{k:08d}", "text": f"fault soak {k}"}


def faults(env: Env, n: int, rate: float = 0.30, budget_s: float = 240.0) -> dict[str, Any]:
    """30 % of TextingHouse requests hit a fault (503, reset before the request, hang after
    it, garbage body); a poller runs the real queue (visibility and redrive honoured) until
    it drains. Every tenth message is a flood twin (350). Retry delays are scaled down 10x,
    never under the outcome's own minimum (smsgate.send.outcomes.backoff patched in this process
    only), so that the soak takes minutes, not hours."""
    import boto3

    from smsgate.send import outcomes as sender

    send = _send_handler(env)
    sqs = boto3.client("sqs")
    url = env.stack.queues["SendQueue"]
    # The send queue's router and the TextingHouse lane's senders, each polled as Lambda would.
    queues = {
        url: env.stack.queue_arns["SendQueue"],
        env.stack.queues["TextingHouseLaneQueue"]: env.stack.queue_arns["TextingHouseLaneQueue"],
    }
    dlqs = [
        env.stack.queues["SendDeadLetterQueue"],
        env.stack.queues["TextingHouseLaneDeadLetterQueue"],
    ]
    per_mode = 1 - (1 - rate) ** (1 / 4)  # four independent faults: 30 % in all
    th = env.sims.textinghouse
    th.set_fault("http_503", rate=per_mode)
    th.set_fault("reset", rate=per_mode)
    th.set_fault("hang", rate=per_mode, delay=1.0)
    th.set_fault("garbage", rate=per_mode)
    real_backoff = sender.backoff
    sender.backoff = lambda minimum, receive_count: max(  # type: ignore[assignment]
        minimum, round(real_backoff(minimum, receive_count) / 10)
    )
    ids = [f"x{i:05d}" for i in range(n)]
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {
                    "Id": str(k),
                    "MessageBody": json.dumps({"id": i, **_fault_body(int(i[1:]))}),
                }
                for k, i in enumerate(ids[start : start + 10])
            ],
        )
    invocations = errors = 0
    outcomes: Counter[str] = Counter()
    trace: dict[str, list[str]] = {}
    started = time.monotonic()
    try:
        polled = url
        while time.monotonic() - started < budget_s:
            messages = []
            for polled in queues:
                answer = sqs.receive_message(
                    QueueUrl=polled,
                    MaxNumberOfMessages=10,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                    WaitTimeSeconds=0,
                )
                messages = answer.get("Messages", [])
                if messages:
                    break
            if not messages:
                waiting = 0
                for queue in queues:
                    attrs = sqs.get_queue_attributes(
                        QueueUrl=queue,
                        AttributeNames=[
                            "ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible",
                        ],
                    )["Attributes"]
                    waiting += sum(int(v) for v in attrs.values())
                if not waiting:
                    break
                time.sleep(0.2)
                continue
            event = sqs_event(
                [
                    {
                        **sqs_record(
                            m["Body"],
                            message_id=m["MessageId"],
                            receive_count=int(m["Attributes"]["ApproximateReceiveCount"]),
                            handle=m["ReceiptHandle"],
                            source_arn=queues[polled],
                        ),
                        "messageAttributes": {
                            k: {"stringValue": v.get("StringValue"), "dataType": v["DataType"]}
                            for k, v in (m.get("MessageAttributes") or {}).items()
                        },
                    }
                    for m in messages
                ]
            )
            invocations += 1
            try:
                response = send(event, Context())
                failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            except Exception as exc:  # Lambda would retry the whole batch
                errors += 1
                outcomes[f"raised {type(exc).__name__}"] += 1
                failed = {m["MessageId"] for m in messages}
            for m in messages:
                mid = json.loads(m["Body"])["id"]
                rc = m["Attributes"]["ApproximateReceiveCount"]
                verdict = "returned" if m["MessageId"] in failed else "deleted"
                trace.setdefault(mid, []).append(f"receive#{rc}:{verdict}")
                outcomes[verdict] += 1
                if verdict == "deleted":
                    sqs.delete_message(QueueUrl=polled, ReceiptHandle=m["ReceiptHandle"])
    finally:
        sender.backoff = real_backoff  # type: ignore[assignment]
        th.clear_faults()
    drained_s = time.monotonic() - started
    in_dlq: set[str] = set()
    for dlq in dlqs:
        while True:
            got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=300)
            if not got.get("Messages"):
                break
            in_dlq.update(json.loads(m["Body"])["id"] for m in got["Messages"])
    records = _messages(env)
    accepted = accepted_per_id(env.sims)
    verdicts: dict[str, str] = {}
    for i in ids:
        status = records.get(i, {}).get("status")
        if accepted[i] > 1:
            verdicts[i] = "duplicate_send"
        elif status in SETTLED:
            verdicts[i] = status
        elif i in in_dlq and records.get(i, {}).get("error"):
            verdicts[i] = "dlq_with_reason"
        elif i in in_dlq:
            verdicts[i] = "dlq_without_reason"
        else:
            verdicts[i] = "lost"
    bad = [i for i, v in verdicts.items() if v in ("duplicate_send", "lost", "dlq_without_reason")]
    # a message TextingHouse accepted must never be left waiting as if it was not sent
    hidden = [i for i in ids if accepted[i] >= 1 and verdicts[i] == "dlq_with_reason"]

    def story(i: str) -> dict[str, Any]:
        reqs = [
            {
                "fault": r.fault,
                "status": r.status,
                "answer": r.body[:40],
                "cmd": r.fields.get("cmd"),
            }
            for r in th.requests
            if r.fields.get("climsgid") == i
        ]
        return {"sqs": trace.get(i, []), "provider": reqs, "record": records.get(i)}

    return _result(
        "faults",
        n - len(bad),
        len(bad),
        messages=n,
        fault_rate=rate,
        final=dict(Counter(verdicts.values())),
        lost=sum(1 for v in verdicts.values() if v == "lost"),
        duplicate_sends=sum(1 for v in verdicts.values() if v == "duplicate_send"),
        accepted_but_in_dlq=len(hidden),
        provider_requests=len(th.requests),
        provider_faults=dict(Counter(r.fault for r in th.requests if r.fault)),
        flood_refusals=sum(1 for r in th.requests if r.body.startswith("ERR: 350")),
        invocations=invocations,
        unhandled_exceptions=errors,
        sqs=dict(outcomes),
        drained=time.monotonic() - started < budget_s,
        seconds=round(drained_s, 1),
        evidence={i: story(i) for i in (bad + hidden)[:5]},
    )


# --------------------------------------------------------------------------- 3 bad bodies


def _junk_strategies() -> Any:
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
    )
    json_values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )
    numbers = st.one_of(
        st.sampled_from(["+33612345678", "2125551234", "+1212555", "999", "", "+", "abc"]),
        st.text(alphabet="+0123456789 -()", max_size=18),
        st.integers(),
        st.none(),
    )
    texts = st.one_of(st.text(max_size=200), st.integers(), st.none(), st.just(""))
    near = st.fixed_dictionaries(
        {},
        optional={
            "to": numbers,
            "text": texts,
            "provider": st.one_of(
                st.sampled_from(["textinghouse", "grouptexting", "clubtexting", "sms", ""]),
                st.integers(),
            ),
            "subject": st.one_of(st.text(max_size=20), st.integers()),
            "express": st.one_of(st.booleans(), st.text(max_size=3), st.integers()),
            "commercial": st.one_of(st.booleans(), st.just("yes"), st.integers()),
            "sender": st.one_of(st.text(max_size=14), st.integers()),
            "extra": scalars,
        },
    )
    return st.one_of(
        st.text(max_size=60),  # not JSON at all (mostly)
        json_values.map(json.dumps),  # JSON, not the contract
        near.map(json.dumps),  # the contract's fields, wrong or missing
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    )


def bad_bodies(env: Env, total: int) -> dict[str, Any]:
    """>= `total` generated bodies, nine junk + one valid neighbour per batch of ten."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from smsgate.send import BadBody, parse

    send = _send_handler(env)
    stats: Counter[str] = Counter()
    problems: list[dict[str, Any]] = []
    expected: dict[str, tuple[str, str]] = {}  # record id -> (kind, body)
    counter = iter(range(10**9))

    @settings(
        max_examples=-(-total // 9),
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(_junk_strategies(), min_size=9, max_size=9))
    def one_batch(bodies: list[str]) -> None:
        k = next(counter)
        valid = {"id": f"ok{k:06d}", "to": f"+3365{k:07d}", "text": f"neighbour {k}"}
        records = [sqs_record(b) for b in bodies]
        records.insert(k % 10, sqs_record(valid))
        for r in records:
            item = parse(r["body"], r["messageId"], "textinghouse")
            kind = "bad" if isinstance(item, BadBody) else "job"
            expected.setdefault(item.id, (kind, r["body"]))
            stats[kind] += 1
        try:
            response = send(sqs_event(records), Context())
        except Exception as exc:
            stats["unhandled_exceptions"] += 1
            problems.append({"error": repr(exc), "bodies": bodies[:3]})
            return
        if response["batchItemFailures"]:
            stats["records_returned"] += len(response["batchItemFailures"])

    one_batch()
    records = _messages(env)
    passed = failed = 0
    for mid, (kind, body) in expected.items():
        rec = records.get(mid, {})
        status = rec.get("status")
        if mid.startswith("ok") and kind == "job":
            good = status == "sent"
        elif kind == "bad":
            good = status == "failed" and bool(rec.get("error"))
        else:  # a generated body that happens to be valid: sent or refused by a rule
            good = status == "sent" or (status == "failed" and bool(rec.get("error")))
        if good:
            passed += 1
        else:
            failed += 1
            if len(problems) < 5:
                problems.append({"id": mid, "kind": kind, "record": rec, "body": body[:80]})
    failed += stats["unhandled_exceptions"]
    neighbours = [m for m, (kind, _) in expected.items() if m.startswith("ok")]
    failed += sum(1 for m in neighbours if expected[m][0] != "job")  # a valid body refused
    return _result(
        "bad_bodies",
        passed,
        failed,
        bodies=stats["bad"] + stats["job"],
        parsed_invalid=stats["bad"],
        parsed_valid=stats["job"],
        distinct_ids=len(expected),
        neighbours_sent=sum(
            1 for m in expected if m.startswith("ok") and records.get(m, {}).get("status") == "sent"
        ),
        unhandled_exceptions=stats["unhandled_exceptions"],
        records_returned=stats["records_returned"],
        problems=problems[:5],
    )


# --------------------------------------------------------------------------- 4 receipts


def receipts(env: Env, n: int, seed: int = 7) -> dict[str, Any]:
    """Receipts for `n` sent messages, shuffled and duplicated, through the callbacks
    handler: each message ends at the highest status it was given (the first final one to
    arrive, since a final status never changes), and its history never regresses."""
    import boto3

    from smsgate.store import from_item

    send = _send_handler(env)
    ids = [f"d{i:05d}" for i in range(n)]
    for b in range(0, n, 10):
        batch = [
            sqs_record({"id": i, "to": f"+339{int(i[1:]):08d}", "text": f"receipt {i}"})
            for i in ids[b : b + 10]
        ]
        send(sqs_event(batch), Context())
    api_ids = {m.climsgid: m.api_id for m in env.sims.textinghouse.messages}
    callbacks = load_function("callbacks").lambda_handler
    rng = random.Random(seed)
    stream: list[tuple[str, str]] = []
    for i in ids:
        codes = rng.sample(["0", "1", "3", "4", "5", "6", "7", "20"], rng.randint(1, 4))
        for code in codes:
            stream.extend([(i, code)] * rng.randint(1, 3))  # duplicated
    rng.shuffle(stream)
    expect: dict[str, str] = {}
    for i, code in stream:
        status = TH_CODE_STATUS[code]
        now = expect.get(i, "sent")
        if now in FINAL:
            continue
        if status in FINAL or RANK.get(status, 9) > RANK.get(now, 9):
            expect[i] = status
    errors = 0
    for i, code in stream:
        response = callbacks(dlr_event(i, code, api_ids.get(i, "")), Context())
        if response["statusCode"] != 200:
            errors += 1
    records = _messages(env)
    db = boto3.client("dynamodb")
    status_table = env.stack.tables["StatusTable"]
    passed = failed = regressions = duplicates = 0
    examples: list[dict[str, Any]] = []
    for i in ids:
        got = records.get(i, {}).get("status")
        items = db.query(
            TableName=status_table,
            KeyConditionExpression="message_id = :m",
            ExpressionAttributeValues={":m": {"S": i}},
        )["Items"]
        history = [from_item(h)["status"] for h in sorted(items, key=lambda h: h["at"]["S"])]
        ranks = [RANK.get(s, 9) for s in history]
        regressed = any(b < a for a, b in itertools.pairwise(ranks)) or (
            sum(1 for s in history if s in FINAL) > 1
        )
        dup = len(history) != len(set(history))
        regressions += regressed
        duplicates += dup
        if got == expect.get(i, "sent") and not regressed and not dup:
            passed += 1
        else:
            failed += 1
            if len(examples) < 5:
                examples.append(
                    {"id": i, "expected": expect.get(i), "got": got, "history": history}
                )
    return _result(
        "receipts",
        passed,
        failed + errors,
        messages=n,
        receipts=len(stream),
        non_200=errors,
        regressions=regressions,
        duplicate_history=duplicates,
        examples=examples,
    )


# --------------------------------------------------------------------------- running


# --------------------------------------------------------------------------- 5 local volume


MAX_RSS_GROWTH_PER_MESSAGE_MB = 0.1


def local_volume(n: int, rounds: int = 4) -> dict[str, Any]:
    """`n` messages through the local stack (`make run`'s LocalStack: moto server, the
    simulators, the lanes' pollers at the template's concurrency) in `rounds` rounds: every
    message sent once, and the process's memory flat from the second round to the last."""
    import resource
    import tempfile

    from smsgate_local.run import LocalStack, Options

    def rss_mb() -> float:
        with open("/proc/self/status") as status:  # current, not peak
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    ports = {
        k: 0 for k in ("moto", "api", "control", "clubtexting", "grouptexting", "textinghouse")
    }
    options = Options(ports=ports, state_dir=Path(tempfile.mkdtemp()), fast=True, view=False)
    stack = LocalStack(options).start()
    stack.sims.textinghouse.account().credit = 10**9  # a campaign, not a credit check
    started = time.monotonic()
    try:
        sqs, db = stack.client("sqs"), stack.client("dynamodb")
        table, url = stack.info["messages_table"], stack.info["send_queue_url"]
        per_round = n // rounds
        memory, rates = [], []
        for r in range(rounds):
            ids = [f"v{r}x{i:05d}" for i in range(per_round)]
            t0 = time.monotonic()
            for start in range(0, per_round, 10):
                sqs.send_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {
                            "Id": str(k),
                            "MessageBody": json.dumps(
                                {"id": i, "to": f"+3361{r}{j + start:06d}", "text": f"volume {i}"}
                            ),
                        }
                        for k, (j, i) in enumerate(enumerate(ids[start : start + 10]))
                    ],
                )
            pending = set(ids)
            while pending and time.monotonic() - t0 < 600:
                for i in list(pending)[:100]:
                    item = db.get_item(TableName=table, Key={"id": {"S": i}}).get("Item", {})
                    if item.get("status", {}).get("S") not in (None, "queued"):
                        pending.discard(i)
                time.sleep(0.2)
            rates.append(round(per_round / (time.monotonic() - t0), 1))
            memory.append(round(rss_mb(), 1))
            if pending:
                break
        accepted = Counter(
            m.climsgid for m in stack.sims.textinghouse.messages if m.climsgid.startswith("v")
        )
        twice = sum(1 for c in accepted.values() if c > 1)
        sent = sum(
            1
            for r in range(rounds)
            for i in range(per_round)
            if db.get_item(TableName=table, Key={"id": {"S": f"v{r}x{i:05d}"}})
            .get("Item", {})
            .get("status", {})
            .get("S")
            in ("sent", "delivered")
        )
        lost = n - min(len(accepted), sent)
        # moto keeps every item and stream record it was given (~40 KB a message across the
        # record, its history and three tables' streams): memory may grow by that, never by
        # copies of whole tables (24 MB a message before the transaction patch).
        growth = memory[-1] - memory[1] if len(memory) > 2 else float("inf")
        per_message = growth / (per_round * (len(memory) - 2)) if len(memory) > 2 else growth
        flat = per_message <= MAX_RSS_GROWTH_PER_MESSAGE_MB
    finally:
        stack.stop()
    return _result(
        "local_volume",
        passed=n - lost - twice,
        failed=lost + twice + (0 if flat else 1),
        messages=n,
        lost=lost,
        sent_twice=twice,
        rss_mb_after_each_round=memory,
        rss_growth_mb_round2_to_last=round(growth, 1),
        rss_growth_mb_per_message=round(per_message, 3),
        rss_growth_limit_mb_per_message=MAX_RSS_GROWTH_PER_MESSAGE_MB,
        msgs_per_s_each_round=rates,
        runtime_s=round(time.monotonic() - started, 1),
    )


def run_check(name: str, fn: Callable[..., dict[str, Any]], *args: Any, **kw: Any) -> dict:
    env = start_env(server=False, read_timeout=kw.pop("read_timeout", 5.0), connect_timeout=1.0)
    started = time.perf_counter()
    try:
        with quiet_stdout():
            result = fn(env, *args, **kw)
    finally:
        env.stop()
        for suffix in ("",):
            sys.modules.pop(f"smsgate_function_send{suffix}", None)
            sys.modules.pop(f"smsgate_function_callbacks{suffix}", None)
    result["runtime_s"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--fault-messages", type=int, default=300)
    parser.add_argument("--bodies", type=int, default=10_000)
    parser.add_argument("--local-messages", type=int, default=2000)
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    parser.add_argument("--only", default="")
    parser.add_argument(
        "--moto-deepcopy",
        action="store_true",
        help="keep moto's deep copy of whole tables per TransactWriteItems (O(table size))",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    info = machine()
    moto_patch = "none"
    if not args.moto_deepcopy:
        # smsgate's transactions put their one condition on the first item, so a rollback
        # never has an earlier in-place change to undo: the cheap snapshot is exact here.
        from benchmarks.common import cheap_transaction_snapshots

        moto_patch = cheap_transaction_snapshots()
    checks = {
        "redelivery": lambda: run_check("redelivery", redelivery, args.messages),
        "faults": lambda: run_check("faults", faults, args.fault_messages, read_timeout=0.5),
        "bad_bodies": lambda: run_check("bad_bodies", bad_bodies, args.bodies),
        "receipts": lambda: run_check("receipts", receipts, args.messages),
        "local_volume": lambda: local_volume(args.local_messages),
    }
    results = []
    for name, fn in checks.items():
        if args.only and name not in args.only.split(","):
            continue
        result = fn()
        results.append(result)
        print(
            f"{name}: {result['passed']} passed, {result['failed']} failed "
            f"({result['runtime_s']} s)",
            flush=True,
        )
    out = {
        "command": "make soak  (python -m benchmarks.soak " + " ".join(sys.argv[1:]) + ")",
        "machine": info,
        "moto_patch": moto_patch,
        "checks": results,
        "ok": all(r["ok"] for r in results),
        "runtime_s": round(time.perf_counter() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"soak: {'ok' if out['ok'] else 'FAILED'} in {out['runtime_s']} s -> {args.out}")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
