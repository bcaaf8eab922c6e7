"""What the bench and the soak share: AWS (moto server or in-process moto) built from
template.yaml, the provider simulators, the functions loaded as Lambda loads them, Lambda's
events and context, and AWS request counting with botocore event hooks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smsgate_local.harness import (  # noqa: F401 - bench and soak import them from here
    PATCH_NOTE,
    LambdaContext,
    cheap_transaction_snapshots,
    load_function,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CALLBACK_TOKEN = "bench-callback-token-0123456789abcdef"  # noqa: S105 - local only
SIM_USER, SIM_PASS = "smsgate", "local-secret"
PROVIDERS = ("clubtexting", "grouptexting", "textinghouse")
TH_SEND_PATH = "/http/v1/do"

AWS_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "smsgate",
}


def setup_paths() -> None:
    """The layer, the simulators and the local stack importable (as pytest's pythonpath)."""
    for sub in ("layers/smsgate", "sim", "local", "."):
        path = str(ROOT / sub)
        if path not in sys.path:
            sys.path.insert(0, path)


def aws_env() -> None:
    """Dummy credentials before boto3 is used anywhere: nothing reaches real AWS."""
    os.environ.update(AWS_ENV)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_DEFAULT_PROFILE", None)


def secret() -> dict[str, Any]:
    creds = {"user": SIM_USER, "pass": SIM_PASS}
    return {p: dict(creds) for p in PROVIDERS} | {"callback_token": CALLBACK_TOKEN}


def clear_caches() -> None:
    """Process-wide caches back to empty, as in a new Lambda instance."""
    from smsgate import wiring

    wiring.new_instance()


def Context() -> LambdaContext:
    """What Lambda passes as `context` in the benchmarks."""
    return LambdaContext(60_000, "smsgate-bench", 128)


def quiet_logs(stream: Any) -> None:
    """smsgate's Logger writes to `stream` (Powertools binds its stream at creation)."""
    from smsgate.observability import logger

    for handler in logger.handlers:
        if hasattr(handler, "setStream"):
            handler.setStream(stream)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """EMF metric lines go to stdout: keep them off the terminal."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


class CallCounter:
    """AWS requests per service and operation, counted with botocore's `before-call` hook."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call", self._hook)
        return client

    def _hook(self, event_name: str, **_: Any) -> None:
        # event_name is "before-call.<service>.<Operation>"
        _, service, operation = event_name.split(".", 2)
        self.calls[f"{service}.{operation}"] += 1

    def total(self, service: str) -> int:
        return sum(n for k, n in self.calls.items() if k.startswith(service + "."))

    def reset(self) -> None:
        self.calls.clear()


# --------------------------------------------------------------------------- events


def lane_arn(provider: str = "textinghouse") -> str:
    """The ARN of a provider's lane queue of the stack in os.environ (its name is the URL's
    last part): a record from there is sent by the send function, not routed."""
    url = os.environ.get(f"{provider.upper()}_LANE_URL", "")
    return f"arn:aws:sqs:us-east-1:123456789012:{url.rsplit('/', 1)[-1] or 'send'}"


def sqs_record(
    body: Any,
    message_id: str | None = None,
    receive_count: int = 1,
    handle: str = "",
    source_arn: str | None = None,
) -> dict[str, Any]:
    """A Lambda SQS record; by default one of the TextingHouse lane's (the sender's path)."""
    text = body if isinstance(body, str) else json.dumps(body)
    mid = message_id or str(uuid.uuid4())
    return {
        "messageId": mid,
        "receiptHandle": handle or f"rh-{mid}",
        "body": text,
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {},
        "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn or lane_arn(),
        "awsRegion": "us-east-1",
    }


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def dlr_event(
    climsgid: str, status: int | str, apimsgid: str = "", token: str = CALLBACK_TOKEN
) -> dict[str, Any]:
    """API Gateway's REST proxy event for a TextingHouse delivery receipt."""
    resource = "/hooks/{token}/textinghouse/dlr"
    path = f"/hooks/{token}/textinghouse/dlr"
    body = json.dumps({"apimsgid": apimsgid, "climsgid": climsgid, "status": str(status)})
    headers = {"Content-Type": "application/json", "Host": "bench.local"}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"token": token},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": "POST",
            "path": f"/v1{path}",
            "stage": "v1",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
            "protocol": "HTTP/1.1",
        },
        "body": body,
        "isBase64Encoded": False,
    }


