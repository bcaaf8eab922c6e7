"""Provider lanes in `make bench`: throughput against each lane's ceiling, Group Texting's
connections, and one lane's isolation from another's hanging provider.

Runs in a worker process (`python -m benchmarks.bench worker lanes`) against the parent's moto
server and simulators, the way the local stack runs the lanes: the real send handler behind
Lambda's SQS event sources (`smsgate_local.runtime.SqsPoller`), each with the concurrency asked
for. Every provider answers after a fixed latency L (the simulators' `latency`), so a lane of
concurrency c sending p messages of a batch at once has a ceiling of c x p / L messages a
second; the figures are ratios to it, and counts.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

PROVIDER_LANE = {
    "clubtexting": "ClubTextingLaneQueue",
    "grouptexting": "GroupTextingLaneQueue",
    "textinghouse": "TextingHouseLaneQueue",
}


def _body(provider: str, prefix: str, i: int) -> dict[str, Any]:
    to = f"+33612{i:06d}" if provider == "textinghouse" else f"+1212555{i % 10000:04d}"
    return {"id": f"{prefix}{i:06d}", "to": to, "text": f"lane {prefix}{i}", "provider": provider}


class Lanes:
    """The send queue's router and the lanes' senders as pollers, in this process."""

    def __init__(
        self, stack: dict[str, Any], concurrency: dict[str, int], router: bool = True
    ) -> None:
        import boto3

        from benchmarks.common import load_function
        from smsgate_local.runtime import Function, SqsPoller

        self.sqs = boto3.client("sqs")
        app = load_function("send")
        function = Function(
            "SendFunction", "smsgate-bench-send", app.lambda_handler, 30.0, {}, threading.Lock()
        )
        self.pollers = []
        queues, arns = stack["queues"], stack["queue_arns"]
        plan = {PROVIDER_LANE[p]: c for p, c in concurrency.items()}
        if router:
            plan["SendQueue"] = 5
        for queue, count in plan.items():
            batch = 50 if queue == "GroupTextingLaneQueue" else 10
            poller = SqsPoller(  # the template's batch window is 1 s
                self.sqs, function, queues[queue], arns[queue], batch, 1.0, concurrency=count
            )
            self.pollers.append(poller)
        self.send_queue = queues["SendQueue"]

    def __enter__(self) -> Lanes:
        for poller in self.pollers:
            poller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for poller in self.pollers:
            poller.stop()

    def put(self, bodies: list[dict[str, Any]]) -> None:
        for start in range(0, len(bodies), 10):
            self.sqs.send_message_batch(
                QueueUrl=self.send_queue,
                Entries=[
                    {"Id": str(k), "MessageBody": json.dumps(b)}
                    for k, b in enumerate(bodies[start : start + 10])
                ],
            )


def _wait_sent(table: str, ids: list[str], timeout: float) -> float:
    """Seconds until every id's record is past `queued` (sent or final)."""
    import boto3

    db = boto3.client("dynamodb")
    started = time.monotonic()
    pending = set(ids)
    while pending and time.monotonic() - started < timeout:
        keys = list(pending)[:100]
        answer = db.batch_get_item(
            RequestItems={
                table: {
                    "Keys": [{"id": {"S": i}} for i in keys],
                    "ProjectionExpression": "id, #s",
                    "ExpressionAttributeNames": {"#s": "status"},
                }
            }
        )
        for item in answer["Responses"].get(table, []):
            if item.get("status", {}).get("S") not in (None, "queued"):
                pending.discard(item["id"]["S"])
        if pending:
            time.sleep(0.1)
    if pending:
        raise RuntimeError(f"{len(pending)} messages not sent within {timeout:.0f} s")
    return time.monotonic() - started


