"""`make bench`: smsgate's figures, each against a floor measured in the same run.

The parent process hosts AWS (moto server on a thread, Nagle off, as `make run` does) and the
provider simulators; every handler runs in its own fresh subprocess (a "Lambda instance")
that talks to them over loopback HTTP, and measures the floor in the same process, against
the same endpoints, in alternating rounds. Results: benchmarks/results/latest.json + .md.

    python -m benchmarks.bench [--n 2000] [--rounds 4] [--cold-runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, ROOT, machine

# --- public prices (us-east-1, assumptions printed with the results) ------------------------
PRICES = {
    "lambda_arm64_gb_s": 0.0000133334,
    "lambda_per_million_requests": 0.20,
    "sqs_standard_per_million_requests": 0.40,
    "dynamodb_on_demand_per_million_wru": 0.625,
    "dynamodb_on_demand_per_million_rru": 0.125,
    "apigw_rest_per_million_requests": 3.50,
}
LAMBDA_MEMORY_MB = 256  # template.yaml Globals.Function.MemorySize
SEND_BATCH = 10  # template.yaml SendQueueEvent.BatchSize


# =========================================================================== worker side


def _worker_setup() -> None:
    from benchmarks.common import aws_env, setup_paths

    setup_paths()
    aws_env()


def _rss_mb() -> float:
    """Peak RSS of this process. ru_maxrss is not used: on Linux a child inherits its
    parent's peak across fork+exec, so a subprocess of the bench (which hosts moto server)
    would report the parent's figure; VmHWM is this address space's own high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _count_units(counter_calls: dict[str, int], items: dict[str, int]) -> dict[str, float]:
    """DynamoDB request units from the operations seen (items <= 1 KB / 4 KB assumed)."""
    wru = (
        counter_calls.get("dynamodb.UpdateItem", 0)
        + counter_calls.get("dynamodb.PutItem", 0)
        + counter_calls.get("dynamodb.DeleteItem", 0)
        + 2 * items.get("transact_items", 0)
    )
    rru = (
        items.get("batch_get_keys", 0)
        + counter_calls.get("dynamodb.GetItem", 0)
        + counter_calls.get("dynamodb.Query", 0)
    )
    return {"wru": wru, "rru": rru}


class _Latency:
    """Wall time of each AWS operation (before-call -> after-call), per operation."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self._start: dict[str, float] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call", self._before)
        client.meta.events.register("after-call", self._after)

    def _before(self, event_name: str, **_: Any) -> None:
        self._start[event_name.split(".", 1)[1]] = time.perf_counter()

    def _after(self, event_name: str, **_: Any) -> None:
        op = event_name.split(".", 1)[1]
        self.times.setdefault(op, []).append(time.perf_counter() - self._start.pop(op, 0.0))

    def medians_ms(self) -> dict[str, float]:
        return {k: 1000 * statistics.median(v) for k, v in self.times.items() if v}

    def totals_s(self) -> dict[str, float]:
        return {k: sum(v) for k, v in self.times.items()}

    def clear(self) -> None:
        self.times.clear()


class _ItemCounter:
    """Items inside TransactWriteItems and keys inside BatchGetItem (for request units)."""

    def __init__(self) -> None:
        self.items = {"transact_items": 0, "batch_get_keys": 0}

    def attach(self, client: Any) -> None:
        client.meta.events.register(
            "provide-client-params.dynamodb.TransactWriteItems", self._transact
        )
        client.meta.events.register("provide-client-params.dynamodb.BatchGetItem", self._batch_get)

    def _transact(self, params: dict[str, Any], **_: Any) -> None:
        self.items["transact_items"] += len(params.get("TransactItems", []))

    def _batch_get(self, params: dict[str, Any], **_: Any) -> None:
        for request in params.get("RequestItems", {}).values():
            self.items["batch_get_keys"] += len(request.get("Keys", []))


class _Instruments:
    """What both throughput workers measure: the handler's AWS calls, the items they touch and
    their latency, and the floor's latency; zeroed after the warm-up."""

    def __init__(self, handler_db: Any, floor_db: Any) -> None:
        from benchmarks.common import CallCounter

        self.counter, self.items = CallCounter(), _ItemCounter()
        self.latency, self.floor_latency = _Latency(), _Latency()
        self.counter.attach(handler_db)
        self.items.attach(handler_db)
        self.latency.attach(handler_db)
        self.floor_latency.attach(floor_db)

    def reset(self) -> None:
        self.counter.reset()
        self.latency.clear()
        self.floor_latency.clear()
        self.items.items = dict.fromkeys(self.items.items, 0)

    def figures(self) -> dict[str, Any]:
        calls = dict(self.counter.calls)
        return {
            "aws_calls": calls,
            "units": _count_units(calls, self.items.items),
            "items": self.items.items,
            "aws_latency_ms_median": self.latency.medians_ms(),
            "floor_aws_latency_ms_median": self.floor_latency.medians_ms(),
            "aws_time_s": self.latency.totals_s(),
            "floor_aws_time_s": self.floor_latency.totals_s(),
        }


def _alternate(
    rounds: int, handler: Callable[[int], float], floor: Callable[[int], float]
) -> tuple[list[float], list[float]]:
    """Seconds per round of each side; the order alternates so neither always runs first."""
    handler_s, floor_s = [], []
    for r in range(rounds):
        if r % 2 == 0:
            handler_s.append(handler(r))
            floor_s.append(floor(r))
        else:
            floor_s.append(floor(r))
            handler_s.append(handler(r))
    return handler_s, floor_s


