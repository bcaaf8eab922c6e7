"""Least privilege, derived from what each function really calls.

Each function's handler runs over representative paths (SCENARIOS below) under moto, in
process, while a botocore event hook records every AWS API call the process makes. Each call
becomes the IAM action(s) and resource ARN(s) it needs (`needs`), and that is compared with
the function's statements in template.yaml, both ways:

- a recorded call that no statement allows (action and resource) fails: missing permission;
- a granted action that no recorded call uses on one of its statement's resources fails:
  unused permission (so an action used on one table does not excuse it on another
  statement's), unless NOT_RECORDABLE lists it for that function, with the reason no test
  can reach it.

Some permissions follow from a call rather than being a call of their own, and are derived,
not listed: `iam:PassRole` on the role a schedule is created with, and `kms:Decrypt` /
`kms:GenerateDataKey` on the customer key (`KmsKeyArn`) for every call on a table or queue
that key encrypts (DynamoDB and SQS call KMS for the caller; moto does not). So a function
that touches encrypted data must be in DataKeyPolicy's roles, and one that does not must not.

Event sources: SAM adds the poller's permissions (SQS receive/delete, DynamoDB stream reads)
to the function's role itself, outside `Policies`; Lambda's poller uses them, not the handler,
so they are neither read from `Policies` nor recorded here. Granting them again in `Policies`
shows as unused.

Static checks stay: no "*" action or resource, no NotAction/NotResource, inline statements
only, every resource named through this stack's own resources (Ref / GetAtt / Sub of a
template resource), and no function may scan or bulk-delete.

ADDING A FUNCTION OR A PERMISSION: write (or extend) its scenario below with `@scenario(
"<LogicalId>")`: run the handler on the path that makes the new call (`paths.invoke`, an
events/ sample via `paths.sample`, the send queue via `paths.send`). A call the recorder cannot
map yet fails with "teach needs()": add the service to `needs`. Only a permission that no test
can reach (e.g. one used by the Lambda service for the function) goes into NOT_RECORDABLE.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.handlers import BUILTIN_HANDLERS
from conftest import CALLBACK_TOKEN, LambdaContext, load_function
from sqs_source import poll_once, send_bodies

from smsgate.store import Transition
from smsgate_local.stack import _Resolver, function_ids, load_template

EVENTS = Path(__file__).parent.parent / "events"
FR, FR2, US = "+33612345678", "+33698765432", "+12125550111"
SUNDAY_NOON = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)

# function -> granted action -> why no test can record it. Keep it small: every entry must be
# granted and must stay unrecorded (both checked).
NOT_RECORDABLE: dict[str, dict[str, str]] = {
    "EventsFunction": {
        "kms:Decrypt": "Lambda's stream poller reads the encrypted tables' streams with the "
        "function's role (DataKeyPolicy); the handler only puts events",
        "kms:GenerateDataKey": "Lambda sends a failed batch's position to the encrypted "
        "EventsDeadLetterQueue (OnFailure) with the function's role",
        # Its own role (EventsFunctionRole) grants what SAM's managed policy would, on the
        # two streams only; Lambda's event source mappings use them, never the handler.
        "dynamodb:DescribeStream": "the stream event source mappings (Lambda)",
        "dynamodb:GetRecords": "the stream event source mappings (Lambda)",
        "dynamodb:GetShardIterator": "the stream event source mappings (Lambda)",
        "dynamodb:ListStreams": "the stream event source mappings (Lambda)",
        "sqs:SendMessage": "the mappings' OnFailure destination, EventsDeadLetterQueue (Lambda)",
    },
}

# Calls that need no permission.
FREE = {"sts:GetCallerIdentity"}
# botocore's signing name -> IAM service prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch"}
# Batch operations authorised by the single-item action.
SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
# TransactWriteItems / TransactGetItems have no IAM action: each item needs its own.
TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
SCAN_OR_BULK = {"dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:DeleteTable"}


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class Raw:
    service: str  # IAM prefix
    operation: str
    params: dict[str, Any]
    region: str


class Recorder:
    """A botocore `before-parameter-build` handler: while `recording()`, keeps every call."""

    def __init__(self) -> None:
        self.calls: list[Raw] = []
        self.active = False
        self._lock = threading.Lock()

    def __call__(self, params: dict[str, Any], model: Any, context: Any = None, **_: Any) -> None:
        if not self.active:
            return
        signing = model.service_model.signing_name
        region = str((context or {}).get("client_region") or "us-east-1")
        raw = Raw(IAM_PREFIX.get(signing, signing), model.name, copy.deepcopy(params), region)
        with self._lock:
            self.calls.append(raw)

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False


RECORDER = Recorder()
# Registered as moto registers its own stub: every botocore session created from here on
# (boto3's default session, the session each Powertools parameter provider makes) copies
# BUILTIN_HANDLERS, so the clients the layer creates lazily are recorded too. The `stack`
# fixture empties the layer's client caches, so each scenario's clients are new ones.
BUILTIN_HANDLERS.append(("before-parameter-build", RECORDER))
if boto3.DEFAULT_SESSION is not None:  # created before this module: register there too
    boto3.DEFAULT_SESSION.events.register("before-parameter-build", RECORDER)


@dataclass(frozen=True)
class Need:
    action: str
    resource: str | None  # None: checked by action only (the customer key is not in moto)


def needs(raw: Raw, account: str, secrets: dict[str, str]) -> list[Need]:
    """The IAM action(s) and resource(s) one recorded call needs."""
    s, op, p, region = raw.service, raw.operation, raw.params, raw.region
    if f"{s}:{op}" in FREE:
        return []
    arn = f"arn:aws:{s}:{region}:{account}"
    if s == "dynamodb":

        def table(name: str, index: str | None = None) -> str:
            base = name if name.startswith("arn:") else f"{arn}:table/{name}"
            return f"{base}/index/{index}" if index else base

        if op in ("TransactWriteItems", "TransactGetItems"):
            return [
                Need(f"dynamodb:{TRANSACT[kind]}", table(body["TableName"]))
                for item in p["TransactItems"]
                for kind, body in item.items()
            ]
        if op in ("BatchGetItem", "BatchWriteItem"):
            return [Need(f"dynamodb:{op}", table(name)) for name in p["RequestItems"]]
        if "TableName" in p:
            return [Need(f"dynamodb:{op}", table(p["TableName"], p.get("IndexName")))]
    if s == "secretsmanager" and "SecretId" in p:
        secret = p["SecretId"]
        return [Need(f"secretsmanager:{op}", secrets.get(secret, secret))]
    if s == "ssm":
        names = p.get("Names") or [p.get("Name") or p.get("Path")]
        return [Need(f"ssm:{op}", f"{arn}:parameter/{str(n).lstrip('/')}") for n in names]
    if s == "sqs" and "QueueUrl" in p:
        _, queue_account, name = urlsplit(p["QueueUrl"]).path.split("/")
        return [
            Need(f"sqs:{SQS_BATCH.get(op, op)}", f"arn:aws:sqs:{region}:{queue_account}:{name}")
        ]
    if s == "scheduler" and "Name" in p:
        group = p.get("GroupName") or "default"
        out = [Need(f"scheduler:{op}", f"{arn}:schedule/{group}/{p['Name']}")]
        role = (p.get("Target") or {}).get("RoleArn")
        if role:  # handing a role to a service needs iam:PassRole on it (never a call)
            out.append(Need("iam:PassRole", role))
        return out
    if s == "events" and op == "PutEvents":
        buses = {str(e.get("EventBusName") or "default") for e in p["Entries"]}
        return [
            Need("events:PutEvents", b if b.startswith("arn:") else f"{arn}:event-bus/{b}")
            for b in sorted(buses)
        ]
    raise AssertionError(f"teach needs() the resource of {s}:{op} ({sorted(p)})")


# --------------------------------------------------------------------------- the template


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(template: dict[str, Any], fid: str) -> Iterator[dict[str, Any]]:
    """The function's own statements (or its explicit role's inline ones), and those of
    AWS::IAM::Policy resources attached to its role (SAM names it <LogicalId>Role),
    whatever their Condition."""
    props = template["Resources"][fid]["Properties"]
    if "Role" in props:
        role_id = props["Role"]["Fn::GetAtt"][0]
        assert role_id == f"{fid}Role", f"{fid}: name its own role {fid}Role"
        for policy in template["Resources"][role_id]["Properties"].get("Policies", []):
            yield from _expand(policy["PolicyDocument"]["Statement"])
    for policy in props.get("Policies", []):
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"{fid}: write inline statements, not SAM policy templates or managed policies: "
            f"{policy}"
        )
        yield from _expand(policy["Statement"])
    for res in template["Resources"].values():
        if res.get("Type") == "AWS::IAM::Policy" and {"Ref": f"{fid}Role"} in as_list(
            res["Properties"].get("Roles", [])
        ):
            yield from _expand(res["Properties"]["PolicyDocument"]["Statement"])


def _expand(items: Any) -> Iterator[dict[str, Any]]:
    for statement in as_list(items):
        if isinstance(statement, dict) and "Fn::If" in statement:
            _cond, yes, no = statement["Fn::If"]
            yield from (s for s in (yes, no) if s != {"Ref": "AWS::NoValue"})
        else:
            yield statement


def granted_actions(template: dict[str, Any], fid: str) -> set[str]:
    return {a for s in statements(template, fid) for a in as_list(s["Action"])}


def _pattern(resource: str) -> re.Pattern[str]:
    """An IAM resource with `*` / `?` wildcards as a regular expression."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in resource)
    return re.compile("".join(parts) + r"\Z")