# --------------------------------------------------------------------------- the stack


@dataclass
class Env:
    """AWS (moto) + simulators + the functions' environment in os.environ."""

    sims: Any
    stack: Any
    endpoint: str | None
    _stops: list[Any] = field(default_factory=list)

    @property
    def table(self) -> dict[str, str]:
        return dict(self.stack.tables)

    def stop(self) -> None:
        for fn in reversed(self._stops):
            with contextlib.suppress(Exception):
                fn()
        self._stops.clear()


def start_env(
    *,
    server: bool,
    read_timeout: float = 5.0,
    connect_timeout: float = 1.0,
    record_limit: int | None = None,
    seed: int = 0,
) -> Env:
    """Start AWS and the simulators. `server=True`: moto server on a thread (Nagle off, as
    the local stack runs it), reached over HTTP through AWS_ENDPOINT_URL; `False`:
    in-process moto (mock_aws), 2-3x faster for DynamoDB."""
    setup_paths()
    aws_env()
    stops: list[Any] = []
    saved = dict(os.environ)

    def restore() -> None:
        os.environ.clear()
        os.environ.update(saved)

    stops.append(restore)
    endpoint = None
    if server:
        from smsgate_local.runtime import MotoServer

        moto = MotoServer("127.0.0.1", 0)
        endpoint = moto.start()
        stops.append(moto.stop)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
    else:
        from moto import mock_aws

        from smsgate_local.harness import serialised_dynamodb

        serialised_dynamodb()  # a sender's workers share it, as DynamoDB orders their writes
        mock = mock_aws()
        mock.start()
        stops.append(mock.stop)
    from smsgate_local.stack import build_stack
    from smsgate_sim import Simulators

    sims = Simulators.start("127.0.0.1", seed=seed, dlr_delay=None, record_limit=record_limit)
    stops.append(sims.stop)
    for sim in sims:  # enough credit for any run (the default account is ours)
        sim.account().credit = 10**9
    stack = build_stack(secret(), sims.urls, prefix="smsgate-bench", endpoint_url=endpoint)
    os.environ.update(stack.env)
    os.environ["PROVIDER_READ_TIMEOUT"] = str(read_timeout)
    os.environ["PROVIDER_CONNECT_TIMEOUT"] = str(connect_timeout)
    clear_caches()
    stops.append(clear_caches)
    return Env(sims, stack, endpoint, stops)


def th_sends(sims: Any) -> list[Any]:
    """TextingHouse send requests the simulator saw (any answer)."""
    return [r for r in sims.textinghouse.requests if r.fields.get("cmd") == "sendsms"]


def accepted_per_id(sims: Any) -> Counter[str]:
    """Accepted TextingHouse sends (`ID:` answers, whether or not the answer reached us)
    per climsgid."""
    counts: Counter[str] = Counter()
    for r in th_sends(sims):
        if r.body.startswith("ID:"):
            counts[r.fields.get("climsgid") or ""] += 1
    return counts


def scan(table: str, client: Any = None) -> list[dict[str, Any]]:
    import boto3

    from smsgate.store import from_item

    db = client or boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = db.scan(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def machine() -> dict[str, Any]:
    import platform

    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "load_avg_at_start": list(os.getloadavg()),
    }


def null_stream() -> io.TextIOBase:
    return open(os.devnull, "w")