def worker_send(n: int, rounds: int, warm: int) -> dict[str, Any]:
    """The send handler vs the floor, in this one process (a warm Lambda instance)."""
    _worker_setup()
    import boto3
    import requests

    from benchmarks.common import (
        SIM_PASS,
        SIM_USER,
        TH_SEND_PATH,
        Context,
        load_function,
        null_stream,
        quiet_logs,
        sqs_event,
        sqs_record,
    )

    sink = null_stream()
    app = load_function("send")
    quiet_logs(sink)
    from smsgate import wiring

    service = wiring.send_service()
    # the floor: its own client and session, the same endpoints
    db = boto3.client("dynamodb")
    measure = _Instruments(service.store.db, db)
    measure.counter.attach(service.sqs)

    def batches(prefix: str, start: int, count: int, numbers: int = 0) -> list[dict[str, Any]]:
        """Messages `prefix`+index, to the numbers from index + `numbers` (the callbacks'
        run sends receipts for the ids)."""
        events = []
        for b in range(start, start + count, SEND_BATCH):
            records = [
                sqs_record(
                    {
                        "id": f"{prefix}{i:06d}",
                        "to": f"+336{i + numbers:08d}",
                        "text": f"bench {prefix}{i}",
                    }
                )
                for i in range(b, min(b + SEND_BATCH, start + count))
            ]
            events.append(sqs_event(records))
        return events

    cpu = {
        "handler": 0.0,
        "floor": 0.0,
    }  # this process's CPU seconds (moto and the sims are the parent's)

    def run_handler(events: list[dict[str, Any]]) -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        for event in events:
            response = app.lambda_handler(event, Context())
            if response["batchItemFailures"]:
                raise RuntimeError(f"send handler failed records: {response}")
        cpu["handler"] += time.process_time() - c0
        return time.perf_counter() - t0

    table = os.environ["MESSAGES_TABLE"]
    th_url = os.environ["TEXTINGHOUSE_URL"].rstrip("/") + TH_SEND_PATH
    session = requests.Session()

    def run_floor(start: int, count: int) -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(start, start + count):
            mid = f"f{i:06d}"
            db.put_item(
                TableName=table,
                Item={"id": {"S": mid}, "status": {"S": "queued"}, "provider": {"S": "th"}},
                ConditionExpression="attribute_not_exists(id)",
            )
            reply = session.post(
                th_url,
                data={
                    "user": SIM_USER,
                    "pass": SIM_PASS,
                    "cmd": "sendsms",
                    "to": f"337{i:08d}",
                    "txt": f"bench f{i}",
                    "climsgid": mid,
                    "iscom": "N",
                },
                timeout=(1, 5),
            )
            if not reply.text.startswith("ID:"):
                raise RuntimeError(f"floor send refused: {reply.text}")
            db.update_item(
                TableName=table,
                Key={"id": {"S": mid}},
                UpdateExpression="SET #s = :s, provider_message_id = :p",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": {"S": "sent"}, ":p": {"S": reply.text[3:]}},
            )
        cpu["floor"] += time.process_time() - c0
        return time.perf_counter() - t0

    # warm both paths (imports, connections, credentials), then count from zero
    run_handler(batches("w", 0, warm, numbers=2 * 10**6))  # numbers of their own: see "again"
    rss_handler_only = _rss_mb()
    run_floor(900_000, warm)
    measure.reset()
    cpu.update(handler=0.0, floor=0.0)
    per_round = n // rounds
    hs, fs = _alternate(
        rounds,
        lambda r: run_handler(batches("h", r * per_round, per_round)),
        lambda r: run_floor(r * per_round, per_round),
    )
    handler_s, floor_s, total = sum(hs), sum(fs), per_round * rounds
    figures, spent_cpu = measure.figures(), dict(cpu)
    extra = min(n, 300)
    # numbers no message went to yet (the measured rounds used 0..n)
    with_budget = _with_a_budget(service, measure, run_handler, batches, 10**6, extra)
    # the measured rounds' numbers again: each message takes its place in its recipient's
    # counter with a conditional write first (velocity's strict path)
    measure.reset()
    run_handler(batches("again", 0, extra))
    calls = measure.figures()["aws_calls"]
    again = sum(v for k, v in calls.items() if k.startswith("dynamodb.")) / extra
    cpu.update(spent_cpu)  # these runs are not the measured ones
    return {
        "dynamodb_per_message_with_budget": with_budget,
        "dynamodb_per_message_same_numbers_again": again,
        "messages": total,
        "handler_s": handler_s,
        "floor_s": floor_s,
        "handler_msgs_per_s": total / handler_s,
        "floor_msgs_per_s": total / floor_s,
        "handler_rounds_msgs_per_s": [per_round / x for x in hs],
        "floor_rounds_msgs_per_s": [per_round / x for x in fs],
        **figures,
        "cpu_ms_per_message_handler": 1000 * cpu["handler"] / (per_round * rounds),
        "cpu_ms_per_message_floor": 1000 * cpu["floor"] / (per_round * rounds),
        "rss_mb_after_warm_handler_only": rss_handler_only,
        "rss_mb_peak": _rss_mb(),
    }