@dataclass
class Rule:
    """One statement, its resources resolved against the moto stack."""

    name: str
    actions: set[str]
    resources: list[str]

    def allows(self, need: Need, resource: str | None = None) -> bool:
        """`need` is allowed here (on `resource`, when given: one of this rule's)."""
        names = [resource] if resource else self.resources
        return need.action in self.actions and (
            need.resource is None or any(_pattern(r).match(need.resource) for r in names)
        )


def rules(template: dict[str, Any], fid: str, stack: Any) -> list[Rule]:
    """A resource that resolves to "" (the unset KmsKeyArn) matches no ARN."""
    resolver = _Resolver(template, stack.refs, stack.attrs)
    out = []
    for n, s in enumerate(statements(template, fid)):
        resources = [str(resolver.resolve(r)) for r in as_list(s["Resource"])]
        name = s.get("Sid") or f"statement {n}"
        out.append(Rule(name, set(as_list(s["Action"])), [r for r in resources if r]))
    return out


def encrypted_arns(template: dict[str, Any], stack: Any) -> list[str]:
    """ARNs of the tables and queues the customer key (KmsKeyArn) encrypts when it is set."""
    uses_key = {
        lid
        for lid, res in template["Resources"].items()
        if res.get("Type") in ("AWS::DynamoDB::Table", "AWS::SQS::Queue")
        and '{"Ref": "KmsKeyArn"}' in json.dumps(res.get("Properties", {}))
    }
    return [stack.attrs[(lid, "Arn")] for lid in sorted(uses_key) if (lid, "Arn") in stack.attrs]


