"""The stack's AWS resources, built in moto from template.yaml itself.

Tests and the local stack must not keep their own list of tables, keys, queues or
environment variables: everything here is read from the SAM template, so a change to the
template is a change to the tests.

Usage (in-process)::

    with moto.mock_aws():
        stack = build_stack({"callback_token": "t0ken", "textinghouse": {...}})
        os.environ.update(stack.env)

or against a moto server: ``build_stack(..., endpoint_url="http://127.0.0.1:5000")``.

Physical names are ``<prefix>-<LogicalId>``; the stack name (``AWS::StackName``) is the
prefix. moto applies no SAM transform, so only the plain CloudFormation resources the
functions talk to are created (tables, queues, the secret, SSM parameters, SNS topics,
IAM roles, scheduler groups, event buses); functions, the API, alarms and log groups are not.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

REGION = "us-east-1"
PARTITION = "aws"
ROOT = Path(__file__).resolve().parents[2]  # local/smsgate_local/stack.py -> repository
FUNCTION_TYPE = "AWS::Serverless::Function"

__all__ = [
    "REGION",
    "Stack",
    "build_stack",
    "function_env",
    "function_ids",
    "load_template",
    "resources_of_type",
]


# --------------------------------------------------------------------------- template


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation short tags (!Ref, !Sub, ...) into their
    long JSON forms ({"Ref": ...}, {"Fn::Sub": ...})."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        template = yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(template, dict) or "Resources" not in template:
        raise ValueError(f"{path} is not a CloudFormation template")
    return template


def load_template(path: str | Path = "template.yaml") -> dict[str, Any]:
    """Parse the SAM template (short tags understood). A relative path that does not exist
    from the current directory is taken from the repository root."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = ROOT / p
    p = p.resolve()
    return copy.deepcopy(_load_cached(str(p), p.stat().st_mtime_ns))