def _with_a_budget(
    service: Any,
    measure: _Instruments,
    run_handler: Callable[[list[dict[str, Any]]], float],
    batches: Callable[..., list[dict[str, Any]]],
    start: int,
    n: int,
) -> float:
    """DynamoDB requests per sent message with a monthly budget set: protection's spend is then
    read with each batch's opt-outs and written once per batch (the default configuration,
    measured above, has velocity on and no budget)."""
    from smsgate.providers import PROVIDERS
    from smsgate.routing import RoutingConfig

    budgeted = RoutingConfig.parse(
        {"prices": dict.fromkeys(PROVIDERS, 0.05), "monthly_budgets": {"total": 1e9}}
    )
    measure.reset()
    in_force = service.router.config
    service.router.config = lambda: budgeted
    try:
        run_handler(batches("budget", 0, n, numbers=start))
    finally:
        service.router.config = in_force
    calls = measure.figures()["aws_calls"]
    return sum(v for k, v in calls.items() if k.startswith("dynamodb.")) / n


def worker_callbacks(n: int, rounds: int, warm: int, ids_file: str) -> dict[str, Any]:
    """The callbacks handler (REST proxy events, direct invocation) vs the floor."""
    _worker_setup()
    import boto3

    from benchmarks.common import (
        Context,
        dlr_event,
        load_function,
        null_stream,
        quiet_logs,
    )

    api_ids: dict[str, str] = json.loads(Path(ids_file).read_text())
    sink = null_stream()
    app = load_function("callbacks")
    quiet_logs(sink)
    from smsgate import wiring

    service = wiring.callback_service()
    db = boto3.client("dynamodb")
    measure = _Instruments(service.store.db, db)

    def run_handler(ids: list[str]) -> float:
        events = [dlr_event(i, 3, api_ids.get(i, "")) for i in ids]
        t0 = time.perf_counter()
        for event in events:
            response = app.lambda_handler(event, Context())
            if response["statusCode"] != 200 or "applied" not in response["body"]:
                raise RuntimeError(f"receipt not applied: {response}")
        return time.perf_counter() - t0

    messages, status = os.environ["MESSAGES_TABLE"], os.environ["STATUS_TABLE"]
    allowed = {":a0": {"S": "queued"}, ":a1": {"S": "sent"}, ":a2": {"S": "unknown"}}

    def run_floor(ids: list[str]) -> float:
        t0 = time.perf_counter()
        for mid in ids:
            at = f"{time.time():.6f}"
            db.update_item(
                TableName=messages,
                Key={"id": {"S": mid}},
                UpdateExpression="SET #s = :d, status_at = :at",
                ConditionExpression="attribute_exists(id) AND #s IN (:a0, :a1, :a2)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":d": {"S": "delivered"}, ":at": {"S": at}, **allowed},
            )
            db.put_item(
                TableName=status,
                Item={
                    "message_id": {"S": mid},
                    "at": {"S": f"{at}#delivered"},
                    "status": {"S": "delivered"},
                    "source": {"S": "dlr"},
                },
            )
        return time.perf_counter() - t0

    run_handler([f"w{i:06d}" for i in range(warm)])
    rss_handler_only = _rss_mb()
    run_floor([f"f{i:06d}" for i in range(900_000, 900_000 + warm)])
    measure.reset()
    per_round = n // rounds

    def ids(prefix: str, r: int) -> list[str]:
        return [f"{prefix}{i:06d}" for i in range(r * per_round, (r + 1) * per_round)]

    hs, fs = _alternate(
        rounds, lambda r: run_handler(ids("h", r)), lambda r: run_floor(ids("f", r))
    )
    handler_s, floor_s, total = sum(hs), sum(fs), per_round * rounds
    return {
        "receipts": total,
        "handler_s": handler_s,
        "floor_s": floor_s,
        "handler_per_s": total / handler_s,
        "floor_per_s": total / floor_s,
        **measure.figures(),
        "rss_mb_after_warm_handler_only": rss_handler_only,
        "rss_mb_peak": _rss_mb(),
    }


def worker_profile(n: int, out: str) -> dict[str, Any]:
    """cProfile of the send handler alone (after warming), for the hotspots."""
    import cProfile
    import io
    import pstats

    _worker_setup()
    from benchmarks.common import Context, load_function, null_stream, quiet_logs, sqs_event
    from benchmarks.common import sqs_record as rec

    sink = null_stream()
    app = load_function("send")
    quiet_logs(sink)

    def events(prefix: str, count: int) -> list[dict[str, Any]]:
        return [
            sqs_event(
                [
                    rec({"id": f"{prefix}{i:06d}", "to": f"+338{i:08d}", "text": f"p {i}"})
                    for i in range(b, b + SEND_BATCH)
                ]
            )
            for b in range(0, count, SEND_BATCH)
        ]

    for e in events("pw", 50):
        app.lambda_handler(e, Context())
    todo = events("p", n)
    prof = cProfile.Profile()
    prof.enable()
    for e in todo:
        app.lambda_handler(e, Context())
    prof.disable()
    prof.dump_stats(out)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(40)
    tottime = io.StringIO()
    pstats.Stats(prof, stream=tottime).sort_stats("tottime").print_stats(25)
    return {"cumulative": text.getvalue(), "tottime": tottime.getvalue()}