# --------------------------------------------------------------------------- scenarios


@dataclass
class Paths:
    """What a scenario drives a handler with; only `invoke` (and what it calls) records."""

    stack: Any
    sims: Any
    handlers: dict[str, Any] = field(default_factory=dict)

    def handler(self, name: str) -> Callable[..., Any]:
        if name not in self.handlers:
            self.handlers[name] = load_function(name).lambda_handler
        return self.handlers[name]

    def invoke(self, name: str, event: dict[str, Any], remaining_ms: int = 30_000) -> Any:
        with RECORDER.recording():
            return self.handler(name)(event, LambdaContext(remaining_ms))

    def sample(self, name: str, **changes: Any) -> dict[str, Any]:
        """events/<name>.json with the test's callback token; `changes` replace top-level
        keys (`body` may be given as a dict)."""
        event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
        if "pathParameters" in event:
            event["pathParameters"]["token"] = CALLBACK_TOKEN
            event["path"] = event["path"].replace("REPLACE_WITH_CALLBACK_TOKEN", CALLBACK_TOKEN)
        for key, value in changes.items():
            event[key] = json.dumps(value) if key == "body" and isinstance(value, dict) else value
        return event

    def send(self, bodies: list[Any], remaining_ms: int = 30_000) -> Any:
        """Put bodies on the send queue and run one poll of the send function over them
        (the poller's own receive/delete are Lambda's, outside the recording)."""
        url, arn = self.stack.queues["SendQueue"], self.stack.queue_arns["SendQueue"]
        send_bodies(url, bodies)
        return poll_once(url, arn, lambda e, c: self.invoke("send", e, remaining_ms))[1]

    @property
    def store(self) -> Any:
        from smsgate import wiring

        return wiring.store()