def resources_of_type(template: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of a type."""
    return {
        lid: res
        for lid, res in template.get("Resources", {}).items()
        if isinstance(res, dict) and res.get("Type") == type_
    }


def function_ids(template: Mapping[str, Any]) -> list[str]:
    return sorted(resources_of_type(template, FUNCTION_TYPE))


# --------------------------------------------------------------------------- resolving


class _NoValue:
    """AWS::NoValue: the enclosing key or list item disappears."""


_NO_VALUE = _NoValue()
_SUB_VAR = re.compile(r"\$\{([^}]+)\}")


class _Resolver:
    """Evaluates the intrinsic functions the template uses, against the resources built
    in moto. ``refs`` maps a parameter or logical id to what ``Ref`` returns; ``attrs``
    maps ``(logical id, attribute)`` to what ``Fn::GetAtt`` returns."""

    def __init__(
        self,
        template: Mapping[str, Any],
        refs: Mapping[str, Any],
        attrs: Mapping[tuple[str, str], Any],
    ) -> None:
        self.template = template
        self.refs = refs
        self.attrs = attrs
        self._conditions: dict[str, bool] = {}

    # -- conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            expr = self.template.get("Conditions", {}).get(name)
            if expr is None:
                raise KeyError(f"template has no condition {name!r}")
            self._conditions[name] = bool(self.resolve(expr))
        return self._conditions[name]

    def resource_enabled(self, resource: Mapping[str, Any]) -> bool:
        cond = resource.get("Condition")
        return True if cond is None else self.condition(cond)

    # -- values
    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.refs:
            return self.refs[name]
        raise KeyError(f"cannot resolve Ref {name!r}: not a parameter or a resource built in moto")

    def get_att(self, lid: str, attr: str) -> Any:
        try:
            return self.attrs[(lid, attr)]
        except KeyError:
            raise KeyError(f"cannot resolve Fn::GetAtt {lid}.{attr} in moto") from None

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = self.resolve(variables[name])
            elif "." in name and not name.startswith("AWS::"):
                lid, attr = name.split(".", 1)
                value = self.get_att(lid, attr)
            else:
                value = self.ref(name)
            return str(value)

        return _SUB_VAR.sub(repl, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(lid, attr)
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    return self._sub(arg[0], arg[1])
                return self._sub(arg, {})
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(v) for v in self.resolve(items))
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key.startswith("Fn::"):
                raise KeyError(f"{key} is not supported by smsgate_local.stack")
        out = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _NO_VALUE}


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    tables: dict[str, str]  # logical id -> physical name
    queues: dict[str, str]  # logical id -> queue URL
    queue_arns: dict[str, str]  # logical id -> queue ARN
    secret_arn: str
    parameters: dict[str, str]  # logical id of SSM parameters -> name
    env: dict[str, str]  # every function's environment, resolved (union over functions)
    secret_arns: dict[str, str] = field(default_factory=dict)  # logical id -> ARN
    topics: dict[str, str] = field(default_factory=dict)  # logical id -> topic ARN
    roles: dict[str, str] = field(default_factory=dict)  # logical id -> role ARN
    schedule_groups: dict[str, str] = field(default_factory=dict)  # logical id -> name
    buses: dict[str, str] = field(default_factory=dict)  # EventBridge: logical id -> bus name
    streams: dict[str, str] = field(default_factory=dict)  # table logical id -> stream ARN
    # what Ref / Fn::GetAtt return, for function_env(); parameters included
    refs: dict[str, Any] = field(default_factory=dict, repr=False)
    attrs: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    prefix: str = "smsgate-test"
    region: str = REGION


def _parameter_values(
    template: Mapping[str, Any],
    provider_urls: Mapping[str, str] | None,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        if "Default" in spec:
            default = spec["Default"]
            if spec.get("Type") == "CommaDelimitedList" and isinstance(default, str):
                default = [s.strip() for s in default.split(",")]
            params[name] = default
    for name, value in (overrides or {}).items():
        if name not in template.get("Parameters", {}):
            raise KeyError(f"template has no parameter {name!r}")
        params[name] = value
    # Provider URLs: {"clubtexting": url} or {"CLUBTEXTING_URL": url}. Each sets the template
    # parameter the global environment variable of that name refers to.
    global_env = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    global_vars = global_env.get("Variables", {})
    for key, url in (provider_urls or {}).items():
        var = key if key.endswith("_URL") else f"{key.upper()}_URL"
        expr = global_vars.get(var)
        if not (isinstance(expr, dict) and set(expr) == {"Ref"}):
            raise KeyError(f"{var} is not a Globals environment variable set from a parameter")
        params[expr["Ref"]] = url
    return params


@functools.lru_cache(maxsize=1)
def _shared_session() -> boto3.Session:
    """One session for every build in the process: it keeps the service models it has loaded,
    so the next build's clients cost ~5 ms each instead of ~55 ms (a test builds a stack)."""
    return boto3.Session(region_name=REGION)


def _clients(session: boto3.Session | None, endpoint_url: str | None) -> Callable[[str], Any]:
    sess = session or _shared_session()
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = sess.client(service, region_name=REGION, endpoint_url=endpoint_url)
        return cache[service]

    return client


_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "ProvisionedThroughput",
)

_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
)