COLD_SCRIPTS = {
    "floor": "import boto3, requests",
    "send": (
        "from benchmarks.common import load_function\n"
        "load_function('send')\n"
        "from smsgate import wiring\n"
        "wiring.send_service()\n"
    ),
    "callbacks": (
        "from benchmarks.common import load_function\n"
        "load_function('callbacks')\n"
        "from smsgate import wiring\n"
        "wiring.callback_service()\n"
    ),
    "credit_check": (
        "from benchmarks.common import load_function\n"
        "load_function('credit_check')\n"
        "from smsgate import wiring\n"
        "wiring.credit_service()\n"
    ),
}
FIRST_CALL = {  # the first invocation's remaining set-up: the provider secret (and client)
    "floor": "",
    "send": "wiring.send_service().client('textinghouse')\n",
    "callbacks": ("from smsgate.config import settings\nwiring.callback_tokens(settings())\n"),
    "credit_check": "wiring.credit_service()\n",
}


def worker_cold(kind: str) -> dict[str, Any]:
    """Runs first thing in a fresh interpreter: time the import + set-up of one handler."""
    t0 = time.perf_counter()
    _worker_setup()
    namespace: dict[str, Any] = {}
    exec(COLD_SCRIPTS[kind], namespace)  # noqa: S102 - our own constant snippets
    t1 = time.perf_counter()
    exec(FIRST_CALL[kind], namespace)  # noqa: S102
    t2 = time.perf_counter()
    return {"setup_s": t1 - t0, "first_call_s": t2 - t1, "rss_mb": _rss_mb()}


def compile_layer() -> None:
    """The layer ships compiled (layers/smsgate/Makefile), as the dependencies in the venv
    are: measure its cold start that way, not with this machine's PYTHONDONTWRITEBYTECODE
    making every run compile smsgate from source. (Timestamped bytecode, in the tree's
    ignored __pycache__: an edited source is still recompiled.)"""
    subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "layers" / "smsgate" / "smsgate")],
        check=True,
    )


def import_breakdown(kind: str, top: int = 8) -> list[dict[str, Any]]:
    """`python -X importtime` of one handler's cold set-up: the modules that cost most,
    cumulative (what a 256 MB Lambda pays several times over at its cold start)."""
    script = (
        "import sys; sys.path[:0] = ['layers/smsgate', 'local', 'sim', 'cli', '.']\n"
        "from benchmarks.bench import _worker_setup, COLD_SCRIPTS\n"
        "_worker_setup()\n"
        f"exec(COLD_SCRIPTS[{kind!r}], {{}})\n"
    )
    proc = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-X", "importtime", "-c", script],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _self, cumulative, name = line.split("|", 2)
        cumulative_us = cumulative.strip()
        if not cumulative_us.isdigit():
            continue
        depth = (len(name) - len(name.lstrip()) - 1) // 2  # nested imports are indented
        module = name.strip()
        if depth <= 1 and not module.startswith(("benchmarks", "_", "encodings")):
            rows.append(
                {"module": module, "depth": depth, "cumulative_ms": int(cumulative_us) / 1000}
            )
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return rows[:top]


# =========================================================================== parent side


def _run_worker(
    args: list[str], timeout: float = 600, env: dict[str, str] | None = None
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as fh:
        out = fh.name
    try:
        proc = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "benchmarks.bench", "worker", *args, "--out", out],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-4000:]}")
        return json.loads(Path(out).read_text())
    finally:
        Path(out).unlink(missing_ok=True)


def _connections_by_prefix(sim: Any) -> dict[str, int]:
    """Distinct TCP connections that carried send requests, by message id prefix."""
    seen: dict[str, set[int]] = {}
    for r in sim.requests:
        cid = r.fields.get("climsgid") or ""
        prefix = "handler" if cid[:1] in ("h", "w") else "floor" if cid[:1] == "f" else "other"
        seen.setdefault(prefix, set()).add(r.connection_id)
    return {k: len(v) for k, v in seen.items()}


ROUTER_MS_PER_BATCH = 30