Scenario = Callable[[Paths], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fid: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        assert fid not in SCENARIOS, f"one scenario per function: {fid}"
        SCENARIOS[fid] = fn
        return fn

    return register


def sent(paths: Paths, message_id: str, to: str, status: Any = None) -> None:
    """An outbound message already sent (set-up: not recorded)."""
    from smsgate.status import Status

    store = paths.store
    claim = store.claim(message_id, {"direction": "out", "provider": "textinghouse", "to": to,
                                     "text": "x"}, 30)  # fmt: skip
    store.advance(message_id, Transition(status or Status.SENT, source="send", lease=claim.lease,
        attrs={"provider_message_id": f"api-{message_id}"}))  # fmt: skip


@scenario("SendFunction")
def send_paths(paths: Paths) -> None:
    from smsgate import wiring

    paths.store.add_opt_out(FR2, "manual")
    paths.send([
        {"id": "s1", "to": FR, "text": "hello"},  # sent: claim + advance
        {"id": "s2", "to": FR2, "text": "hello"},  # opted out: failed
        {"to": US, "text": 5},  # invalid body: failed without a claim
    ])  # fmt: skip
    paths.send([{"id": "s1", "to": FR, "text": "hello"}])  # a duplicate: the claim is lost
    paths.sims.textinghouse.force_answer("<html>proxy error</html>", status=502, times=1)
    paths.send([{"id": "s3", "to": FR, "text": "hello"}])  # retried: visibility back-off
    wiring.send_service().clock = lambda: SUNDAY_NOON
    paths.send([{"id": "s4", "to": FR, "text": "promo STOP sms-s.top", "commercial": True}])  # held
    paths.send([{"cancel": "s4"}])  # cancelled while held: its schedule deleted
    paths.sims.textinghouse.force_answer("ERR: 104 | Insufficient credit", times=1)
    paths.send([{"id": "s5", "to": FR, "text": "credit"}])  # 104: TextingHouse marked unhealthy
    paths.send([{"id": "s6", "to": FR, "text": "waits"}])  # no healthy provider: re-queued
    paths.send([  # routed to the other lanes; Group Texting through a connection slot
        {"id": "s7", "to": US, "text": "ct", "provider": "clubtexting"},
        {"id": "s8", "to": US, "text": "gt", "provider": "grouptexting"},
    ])  # fmt: skip


@scenario("CallbacksFunction")
def callback_paths(paths: Paths) -> None:
    from smsgate.status import Status

    sent(paths, "o1", FR)
    sent(paths, "o2", FR, Status.UNKNOWN)
    dlr = "callbacks_textinghouse_dlr"
    for body in (
        {"apimsgid": "api-o1", "climsgid": "o1", "status": "3"},  # receipt by our id
        {"apimsgid": "api-o1", "climsgid": "o1", "status": "3"},  # repeated: ignored (GetItem)
        {"apimsgid": "api-o2", "climsgid": "", "status": "3"},  # by the provider's id (index)
        {"apimsgid": "nobody", "climsgid": "", "status": "3"},  # unmatched: kept
    ):
        assert paths.invoke("callbacks", paths.sample(dlr, body=body))["statusCode"] == 200
    mo = "callbacks_textinghouse_mo"
    for text in ("STOP", "START"):  # opt-out, then opt-in (deletes it)
        body = {"apimsgid": "", "climsgid": "", "from": FR.lstrip("+"), "txt": text, "date": ""}
        assert paths.invoke("callbacks", paths.sample(mo, body=body))["statusCode"] == 200
    for name in ("callbacks_clubtexting_keyword", "callbacks_grouptexting_inbox"):  # keyword reply
        assert paths.invoke("callbacks", paths.sample(name))["statusCode"] == 200


@scenario("CreditCheckFunction")
def credit_check_paths(paths: Paths) -> None:
    paths.sims.textinghouse.account().credit = 0  # no credit: marked (cool-down from the rules)
    paths.invoke("credit_check", paths.sample("credit_check"))


@scenario("ReconcileFunction")
def reconcile_paths(paths: Paths) -> None:
    from smsgate import wiring
    from smsgate.status import Status

    wiring.reconcile_service.cache_clear()
    sent(paths, "r1", FR)  # TextingHouse answers the lookup: settled (advance + history)
    sent(paths, "r2", FR2, Status.UNKNOWN)
    paths.sims.textinghouse.force_answer("ERR: 202 | not found", times=1)  # stop_reconciling
    old = {":old": {"S": "2020-01-01T00:00:00.000000Z"}}
    for mid in ("r2", "r1"):
        boto3.client("dynamodb").update_item(
            TableName=paths.stack.tables["MessagesTable"], Key={"id": {"S": mid}},
            UpdateExpression="SET pending_at = :old", ExpressionAttributeValues=old,
        )  # fmt: skip
    paths.invoke("reconcile", paths.sample("reconcile"))
    wiring.reconcile_service.cache_clear()


@scenario("RetentionFunction")
def retention_paths(paths: Paths) -> None:
    from smsgate.status import Status
    from smsgate.store import now_iso

    record = {"direction": "in", "provider": "textinghouse", "from": US, "text": "hi",
              "created_at": now_iso()}  # fmt: skip
    assert paths.store.advance("in1", Transition(Status.RECEIVED, source="mo", create=record))
    boto3.client("dynamodb").update_item(  # due now
        TableName=paths.stack.tables["MessagesTable"], Key={"id": {"S": "in1"}},
        UpdateExpression="SET text_expires_at = :due",
        ExpressionAttributeValues={":due": {"S": "2020-01-01T00:00:00.000000Z"}},
    )  # fmt: skip
    assert paths.invoke("retention", paths.sample("retention"))["stripped"] == 1


@scenario("EventsFunction")
def events_paths(paths: Paths) -> None:
    from smsgate import wiring

    wiring.event_publisher.cache_clear()  # a new client, made while recording
    text = (EVENTS / "events_stream.json").read_text()  # a status, an inbound, an opt-out
    for lid in ("MessagesTable", "OptOutsTable"):
        text = text.replace(f"table/smsgate-{lid}/", f"table/{paths.stack.tables[lid]}/")
    assert paths.invoke("events", json.loads(text)) == {"batchItemFailures": []}
    wiring.event_publisher.cache_clear()


# --------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@dataclass
class Recorded:
    needs: list[Need]
    encrypted: bool  # some call touched a table or queue the customer key encrypts


def record(fid: str, stack: Any, sims: Any, template: dict[str, Any]) -> Recorded:
    RECORDER.calls.clear()
    SCENARIOS[fid](Paths(stack, sims))
    account = boto3.client("sts").get_caller_identity()["Account"]
    secrets = {f"{stack.prefix}-{lid}": arn for lid, arn in stack.secret_arns.items()}
    found = [n for raw in RECORDER.calls for n in needs(raw, account, secrets)]
    assert found, f"{fid}: the scenario recorded no AWS call at all"
    keyed = encrypted_arns(template, stack)
    encrypted = any(
        n.resource and any(n.resource == a or n.resource.startswith(a + "/") for a in keyed)
        for n in found
    )
    if encrypted:  # DynamoDB / SQS use the customer key for the caller
        found += [Need("kms:Decrypt", None), Need("kms:GenerateDataKey", None)]
    return Recorded(found, encrypted)


def test_stream_consumers_have_their_own_role(template: dict[str, Any]) -> None:
    """SAM's generated role for a DynamoDB or Kinesis event source attaches a managed policy
    that reads every stream in the account (Resource "*"): such a function names its own."""
    for fid in function_ids(template):
        props = template["Resources"][fid]["Properties"]
        kinds = {e.get("Type") for e in props.get("Events", {}).values()}
        if kinds & {"DynamoDB", "Kinesis"}:
            assert "Role" in props and "Policies" not in props, fid
            role = template["Resources"][f"{fid}Role"]["Properties"]
            managed = {json.dumps(arn) for arn in role.get("ManagedPolicyArns", [])}
            assert all("AWSLambdaBasicExecutionRole" in m or "XRay" in m for m in managed), fid


def test_every_function_has_a_scenario(template: dict[str, Any]) -> None:
    assert set(function_ids(template)) == set(SCENARIOS)
    assert set(NOT_RECORDABLE) <= set(SCENARIOS)


@pytest.mark.parametrize("fid", sorted(SCENARIOS))
def test_granted_permissions_are_exactly_the_recorded_ones(
    stack: Any, sims: Any, template: dict[str, Any], fid: str
) -> None:
    recorded = record(fid, stack, sims, template)
    statements_ = rules(template, fid, stack)
    missing = sorted(
        {
            f"{n.action} on {n.resource}"
            for n in recorded.needs
            if not any(rule.allows(n) for rule in statements_)
        }
    )
    assert not missing, f"{fid}: recorded calls no statement allows: {missing}"

    used = {n.action for n in recorded.needs}
    granted = granted_actions(template, fid)
    excused = NOT_RECORDABLE.get(fid, {})
    unused = sorted(
        f"{action} ({rule.name})"
        for rule in statements_
        for action in rule.actions - set(excused)
        if not any(rule.allows(n) for n in recorded.needs if n.action == action)
    )
    assert not unused, (
        f"{fid}: granted but never called on its paths: {unused}. Remove them, or extend "
        f"its scenario to the path that calls them (event-source permissions come from SAM)."
    )
    idle = sorted(
        f"{resource} ({rule.name})"
        for rule in statements_
        if not rule.actions & set(excused)
        for resource in rule.resources
        if not any(n.resource and rule.allows(n, resource) for n in recorded.needs)
    )
    assert not idle, f"{fid}: resources no recorded call of the statement uses: {idle}"
    assert not set(excused) - granted, f"{fid}: NOT_RECORDABLE lists what is not granted"
    assert not set(excused) & used, f"{fid}: NOT_RECORDABLE lists what is recorded"


def test_the_recorder_sees_clients_created_inside_the_layer(stack: Any) -> None:
    """The hook reaches clients made after it was installed, in any session: boto3's
    default one and a Powertools provider's own (as the layer creates them, lazily)."""
    from aws_lambda_powertools.utilities import parameters

    RECORDER.calls.clear()
    with RECORDER.recording():
        boto3.client("dynamodb").describe_limits()
        parameters.get_secret(stack.secret_arn, max_age=0)
    assert [(c.service, c.operation) for c in RECORDER.calls] == [
        ("dynamodb", "DescribeLimits"),
        ("secretsmanager", "GetSecretValue"),
    ]
    assert RECORDER.calls[1].params["SecretId"] == stack.secret_arn
    boto3.client("dynamodb").describe_limits()  # outside `recording()`: not kept
    assert len(RECORDER.calls) == 2


def test_needs_maps_calls_to_iam(stack: Any) -> None:
    """The mapping's less obvious rules, on calls as botocore sees them."""
    acct, r = "123456789012", "us-east-1"
    tx = Raw("dynamodb", "TransactWriteItems", {"TransactItems": [
        {"Update": {"TableName": "m"}}, {"Put": {"TableName": "s"}},
        {"ConditionCheck": {"TableName": "m"}}]}, r)  # fmt: skip
    assert needs(tx, acct, {}) == [
        Need("dynamodb:UpdateItem", f"arn:aws:dynamodb:{r}:{acct}:table/m"),
        Need("dynamodb:PutItem", f"arn:aws:dynamodb:{r}:{acct}:table/s"),
        Need("dynamodb:ConditionCheckItem", f"arn:aws:dynamodb:{r}:{acct}:table/m"),
    ]
    query = Raw("dynamodb", "Query", {"TableName": "m", "IndexName": "ByPhone"}, r)
    assert needs(query, acct, {}) == [
        Need("dynamodb:Query", f"arn:aws:dynamodb:{r}:{acct}:table/m/index/ByPhone")
    ]
    batch = Raw("sqs", "SendMessageBatch", {"QueueUrl": f"https://x/{acct}/q", "Entries": []}, r)
    assert needs(batch, acct, {}) == [Need("sqs:SendMessage", f"arn:aws:sqs:{r}:{acct}:q")]
    hold = Raw("scheduler", "CreateSchedule", {"Name": "h", "GroupName": "g",
                                               "Target": {"RoleArn": "arn:role"}}, r)  # fmt: skip
    assert needs(hold, acct, {}) == [
        Need("scheduler:CreateSchedule", f"arn:aws:scheduler:{r}:{acct}:schedule/g/h"),
        Need("iam:PassRole", "arn:role"),
    ]
    param = Raw("ssm", "GetParameter", {"Name": "/stack/keyword-replies"}, r)
    assert needs(param, acct, {}) == [
        Need("ssm:GetParameter", f"arn:aws:ssm:{r}:{acct}:parameter/stack/keyword-replies")
    ]
    with pytest.raises(AssertionError, match="teach needs"):
        needs(Raw("kinesis", "PutRecord", {"StreamName": "x"}, r), acct, {})


def test_resource_patterns_match_as_iam_does() -> None:
    index = _pattern("arn:aws:dynamodb:us-east-1:1:table/m/index/*")
    assert index.match("arn:aws:dynamodb:us-east-1:1:table/m/index/ByPhone")
    assert not index.match("arn:aws:dynamodb:us-east-1:1:table/m")
    assert not _pattern("arn:aws:dynamodb:us-east-1:1:table/m").match(
        "arn:aws:dynamodb:us-east-1:1:table/m/index/ByPhone"
    )


@pytest.mark.parametrize("fid", function_ids(load_template()))
def test_no_wildcard_and_only_this_stacks_resources(template: dict[str, Any], fid: str) -> None:
    own = set(template["Resources"]) | {"KmsKeyArn"}  # the customer key is a parameter
    for s in statements(template, fid):
        assert s["Effect"] == "Allow" and "NotResource" not in s and "NotAction" not in s, s
        assert not any(a == "*" or a.endswith(":*") for a in as_list(s["Action"])), s
        for resource in as_list(s["Resource"]):
            assert resource != "*" and isinstance(resource, dict), (
                f"{fid}: name a resource of this stack (Ref / GetAtt / Sub), not {resource!r}"
            )
            named = _named(resource)
            assert named and named <= own, f"{fid}: {resource} names {named or 'nothing'}"


def _named(value: dict[str, Any]) -> set[str]:
    """The template resources (or parameters) a Ref / GetAtt / Sub names."""
    if "Ref" in value:
        return {value["Ref"]}
    if "Fn::GetAtt" in value:
        return {value["Fn::GetAtt"][0]}
    if "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        names = {v.split(".")[0] for v in re.findall(r"\$\{([^}!]+)\}", text)}
        return {n for n in names if not n.startswith("AWS::")}
    return set()


def test_no_function_may_scan_or_delete_tables(template: dict[str, Any]) -> None:
    """Scans and bulk deletion (the CLI's `messages`, `optouts list`, `erase`, `retention
    --backfill`) run with the operator's credentials, never a function's."""
    for fid in function_ids(template):
        assert not granted_actions(template, fid) & SCAN_OR_BULK, fid


def test_customer_key_policy_names_only_the_key(template: dict[str, Any]) -> None:
    policy = template["Resources"]["DataKeyPolicy"]
    assert policy["Condition"] == "HasKmsKey"
    for s in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert s["Resource"] == {"Ref": "KmsKeyArn"}