def lane_run(
    stack: dict[str, Any],
    provider: str,
    n: int,
    concurrency: int,
    prefix: str,
    during: Callable[[], None] | None = None,
) -> float:
    """Messages a second through one lane: the messages are routed from the send queue
    first (the router alone), then the lane's senders start and are timed until every one
    is sent."""
    bodies = [_body(provider, prefix, i) for i in range(n)]
    with Lanes(stack, {}) as router:
        router.put(bodies)
        _wait_queued(router.sqs, stack["queues"][PROVIDER_LANE[provider]], n)
    with Lanes(stack, {provider: concurrency}, router=False):
        side = threading.Thread(target=during) if during else None
        if side is not None:
            side.start()
        seconds = _wait_sent(stack["tables"]["MessagesTable"], [b["id"] for b in bodies], 600)
        if side is not None:
            side.join()
    return n / seconds


def _wait_queued(sqs: Any, url: str, n: int, timeout: float = 300) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        if int(attrs["ApproximateNumberOfMessages"]) >= n:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the router did not put {n} messages on {url}")


def worker_lanes(n: int, latency: float, stack_json: str) -> dict[str, Any]:
    """Figures 1-3 of the lanes (the parent set each simulator's latency to `latency`)."""
    from benchmarks.common import quiet_logs
    from smsgate import wiring

    stack = json.loads(stack_json)
    quiet_logs(open(os.devnull, "w"))  # noqa: SIM115 - for the worker's life
    parallel = wiring.settings().send_parallelism
    out: dict[str, Any] = {"latency_s": latency, "send_parallelism": parallel, "lanes": {}}
    # 1. Each lane against its ceiling, at concurrency 1 (what 2 cores drive at this latency)
    for provider, concurrency, per in (
        ("clubtexting", 1, parallel),
        ("textinghouse", 1, parallel),
        ("grouptexting", 2, 1),
    ):
        rate = lane_run(stack, provider, n, concurrency, f"l{provider[:2]}")
        ceiling = concurrency * per / latency
        out["lanes"][provider] = {
            "messages": n,
            "concurrency": concurrency,
            "per_invocation": per,
            "msgs_per_s": rate,
            "ceiling_msgs_per_s": ceiling,
            "ratio": rate / ceiling,
        }
    # ... and TextingHouse's lane at twice the concurrency
    doubled = lane_run(stack, "textinghouse", 2 * n, 2, "d")
    out["textinghouse_doubled"] = {"concurrency": 2, "msgs_per_s": doubled}
    out["concurrency_scaling_textinghouse"] = doubled / out["lanes"]["textinghouse"]["msgs_per_s"]
    # 2. Group Texting's connections with a credit check and a CLI account call beside the lane
    from benchmarks.common import load_function

    credit_check = load_function("credit_check").lambda_handler

    def account_calls() -> None:
        from benchmarks.common import Context

        time.sleep(1.0)
        credit_check({}, Context())
        pool = wiring.credit_service().clients
        with pool.connection("grouptexting", 30, priority=True, wait=30) as client:
            assert client is not None
            client.balance()  # what `smsgate credits` does, through the same slots

    lane_run(stack, "grouptexting", n, 2, "c", during=account_calls)
    return out


def worker_isolation(n: int, stack_json: str) -> dict[str, Any]:
    """3. Club Texting + TextingHouse drained while Group Texting hangs (the parent set the
    hang), against the same drained before it (`hang` = False first)."""
    stack = json.loads(stack_json)
    from benchmarks.common import quiet_logs

    quiet_logs(open(os.devnull, "w"))  # noqa: SIM115 - for the worker's life
    bodies = [
        *(_body("clubtexting", "ic", i) for i in range(n)),
        *(_body("textinghouse", "it", i) for i in range(n)),
    ]
    hung = [_body("grouptexting", "ig", i) for i in range(10)]
    suffix = os.environ.get("ISOLATION_SUFFIX", "")
    for b in (*bodies, *hung):
        b["id"] += suffix
    with Lanes(stack, {"clubtexting": 2, "textinghouse": 2, "grouptexting": 2}) as lanes:
        lanes.put([*hung, *bodies])
        seconds = _wait_sent(stack["tables"]["MessagesTable"], [b["id"] for b in bodies], 600)
    return {"messages": 2 * n, "drain_s": seconds}