def cost_per_million(send: dict[str, Any], cb: dict[str, Any]) -> dict[str, Any]:
    """USD per million messages sent, each with one delivery receipt."""
    gb = LAMBDA_MEMORY_MB / 1024
    m = 1_000_000
    send_ms_per_batch = 1000 * send["handler_s"] / (send["messages"] / SEND_BATCH)
    cb_ms = 1000 * cb["handler_s"] / cb["receipts"]
    send_lambda = (m / SEND_BATCH) * (send_ms_per_batch / 1000) * gb * PRICES[
        "lambda_arm64_gb_s"
    ] + (m / SEND_BATCH) / m * PRICES["lambda_per_million_requests"]
    cb_lambda = (
        m * (max(cb_ms, 1) / 1000) * gb * PRICES["lambda_arm64_gb_s"]
        + PRICES["lambda_per_million_requests"]
    )
    # The lanes: the router's invocation per batch, its SendMessageBatch to the lane, and the
    # lane's event source receiving and deleting the batch again.
    router_lambda = (m / SEND_BATCH) * (ROUTER_MS_PER_BATCH / 1000) * gb * PRICES[
        "lambda_arm64_gb_s"
    ] + (m / SEND_BATCH) / m * PRICES["lambda_per_million_requests"]
    fn_sqs = sum(v for k, v in send["aws_calls"].items() if k.startswith("sqs.")) / send["messages"]
    # producer send + receive/delete per batch on the send queue, the router's send per
    # batch, receive/delete per batch on the lane
    sqs_per_msg = 1 + 2 / SEND_BATCH + 1 / SEND_BATCH + 2 / SEND_BATCH + fn_sqs
    sqs = sqs_per_msg * PRICES["sqs_standard_per_million_requests"]
    wru = send["units"]["wru"] / send["messages"] + cb["units"]["wru"] / cb["receipts"]
    rru = send["units"]["rru"] / send["messages"] + cb["units"]["rru"] / cb["receipts"]
    ddb = (
        wru * PRICES["dynamodb_on_demand_per_million_wru"]
        + rru * PRICES["dynamodb_on_demand_per_million_rru"]
    )
    apigw = PRICES["apigw_rest_per_million_requests"]
    parts = {
        "lambda_send": send_lambda,
        "lambda_router": router_lambda,
        "lambda_callbacks": cb_lambda,
        "sqs": sqs,
        "dynamodb": ddb,
        "api_gateway": apigw,
    }
    return {
        "usd_per_million_messages": sum(parts.values()),
        "parts_usd": parts,
        "per_message": {
            "send_ms_per_batch_of_10": send_ms_per_batch,
            "callback_ms_per_receipt": cb_ms,
            "sqs_requests": sqs_per_msg,
            "dynamodb_wru": wru,
            "dynamodb_rru": rru,
        },
        "assumptions": {
            "prices_usd": PRICES,
            "region": "us-east-1 public on-demand prices (no free tier)",
            "lambda_memory_mb": LAMBDA_MEMORY_MB,
            "send_batch": SEND_BATCH,
            "durations": "measured here against moto server and a loopback simulator; real "
            "DynamoDB/provider latencies differ (provider round trips of 100-500 ms would "
            "dominate the send function's duration)",
            "callbacks_billed_ms_min": 1,
            "router_ms_per_batch": f"{ROUTER_MS_PER_BATCH} (assumed: parse, rules, one "
            "SendMessageBatch; no provider request, no table read)",
            "receipts_per_message": 1,
            "sqs": "1 SendMessage by the producer + 1 ReceiveMessage and 1 DeleteMessageBatch "
            "per batch of 10 by Lambda's event source on the send queue, 1 SendMessageBatch "
            "by the router and 1 ReceiveMessage + 1 DeleteMessageBatch on the lane per batch "
            "+ the function's own SQS calls; each body < 64 KB",
            "dynamodb_units": "UpdateItem/PutItem/DeleteItem 1 WRU (items <= 1 KB), "
            "TransactWriteItems 2 WRU per item, consistent BatchGetItem/GetItem/Query 1 RRU "
            "per key/call (<= 4 KB); GSI write amplification (messages table: 2 sparse GSIs, "
            "+~2 WRU/message) and Streams are not included",
            "api_gateway": "REST API, 1 request per receipt, first 333M/month tier",
        },
    }


LANE_PARALLELISM = 2