def _attr_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _create_table(client: Any, name: str, props: Mapping[str, Any]) -> str:
    kwargs: dict[str, Any] = {"TableName": name}
    for key in _TABLE_KEYS:
        if key in props:
            kwargs[key] = copy.deepcopy(props[key])
    if kwargs.get("BillingMode") == "PAY_PER_REQUEST":
        for gsi in kwargs.get("GlobalSecondaryIndexes", []):
            gsi.pop("ProvisionedThroughput", None)
    sse = props.get("SSESpecification")
    if sse:  # CloudFormation says SSEEnabled where the API says Enabled
        kwargs["SSESpecification"] = {
            ("Enabled" if k == "SSEEnabled" else k): v for k, v in sse.items()
        }
    stream = props.get("StreamSpecification")
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **stream}
    arn: str = client.create_table(**kwargs)["TableDescription"]["TableArn"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return arn


def build_stack(
    secret_value: Mapping[str, Any],
    provider_urls: Mapping[str, str] | None = None,
    prefix: str = "smsgate-test",
    session: boto3.Session | None = None,
    endpoint_url: str | None = None,
    *,
    parameter_overrides: Mapping[str, Any] | None = None,
    template: Mapping[str, Any] | None = None,
) -> Stack:
    """Create the template's tables, queues, secret(s), SSM parameters, topics, IAM roles
    and scheduler groups in moto (the caller has ``moto.mock_aws`` active, or passes the
    ``endpoint_url`` of a moto server) and return their names and the functions'
    environment.

    ``secret_value`` is the JSON value of every Secrets Manager secret (provider credentials
    and ``callback_token``); ``provider_urls`` points the providers at simulators
    (``{"textinghouse": "http://127.0.0.1:8003"}``); ``parameter_overrides`` sets other
    template parameters (``{"DefaultProvider": "grouptexting"}``).
    """
    tpl = template if template is not None else load_template()
    client = _clients(session, endpoint_url)
    account = client("sts").get_caller_identity()["Account"]

    refs: dict[str, Any] = {
        "AWS::Region": REGION,
        "AWS::AccountId": account,
        "AWS::Partition": PARTITION,
        "AWS::StackName": prefix,
        "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{account}:stack/{prefix}/0",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
    }
    refs.update(_parameter_values(tpl, provider_urls, parameter_overrides))
    attrs: dict[tuple[str, str], Any] = {}
    resolver = _Resolver(tpl, refs, attrs)
    resources: dict[str, dict[str, Any]] = {
        lid: res
        for lid, res in tpl["Resources"].items()
        if isinstance(res, dict) and resolver.resource_enabled(res)
    }

    def physical(lid: str) -> str:
        return f"{prefix}-{lid}"

    def of_type(type_: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in resources.items() if r.get("Type") == type_}

    # DynamoDB tables
    tables: dict[str, str] = {}
    streams: dict[str, str] = {}
    for lid, res in of_type("AWS::DynamoDB::Table").items():
        name = physical(lid)
        arn = _create_table(client("dynamodb"), name, resolver.resolve(res.get("Properties", {})))
        tables[lid] = refs[lid] = name
        attrs[(lid, "Arn")] = arn
        stream = client("dynamodb").describe_table(TableName=name)["Table"].get("LatestStreamArn")
        if stream:  # StreamSpecification: EventsFunction's event sources read it
            streams[lid] = attrs[(lid, "StreamArn")] = stream

    # SQS queues, dead-letter queues first (a RedrivePolicy names its DLQ's ARN)
    queues: dict[str, str] = {}
    queue_arns: dict[str, str] = {}
    pending = of_type("AWS::SQS::Queue")
    while pending:
        progressed = False
        for lid, res in list(pending.items()):
            try:
                props = resolver.resolve(res.get("Properties", {}))
            except KeyError:
                continue  # refers to a queue not created yet
            attributes = {k: _attr_str(props[k]) for k in _QUEUE_ATTRIBUTES if k in props}
            if "RedrivePolicy" in props:
                attributes["RedrivePolicy"] = _attr_str(props["RedrivePolicy"])
            name = physical(lid) + (".fifo" if props.get("FifoQueue") else "")
            url = client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            queues[lid] = refs[lid] = attrs[(lid, "QueueUrl")] = url
            queue_arns[lid] = attrs[(lid, "Arn")] = arn
            attrs[(lid, "QueueName")] = name
            del pending[lid]
            progressed = True
        if not progressed:
            raise KeyError(f"cannot create queues {sorted(pending)}: unresolvable properties")

    # IAM roles (their ARNs are handed to other services, e.g. EventBridge Scheduler)
    # EventBridge buses (the application events; before the roles that name them)
    buses: dict[str, str] = {}
    for lid, res in of_type("AWS::Events::EventBus").items():
        props = resolver.resolve(res.get("Properties", {}))
        name = props.get("Name") or physical(lid)
        arn = client("events").create_event_bus(Name=name)["EventBusArn"]
        buses[lid] = refs[lid] = attrs[(lid, "Name")] = name
        attrs[(lid, "Arn")] = arn

    roles: dict[str, str] = {}
    for lid, res in of_type("AWS::IAM::Role").items():
        props = resolver.resolve(res.get("Properties", {}))
        role = client("iam").create_role(
            RoleName=physical(lid),
            AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
        )["Role"]
        for policy in props.get("Policies", []):
            client("iam").put_role_policy(
                RoleName=physical(lid),
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )
        roles[lid] = attrs[(lid, "Arn")] = role["Arn"]
        refs[lid] = physical(lid)
        attrs[(lid, "RoleId")] = role["RoleId"]

    # Secrets Manager: every secret gets the caller's value
    secret_arns: dict[str, str] = {}
    for lid, _res in of_type("AWS::SecretsManager::Secret").items():
        arn = client("secretsmanager").create_secret(
            Name=physical(lid), SecretString=json.dumps(dict(secret_value))
        )["ARN"]
        secret_arns[lid] = refs[lid] = attrs[(lid, "Id")] = arn
    if len(secret_arns) != 1:
        raise ValueError(
            f"expected exactly one secret in the template, found {sorted(secret_arns)}"
        )

    # SSM parameters (their names come from the template, e.g. /<stack>/keyword-replies)
    parameters: dict[str, str] = {}
    for lid, res in of_type("AWS::SSM::Parameter").items():
        props = resolver.resolve(res.get("Properties", {}))
        name = props.get("Name") or physical(lid)
        client("ssm").put_parameter(
            Name=name, Value=str(props["Value"]), Type=props.get("Type", "String"), Overwrite=True
        )
        parameters[lid] = refs[lid] = name
        attrs[(lid, "Type")] = props.get("Type", "String")
        attrs[(lid, "Value")] = str(props["Value"])

    # SNS topics
    topics: dict[str, str] = {}
    for lid, _res in of_type("AWS::SNS::Topic").items():
        arn = client("sns").create_topic(Name=physical(lid))["TopicArn"]
        topics[lid] = refs[lid] = attrs[(lid, "TopicArn")] = arn
        attrs[(lid, "TopicName")] = physical(lid)

    # EventBridge Scheduler groups (held commercial messages)
    schedule_groups: dict[str, str] = {}
    for lid, _res in of_type("AWS::Scheduler::ScheduleGroup").items():
        name = physical(lid)
        arn = client("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
        schedule_groups[lid] = refs[lid] = name
        attrs[(lid, "Arn")] = arn

    stack = Stack(
        tables=tables,
        queues=queues,
        queue_arns=queue_arns,
        secret_arn=next(iter(secret_arns.values())),
        parameters=parameters,
        env={},
        secret_arns=secret_arns,
        topics=topics,
        roles=roles,
        schedule_groups=schedule_groups,
        buses=buses,
        streams=streams,
        refs=refs,
        attrs=attrs,
        prefix=prefix,
    )
    for fid in function_ids(tpl):
        stack.env.update(function_env(tpl, fid, stack))
    return stack


def function_env(
    template: Mapping[str, Any], function_logical_id: str, stack: Stack
) -> dict[str, str]:
    """The environment of one function as the deployed stack sets it: the Globals'
    variables merged with the function's own, every Ref/GetAtt/Sub resolved against the
    resources of ``stack``."""
    resource = template["Resources"].get(function_logical_id)
    if resource is None or resource.get("Type") != FUNCTION_TYPE:
        raise KeyError(f"{function_logical_id!r} is not a {FUNCTION_TYPE} in the template")
    global_env = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    own_env = resource.get("Properties", {}).get("Environment", {})
    variables = {**global_env.get("Variables", {}), **own_env.get("Variables", {})}
    resolver = _Resolver(template, stack.refs, stack.attrs)
    resolved = resolver.resolve(variables)
    return {k: _attr_str(v) for k, v in resolved.items()}