def run_lanes(env: Any, n: int, latency: float) -> dict[str, Any]:
    """The lanes' figures (benchmarks/lanes.py) at a provider latency of `latency` seconds."""
    stack = json.dumps(
        {"queues": env.stack.queues, "queue_arns": env.stack.queue_arns, "tables": env.stack.tables}
    )
    gt = env.sims.grouptexting
    for sim in env.sims:
        sim.latency = latency
    print(f"lanes: {n} messages per lane at L = {latency * 1000:.0f} ms", flush=True)
    before = len(gt.requests)
    gt.peak_connections = gt.open_connections
    # Two messages of a batch at once, not the default ten: at ten, the moto server that
    # stands in for DynamoDB and SQS (on the same 2 cores) would be the limit, not the lane.
    out = _run_worker(
        ["lanes", "--n", str(n), "--latency", str(latency), "--stack", stack],
        900,
        {"SEND_PARALLELISM": str(LANE_PARALLELISM)},
    )
    gt_requests = gt.requests[before:]
    out["grouptexting_peak_connections"] = gt.peak_connections
    out["gateway_503s"] = sum(1 for r in gt_requests if r.status == 503)
    print(
        "isolation: Club Texting + TextingHouse, then again with Group Texting hanging", flush=True
    )
    iso_n = max(50, n // 2)
    calm = _run_worker(
        ["isolation", "--n", str(iso_n), "--stack", stack], 900, {"ISOLATION_SUFFIX": "a"}
    )
    gt.set_fault("hang", delay=30.0)
    try:
        hung = _run_worker(
            ["isolation", "--n", str(iso_n), "--stack", stack], 900, {"ISOLATION_SUFFIX": "b"}
        )
    finally:
        gt.clear_faults()
    out["isolation"] = {
        "calm_s": calm["drain_s"],
        "hung_s": hung["drain_s"],
        "messages": calm["messages"],
    }
    out["isolation_ratio"] = hung["drain_s"] / calm["drain_s"]
    for sim in env.sims:
        sim.latency = 0.0
    return out


def run_bench(
    n: int,
    rounds: int,
    cold_runs: int,
    profile: bool,
    cheap_snapshots: bool = True,
    lane_n: int = 300,
    lane_latency: float = 0.2,
) -> dict[str, Any]:
    from benchmarks.common import start_env

    started = time.perf_counter()
    info = machine()
    from benchmarks.common import cheap_transaction_snapshots

    moto_patch = cheap_transaction_snapshots() if cheap_snapshots else "none"
    env = start_env(server=True, read_timeout=5.0)
    try:
        th = env.sims.textinghouse
        warm = 50
        print(f"sender: {n} messages + floor, moto server {env.endpoint}", flush=True)
        conns_before = th.connections
        send = _run_worker(["send", "--n", str(n), "--rounds", str(rounds), "--warm", str(warm)])
        send["connections_total_textinghouse"] = th.connections - conns_before
        send["connections_by_side"] = _connections_by_prefix(th)
        send["sim_requests"] = len(th.requests)
        api_ids = {m.climsgid: m.api_id for m in th.messages}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(api_ids, fh)
            ids_file = fh.name
        print(f"callbacks: {n} receipts + floor", flush=True)
        try:
            cb = _run_worker(
                [
                    "callbacks",
                    "--n",
                    str(n),
                    "--rounds",
                    str(rounds),
                    "--warm",
                    str(warm),
                    "--ids",
                    ids_file,
                ]
            )
        finally:
            Path(ids_file).unlink(missing_ok=True)
        lanes = run_lanes(env, lane_n, lane_latency)
        prof = None
        if profile:
            print("profile: send handler under cProfile", flush=True)
            prof = _run_worker(["profile", "--n", str(min(n, 500))])
        print(f"cold starts: {cold_runs} runs each", flush=True)
        compile_layer()
        cold: dict[str, Any] = {}
        for kind in ("floor", "send", "callbacks", "credit_check"):
            runs = [_run_worker(["cold", "--kind", kind]) for _ in range(cold_runs)]
            cold[kind] = {
                "setup_s_median": statistics.median(r["setup_s"] for r in runs),
                "first_call_s_median": statistics.median(r["first_call_s"] for r in runs),
                "setup_s_runs": [r["setup_s"] for r in runs],
                "rss_mb_median": statistics.median(r["rss_mb"] for r in runs),
            }
        floor_cold = cold["floor"]["setup_s_median"]
        for kind in ("send", "callbacks", "credit_check"):
            cold[kind]["ratio_to_floor"] = cold[kind]["setup_s_median"] / floor_cold
            cold[kind]["imports_top"] = import_breakdown(kind)
        credit_rss = cold["credit_check"]["rss_mb_median"]
        parent_rss = _rss_mb()
    finally:
        env.stop()
    ddb_per_msg = (
        sum(v for k, v in send["aws_calls"].items() if k.startswith("dynamodb.")) / send["messages"]
    )
    sqs_per_msg = (
        sum(v for k, v in send["aws_calls"].items() if k.startswith("sqs.")) / send["messages"]
    )
    ddb_per_receipt = (
        sum(v for k, v in cb["aws_calls"].items() if k.startswith("dynamodb.")) / cb["receipts"]
    )
    result = {
        "command": "make bench  (python -m benchmarks.bench " + " ".join(sys.argv[1:]) + ")",
        "machine": info,
        "n": n,
        "rounds": rounds,
        "sender": send,
        "callbacks": cb,
        "cold_start": cold,
        "profile": prof,
        "bench_parent_rss_mb": parent_rss,
        "moto_patch": moto_patch,
        "lanes": lanes,
        "figures": {
            "lane_ratio_clubtexting": lanes["lanes"]["clubtexting"]["ratio"],
            "lane_ratio_textinghouse": lanes["lanes"]["textinghouse"]["ratio"],
            "lane_ratio_grouptexting": lanes["lanes"]["grouptexting"]["ratio"],
            "concurrency_scaling_textinghouse": lanes["concurrency_scaling_textinghouse"],
            "grouptexting_peak_connections": lanes["grouptexting_peak_connections"],
            "gateway_503s": lanes["gateway_503s"],
            "isolation_ratio": lanes["isolation_ratio"],
            "cpu_per_message_ratio": send["cpu_ms_per_message_handler"]
            / send["cpu_ms_per_message_floor"],
            "sender_ratio": send["handler_msgs_per_s"] / send["floor_msgs_per_s"],
            "callbacks_ratio": cb["handler_per_s"] / cb["floor_per_s"],
            "dynamodb_per_message": ddb_per_msg,
            "dynamodb_per_message_with_budget": send["dynamodb_per_message_with_budget"],
            "dynamodb_per_message_same_numbers_again": send[
                "dynamodb_per_message_same_numbers_again"
            ],
            "sqs_per_message": sqs_per_msg,
            "dynamodb_per_receipt": ddb_per_receipt,
            "connections_handler_textinghouse": send["connections_by_side"].get("handler", 0),
            "rss_mb_send": send["rss_mb_peak"],
            "rss_mb_callbacks": cb["rss_mb_peak"],
            "rss_mb_credit_check": credit_rss,
        },
        "cost": cost_per_million(send, cb),
        "normalised": {
            "sender_ratio_equal_aws_latency": _normalised(send, "messages"),
            "callbacks_ratio_equal_aws_latency": _normalised(cb, "receipts"),
            "note": "each side's AWS time replaced by its request count x the floor's median "
            "DynamoDB request latency: the ratio if every DynamoDB request cost the same, as "
            "on DynamoDB; moto's cost grows with the size of an update expression",
        },
        "runtime_s": time.perf_counter() - started,
    }
    return result


def lanes_only(out_dir: Path, n: int, latency: float) -> int:
    """The lanes' section again, written into the last full run's results (its other
    figures stay as they were measured)."""
    from benchmarks.common import cheap_transaction_snapshots, start_env

    cheap_transaction_snapshots()
    path = out_dir / "latest.json"
    result = json.loads(path.read_text())
    env = start_env(server=True, read_timeout=5.0)
    try:
        lanes = run_lanes(env, n, latency)
    finally:
        env.stop()
    result["lanes"] = lanes
    f = result["figures"]
    f["lane_ratio_clubtexting"] = lanes["lanes"]["clubtexting"]["ratio"]
    f["lane_ratio_textinghouse"] = lanes["lanes"]["textinghouse"]["ratio"]
    f["lane_ratio_grouptexting"] = lanes["lanes"]["grouptexting"]["ratio"]
    f["concurrency_scaling_textinghouse"] = lanes["concurrency_scaling_textinghouse"]
    f["grouptexting_peak_connections"] = lanes["grouptexting_peak_connections"]
    f["gateway_503s"] = lanes["gateway_503s"]
    f["isolation_ratio"] = lanes["isolation_ratio"]
    result["lanes_command"] = "python -m benchmarks.bench --lanes-only"
    result["cost"] = cost_per_million(result["sender"], result["callbacks"])
    path.write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result)
    (out_dir / "latest.md").write_text(md)
    print(md)
    return 0


def _normalised(side: dict[str, Any], unit: str) -> float:
    floor_medians = list(side["floor_aws_latency_ms_median"].values())
    per_call = statistics.median(floor_medians) / 1000
    handler_calls = sum(v for k, v in side["aws_calls"].items() if k.startswith("dynamodb."))
    handler_other = side["handler_s"] - sum(side["aws_time_s"].values())
    floor_other = side["floor_s"] - sum(side["floor_aws_time_s"].values())
    floor_calls_n = 2 * side[unit]
    handler_est = handler_other + handler_calls * per_call
    floor_est = floor_other + floor_calls_n * per_call
    return floor_est / handler_est


def _goal(ok: bool) -> str:
    return "met" if ok else "**missed**"


def to_markdown(r: dict[str, Any]) -> str:
    f, s, c, cold = r["figures"], r["sender"], r["callbacks"], r["cold_start"]
    m = r["machine"]
    rows = [
        (
            "1 Sender throughput",
            f"{s['handler_msgs_per_s']:.0f} msg/s vs floor {s['floor_msgs_per_s']:.0f} msg/s "
            f"= **{f['sender_ratio']:.2f}**",
            "≥ 0.85",
            _goal(f["sender_ratio"] >= 0.85),
        ),
        (
            "2 DynamoDB requests / sent message (protection on: the default configuration)",
            f"{f['dynamodb_per_message']:.2f} (SQS {f['sqs_per_message']:.2f})",
            "≤ 2.2",
            _goal(f["dynamodb_per_message"] <= 2.2),
        ),
        (
            "2 DynamoDB requests / sent message with a monthly budget set (the batch's spend: "
            "one UpdateItem per batch of 10)",
            f"{f['dynamodb_per_message_with_budget']:.2f}",
            "(info)",
            "—",
        ),
        (
            "2 DynamoDB requests / sent message to numbers already texted this hour "
            "(each takes its place in its recipient's counter first)",
            f"{f['dynamodb_per_message_same_numbers_again']:.2f}",
            "(info)",
            "—",
        ),
        (
            "2 DynamoDB requests / receipt",
            f"{f['dynamodb_per_receipt']:.2f}",
            "≤ 2",
            _goal(f["dynamodb_per_receipt"] <= 2),
        ),
        (
            "3 TCP connections to TextingHouse (warm handler process, 5 send workers)",
            f"{f['connections_handler_textinghouse']} (floor's session: "
            f"{s['connections_by_side'].get('floor', 0)})",
            "≤ 5 (one per worker)",
            _goal(f["connections_handler_textinghouse"] <= 5),
        ),
    ]
    for kind in ("send", "callbacks", "credit_check"):
        rows.append(
            (
                f"4 Cold start {kind}",
                f"{cold[kind]['setup_s_median'] * 1000:.0f} ms vs `import boto3, requests` "
                f"{cold['floor']['setup_s_median'] * 1000:.0f} ms = "
                f"**{cold[kind]['ratio_to_floor']:.2f}x** (+ first secret fetch "
                f"{cold[kind]['first_call_s_median'] * 1000:.0f} ms)",
                "≤ 1.5x",
                _goal(cold[kind]["ratio_to_floor"] <= 1.5),
            )
        )
    for kind, key, what in (
        ("send", "rss_mb_send", f"after {s['messages'] + 50} messages"),
        ("callbacks", "rss_mb_callbacks", f"after {c['receipts'] + 50} receipts"),
        ("credit_check", "rss_mb_credit_check", "after set-up"),
    ):
        rows.append(
            (f"5 Peak RSS {kind}", f"{f[key]:.0f} MB ({what})", "≤ 110 MB", _goal(f[key] <= 110))
        )
    rows.append(
        (
            "6 Callbacks throughput",
            f"{c['handler_per_s']:.0f} receipts/s vs floor {c['floor_per_s']:.0f}/s = "
            f"**{f['callbacks_ratio']:.2f}**",
            "≥ 0.85",
            _goal(f["callbacks_ratio"] >= 0.85),
        )
    )
    lanes = r["lanes"]
    for provider, goal in (("clubtexting", 0.8), ("textinghouse", 0.8), ("grouptexting", 0.85)):
        lane = lanes["lanes"][provider]
        rows.append(
            (
                f"L1 Lane throughput {provider}",
                f"{lane['msgs_per_s']:.1f} msg/s vs ceiling {lane['concurrency']} x "
                f"{lane['per_invocation']} / {lanes['latency_s'] * 1000:.0f} ms = "
                f"{lane['ceiling_msgs_per_s']:.0f} msg/s: **{lane['ratio']:.2f}**",
                f"≥ {goal}",
                _goal(lane["ratio"] >= goal),
            )
        )
    rows.append(
        (
            "L1 TextingHouse lane, concurrency 1 → 2",
            f"{lanes['textinghouse_doubled']['msgs_per_s']:.1f} msg/s: "
            f"**{f['concurrency_scaling_textinghouse']:.2f}x**",
            "≥ 1.7x (until the CPUs are the limit)",
            _goal(f["concurrency_scaling_textinghouse"] >= 1.7),
        )
    )
    rows.append(
        (
            "L2 Group Texting simultaneous connections (lane + credit check + CLI call)",
            f"peak **{f['grouptexting_peak_connections']}**, HTTP 503 {f['gateway_503s']}",
            "≤ 2, 0",
            _goal(f["grouptexting_peak_connections"] <= 2 and f["gateway_503s"] == 0),
        )
    )
    iso = lanes["isolation"]
    rows.append(
        (
            "L3 Isolation: Club Texting + TextingHouse drain with Group Texting hanging",
            f"{iso['hung_s']:.1f} s vs {iso['calm_s']:.1f} s ({iso['messages']} messages) = "
            f"**{f['isolation_ratio']:.2f}x**",
            "≤ 1.1x",
            _goal(f["isolation_ratio"] <= 1.1),
        )
    )
    rows.append(
        (
            "L4 CPU per sent message (send handler's process)",
            f"{s['cpu_ms_per_message_handler']:.1f} ms vs floor "
            f"{s['cpu_ms_per_message_floor']:.1f} ms = **{f['cpu_per_message_ratio']:.2f}x**",
            "≤ 1.2x",
            _goal(f["cpu_per_message_ratio"] <= 1.2),
        )
    )
    norm = r["normalised"]
    rows.append(
        (
            "1/6 Ratios if every DynamoDB request cost the floor's median (moto-neutral)",
            f"sender {norm['sender_ratio_equal_aws_latency']:.2f}, "
            f"callbacks {norm['callbacks_ratio_equal_aws_latency']:.2f}",
            "(info)",
            "—",
        )
    )
    cost = r["cost"]
    rows.append(
        (
            "7 Cost / million messages (+1 receipt each)",
            f"**${cost['usd_per_million_messages']:.2f}** ("
            + ", ".join(f"{k} ${v:.2f}" for k, v in cost["parts_usd"].items())
            + ")",
            "—",
            "—",
        )
    )
    lines = [
        "| figure | measured | goal | |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {g} | {ok} |" for a, b, g, ok in rows),
        "",
        f"Command: `{r['command']}` — N = {r['n']} in {r['rounds']} alternating rounds; "
        f"bench runtime {r['runtime_s']:.0f} s.",
        f"Machine: {m['cpu_count']} CPUs, Python {m['python']}, {m['platform']}, "
        f"load average at start {m['load_avg_at_start'][0]:.2f}.",
        f"moto server patch: {r.get('moto_patch')}.",
        "",
        "Cost assumptions: " + "; ".join(f"{k}: {v}" for k, v in cost["assumptions"].items()),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench")
    sub = parser.add_subparsers(dest="cmd")
    worker = sub.add_parser("worker")
    worker.add_argument(
        "kind", choices=["send", "callbacks", "cold", "profile", "lanes", "isolation"]
    )
    worker.add_argument("--latency", type=float, default=0.2)
    worker.add_argument("--stack", default="{}")
    worker.add_argument("--n", type=int, default=2000)
    worker.add_argument("--rounds", type=int, default=4)
    worker.add_argument("--warm", type=int, default=50)
    worker.add_argument("--ids", default="")
    worker.add_argument("--kind", dest="cold_kind", default="floor")
    worker.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--moto-deepcopy",
        action="store_true",
        help="keep moto's deep copy of whole tables per TransactWriteItems (O(table size))",
    )
    parser.add_argument("--out-dir", default=str(RESULTS))
    parser.add_argument("--lane-n", type=int, default=300, help="messages per lane run")
    parser.add_argument("--lane-latency-ms", type=float, default=200.0)
    parser.add_argument(
        "--lanes-only",
        action="store_true",
        help="run only the lanes section, into the figures of the last full run",
    )
    args = parser.parse_args(argv)
    if args.lanes_only:
        return lanes_only(Path(args.out_dir), args.lane_n, args.lane_latency_ms / 1000)
    if args.cmd == "worker":
        if args.kind == "send":
            out = worker_send(args.n, args.rounds, args.warm)
        elif args.kind == "callbacks":
            out = worker_callbacks(args.n, args.rounds, args.warm, args.ids)
        elif args.kind == "profile":
            out = worker_profile(args.n, args.out + ".prof")
        elif args.kind == "lanes":
            from benchmarks.lanes import worker_lanes

            out = worker_lanes(args.n, args.latency, args.stack)
        elif args.kind == "isolation":
            from benchmarks.lanes import worker_isolation

            out = worker_isolation(args.n, args.stack)
        else:
            out = worker_cold(args.cold_kind)
        Path(args.out).write_text(json.dumps(out))
        return 0
    result = run_bench(
        args.n,
        args.rounds,
        args.cold_runs,
        not args.no_profile,
        not args.moto_deepcopy,
        args.lane_n,
        args.lane_latency_ms / 1000,
    )
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    md = to_markdown(result)
    (out_dir / "latest.md").write_text(md)
    print(md)
    if result.get("profile"):
        print("send handler profile (top by own time):")
        print(result["profile"]["tottime"][:6000])
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The servers' per-connection threads (moto server, simulators) are not daemons: a
    # kept-alive connection's thread would hold the interpreter open after everything ran.
    os._exit(code)
