"""The SAM template keeps the rules docs/contract.md and the stack depend on.

`sam validate --lint` runs from the Makefile (it needs the separate SAM CLI venv); cfn-lint
runs here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from smsgate_local.stack import (
    ROOT,
    build_stack,
    function_env,
    function_ids,
    load_template,
    resources_of_type,
)

PROVIDERS = {"clubtexting", "grouptexting", "textinghouse"}

CALLBACK_ROUTES = {
    ("GET", "/hooks/{token}/clubtexting/keyword"),
    ("GET", "/hooks/{token}/clubtexting/inbox"),
    ("GET", "/hooks/{token}/grouptexting/keyword"),
    ("GET", "/hooks/{token}/grouptexting/inbox"),
    ("POST", "/hooks/{token}/textinghouse/dlr"),
    ("POST", "/hooks/{token}/textinghouse/mo"),
}

# docs/contract.md, Environment variables, and the functions' configuration: what every
# function is given.
GLOBAL_ENV = {
    "MESSAGES_TABLE",
    "STATUS_TABLE",
    "OPTOUTS_TABLE",
    "PROVIDER_SECRET",
    "CLUBTEXTING_URL",
    "GROUPTEXTING_URL",
    "TEXTINGHOUSE_URL",
    "DEFAULT_PROVIDER",
    "COMMERCIAL_WINDOWS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "MESSAGE_RETENTION_DAYS",
    "INBOUND_TEXT_RETENTION_DAYS",
}
FUNCTION_ENV = {
    "SendFunction": {
        "SEND_QUEUE_URL",
        "SEND_QUEUE_ARN",
        "HOLD_SCHEDULE_GROUP",
        "HOLD_SCHEDULER_ROLE_ARN",
        "ROUTING_PARAMETER",  # routing rules and provider health
        "HEALTH_TABLE",
        "CLUBTEXTING_LANE_URL",  # the providers' lanes
        "GROUPTEXTING_LANE_URL",
        "TEXTINGHOUSE_LANE_URL",
        "SEND_PARALLELISM",
        "MALLOC_ARENA_MAX",  # the send workers are threads
    },
    "CallbacksFunction": {"KEYWORD_REPLIES_PARAMETER", "HELP_TEXT"},
    "CreditCheckFunction": {"ROUTING_PARAMETER", "HEALTH_TABLE"},  # credit -> provider health
    "ReconcileFunction": {"RECONCILE_AFTER_MINUTES", "RECONCILE_DEADLINE_HOURS"},
    "RetentionFunction": set(),
    "EventsFunction": {"EVENT_BUS_NAME"},
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, type_)


def props(template: dict[str, Any], lid: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][lid].get("Properties", {})
    return props


def global_function(template: dict[str, Any]) -> dict[str, Any]:
    globals_: dict[str, Any] = template.get("Globals", {}).get("Function", {})
    return globals_


def function_setting(template: dict[str, Any], fid: str, key: str) -> Any:
    return props(template, fid).get(key, global_function(template).get(key))


def events(template: dict[str, Any], type_: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(function id, event name, event properties) for every event of a type."""
    for fid in function_ids(template):
        for name, event in props(template, fid).get("Events", {}).items():
            if event["Type"] == type_:
                yield fid, name, event.get("Properties", {})


def getatt_id(value: Any) -> str:
    assert isinstance(value, dict) and "Fn::GetAtt" in value, value
    lid: str = value["Fn::GetAtt"][0]
    return lid


# --------------------------------------------------------------------------- code and build


def test_layer_build_matches_function_architectures(template: dict[str, Any]) -> None:
    layers = resources(template, "AWS::Serverless::LayerVersion")
    assert layers, "the shared smsgate layer is missing"
    runtimes = {function_setting(template, fid, "Runtime") for fid in function_ids(template)}
    archs = {
        arch
        for fid in function_ids(template)
        for arch in function_setting(template, fid, "Architectures") or ["x86_64"]
    }
    assert len(archs) == 1, f"functions disagree on architecture: {archs}"
    (arch,) = archs
    for lid, layer in layers.items():
        meta = layer.get("Metadata", {})
        # the layer's own Makefile: the wheels of the functions' platform, compiled
        assert meta.get("BuildMethod") == "makefile", lid
        assert meta.get("BuildArchitecture") == arch, lid
        makefile = (ROOT / layer["Properties"]["ContentUri"] / "Makefile").read_text()
        platform = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}[arch]
        assert f"PLATFORM ?= {platform}" in makefile, lid
        assert f"build-{lid}:" in makefile, lid
        assert all(r.startswith("python3.11") for r in runtimes), runtimes
        assert layer["Properties"]["CompatibleArchitectures"] == [arch], lid
        assert set(layer["Properties"]["CompatibleRuntimes"]) >= runtimes, lid
    for fid in function_ids(template):
        assert {"Ref": "SmsgateLayer"} in function_setting(template, fid, "Layers"), fid


def test_layer_build_ships_compiled_bytecode(tmp_path: Path) -> None:
    """A layer is read-only at /opt: without bytecode in it, every cold start compiles every
    module again. The layer's build (what `sam build` runs) leaves a .pyc beside each module,
    importable as it is. The requirements are left out here: the same recipe installs them."""
    empty = tmp_path / "requirements.txt"
    empty.write_text("")
    out = tmp_path / "artifacts"
    make = shutil.which("make") or "make"
    subprocess.run(  # noqa: S603 - our own Makefile
        [
            make,
            "-s",
            "-C",
            str(ROOT / "layers" / "smsgate"),
            "build-SmsgateLayer",
            f"ARTIFACTS_DIR={out}",
            f"REQUIREMENTS={empty}",
            f"PYTHON={sys.executable}",
        ],
        check=True,
        capture_output=True,
    )
    modules = sorted((out / "python" / "smsgate").rglob("*.py"))
    assert len(modules) > 10
    for module in modules:
        compiled = module.parent / "__pycache__" / f"{module.stem}.cpython-311.pyc"
        assert compiled.is_file(), compiled
        assert compiled.read_bytes()[4:8] == b"\x01\x00\x00\x00", compiled  # unchecked hash
    # the bytecode is what runs: a source edited after the build does not change the module
    status = out / "python" / "smsgate" / "status.py"
    status.write_text(status.read_text() + "\nEDITED_AFTER_BUILD = True\n")
    probe = subprocess.run(  # the built layer, imported as Lambda would
        [
            sys.executable,
            "-c",
            "import smsgate.status as s; print(hasattr(s, 'EDITED_AFTER_BUILD'))",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(out / "python"), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"


def test_functions_have_their_code_folder_and_handler(template: dict[str, Any]) -> None:
    expected = {
        "SendFunction": "functions/send/",
        "CallbacksFunction": "functions/callbacks/",
        "CreditCheckFunction": "functions/credit_check/",
    }
    for fid, code_uri in expected.items():
        assert props(template, fid)["CodeUri"] == code_uri
        assert function_setting(template, fid, "Handler") == "app.lambda_handler"
    assert props(template, "SmsgateLayer")["ContentUri"] == "layers/smsgate/"
    assert (ROOT / "layers/smsgate/requirements.txt").is_file()


# --------------------------------------------------------------------------- storage


def key_schema(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def test_tables_keys_follow_design(template: dict[str, Any]) -> None:
    # docs/contract.md, Tables
    tables = resources(template, "AWS::DynamoDB::Table")
    assert set(tables) == {"MessagesTable", "StatusTable", "OptOutsTable", "HealthTable"}
    expected = {
        "MessagesTable": [("id", "HASH")],
        "StatusTable": [("message_id", "HASH"), ("at", "RANGE")],
        "OptOutsTable": [("phone", "HASH")],
        "HealthTable": [("provider", "HASH"), ("slot", "RANGE")],  # smsgate.health
    }
    for lid, keys in expected.items():
        p = props(template, lid)
        assert key_schema(p["KeySchema"]) == keys, lid
        types = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
        indexed = {name for name, _ in keys} | {
            k["AttributeName"]
            for gsi in p.get("GlobalSecondaryIndexes", [])
            for k in gsi["KeySchema"]
        }
        assert set(types) == indexed, f"{lid}: AttributeDefinitions must be exactly the keys"
        assert all(t == "S" for t in types.values()), lid
        assert p["BillingMode"] == "PAY_PER_REQUEST", lid

    gsis = {g["IndexName"]: g for g in props(template, "MessagesTable")["GlobalSecondaryIndexes"]}
    assert set(gsis) == {  # tests/test_operations.py; the last two: tests/test_personal_data.py
        "ByProviderMessageId",
        "ByPendingStatus",
        "ByPhone",
        "ByInboundTextExpiry",
    }
    gsi = gsis["ByProviderMessageId"]
    assert key_schema(gsi["KeySchema"]) == [("provider_message_id", "HASH"), ("provider", "RANGE")]
    assert gsi["Projection"] == {"ProjectionType": "ALL"}


def test_tables_are_encrypted_recoverable_and_retained(template: dict[str, Any]) -> None:
    for lid, table in resources(template, "AWS::DynamoDB::Table").items():
        p = table["Properties"]
        assert p["SSESpecification"]["SSEEnabled"] is True, lid
        if lid == "HealthTable":  # minutes of provider counters, rebuilt by the next sends
            assert p["TimeToLiveSpecification"]["AttributeName"] == "expires_at"
            continue
        assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, lid
        assert table.get("DeletionPolicy") == "Retain", lid
        assert table.get("UpdateReplacePolicy") == "Retain", lid


def test_provider_secret_is_generated_never_output(template: dict[str, Any]) -> None:
    import json

    secrets = resources(template, "AWS::SecretsManager::Secret")
    # WebhookKeySecret: only with the optional status webhook (tests/test_events.py)
    assert set(secrets) == {"ProviderSecret", "WebhookKeySecret"}
    assert secrets["WebhookKeySecret"]["Condition"] == "HasStatusWebhook"
    gen = props(template, "ProviderSecret")["GenerateSecretString"]
    assert "SecretString" not in props(template, "ProviderSecret")
    assert set(json.loads(gen["SecretStringTemplate"])) == PROVIDERS
    assert gen["GenerateStringKey"] == "callback_token"
    assert gen["ExcludePunctuation"] is True
    assert gen["PasswordLength"] >= 32
    outputs = json.dumps(template.get("Outputs", {}))
    assert "resolve:secretsmanager" not in outputs
    assert "SecretString" not in outputs


# --------------------------------------------------------------------------- sending


def sqs_event(
    template: dict[str, Any], queue: str = "SendQueue"
) -> tuple[str, str, dict[str, Any]]:
    found = [e for e in events(template, "SQS") if getatt_id(e[2]["Queue"]) == queue]
    assert len(found) == 1, found
    return found[0]


def test_send_queue_outlives_the_send_function(template: dict[str, Any]) -> None:
    for fid, _name, event in events(template, "SQS"):
        queue = props(template, getatt_id(event["Queue"]))
        timeout = function_setting(template, fid, "Timeout")
        # AWS: an SQS event source queue's visibility timeout >= 6 x the function timeout
        assert queue["VisibilityTimeout"] >= 6 * timeout, fid


def test_send_queue_redrives_to_a_dead_letter_queue(template: dict[str, Any]) -> None:
    _fid, _name, event = sqs_event(template)
    queue = props(template, getatt_id(event["Queue"]))
    redrive = queue["RedrivePolicy"]
    assert redrive["maxReceiveCount"] >= 5
    dlq = props(template, getatt_id(redrive["deadLetterTargetArn"]))
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_queues_are_encrypted(template: dict[str, Any]) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    assert set(queues) == {
        "SendQueue",
        "SendDeadLetterQueue",
        *LANES.values(),
        *(q.replace("LaneQueue", "LaneDeadLetterQueue") for q in LANES.values()),
        "EventsDeadLetterQueue",
        "WebhookDeadLetterQueue",
    }
    for lid, queue in queues.items():
        p = queue["Properties"]
        assert p.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in p, lid


def test_send_event_reports_partial_failures_and_caps_concurrency(
    template: dict[str, Any],
) -> None:
    for queue in ("SendQueue", *LANES.values()):
        fid, _name, event = sqs_event(template, queue)
        assert fid == "SendFunction"
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Group Texting: <= 2 simultaneous connections for the account, one per lane sender
    _, _, grouptexting = sqs_event(template, "GroupTextingLaneQueue")
    assert grouptexting["ScalingConfig"]["MaximumConcurrency"] == 2
    for provider in ("ClubTexting", "TextingHouse"):
        _, _, event = sqs_event(template, f"{provider}LaneQueue")
        assert event["ScalingConfig"]["MaximumConcurrency"] == {"Ref": f"{provider}LaneConcurrency"}
        assert event["BatchSize"] == 10
    assert template["Parameters"]["ClubTextingLaneConcurrency"]["Default"] == 10


LANES = {
    "clubtexting": "ClubTextingLaneQueue",
    "grouptexting": "GroupTextingLaneQueue",
    "textinghouse": "TextingHouseLaneQueue",
}


def test_each_lane_has_its_dead_letter_queue_alarms_and_dashboard(template: dict[str, Any]) -> None:
    body = json.dumps(props(template, "OperationsDashboard"))
    for provider, queue in LANES.items():
        lane = props(template, queue)
        dlq = queue.replace("LaneQueue", "LaneDeadLetterQueue")
        assert getatt_id(lane["RedrivePolicy"]["deadLetterTargetArn"]) == dlq
        assert lane["RedrivePolicy"]["maxReceiveCount"] == 5
        env = function_setting(template, "SendFunction", "Environment")["Variables"]
        assert env[f"{provider.upper()}_LANE_URL"] == {"Ref": queue}
        for alarm, queue_id in (
            (queue.replace("LaneQueue", "LaneDeadLetterQueueNotEmpty"), dlq),
            (queue.replace("LaneQueue", "LaneBacklogAging"), queue),
        ):
            dims = props(template, alarm)["Dimensions"]
            assert dims == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
        assert f"${{{queue}.QueueName}}" in body and f"${{{dlq}.QueueName}}" in body


def test_hold_scheduler_role_can_only_send_to_the_send_queue(template: dict[str, Any]) -> None:
    role = props(template, "HoldSchedulerRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["SendQueue", "Arn"]},
        }
    ]
    env = props(template, "SendFunction")["Environment"]["Variables"]
    assert env["HOLD_SCHEDULE_GROUP"] == {"Ref": "HoldScheduleGroup"}
    assert env["HOLD_SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["HoldSchedulerRole", "Arn"]}


# --------------------------------------------------------------------------- callbacks


def test_callback_routes_are_exactly_the_six(template: dict[str, Any]) -> None:
    routes = set()
    for fid, name, event in events(template, "Api"):
        assert fid == "CallbacksFunction", name
        assert event["RestApiId"] == {"Ref": "CallbacksApi"}, name
        routes.add((event["Method"].upper(), event["Path"]))
    assert routes == CALLBACK_ROUTES
    assert not list(events(template, "HttpApi"))


def test_callbacks_api_is_a_throttled_rest_api_with_safe_access_logs(
    template: dict[str, Any],
) -> None:
    (api_id,) = resources(template, "AWS::Serverless::Api")
    assert not resources(template, "AWS::Serverless::HttpApi")
    api = props(template, api_id)
    assert api["StageName"] == "v1"
    (setting,) = api["MethodSettings"]
    assert setting["ResourcePath"] == "/*" and setting["HttpMethod"] == "*"
    assert setting["ThrottlingBurstLimit"] > 0 and setting["ThrottlingRateLimit"] > 0
    fmt = api["AccessLogSetting"]["Format"]
    # the path holds the secret callback token; the resource path is the route template
    assert "$context.resourcePath" in fmt
    assert "$context.path" not in fmt
    for var in ("requestId", "identity.sourceIp", "status", "httpMethod", "responseLength"):
        assert f"$context.{var}" in fmt, var
    group = getatt_id(api["AccessLogSetting"]["DestinationArn"])
    assert props(template, group)["RetentionInDays"] == 30


CALLBACK_CIDRS = {  # provider path -> (its parameter, its default)
    "clubtexting": ("ClubTextingCallbackCidrs", "66.148.74.128/31,66.148.74.130/32"),
    "grouptexting": ("GroupTextingCallbackCidrs", "0.0.0.0/0"),
    "textinghouse": ("TextingHouseCallbackCidrs", "0.0.0.0/0"),
}


def test_callbacks_api_resource_policy_is_per_provider(template: dict[str, Any]) -> None:
    """One Deny per provider's paths, for callers outside that provider's list: Club Texting's
    documented addresses (66.148.74.128-130) by default, the others open unless set."""
    api = props(template, "CallbacksApi")
    statements = api["Auth"]["ResourcePolicy"]["CustomStatements"]
    [allow] = [s for s in statements if s["Effect"] == "Allow"]
    assert (allow["Resource"], "Condition" in allow) == ("execute-api:/*", False)
    denies = {s["Resource"]: s for s in statements if s["Effect"] == "Deny"}
    assert set(denies) == {f"execute-api:/*/*/hooks/*/{p}/*" for p in CALLBACK_CIDRS}
    for provider, (parameter, default) in CALLBACK_CIDRS.items():
        deny = denies[f"execute-api:/*/*/hooks/*/{provider}/*"]
        assert deny["Condition"] == {
            "NotIpAddress": {"aws:SourceIp": {"Fn::Split": [",", {"Ref": parameter}]}}
        }
        assert template["Parameters"][parameter]["Default"] == default
    assert "CallbackAllowedCidrs" not in template["Parameters"]  # README: migration note


def test_keyword_replies_parameter_is_readable_by_callbacks(template: dict[str, Any]) -> None:
    param = props(template, "KeywordRepliesParameter")
    assert param["Type"] == "String" and param["Value"] == "{}"
    # the policy ARN is "...:parameter${KeywordRepliesParameter}": the name must start with /
    assert param["Name"]["Fn::Sub"].startswith("/")
    statements = [s for w, s in _all_statements(template) if w == "CallbacksFunction"]
    (ssm,) = [s for s in statements if s["Action"] == "ssm:GetParameter"]
    assert ssm["Resource"]["Fn::Sub"].endswith(":parameter${KeywordRepliesParameter}")


# --------------------------------------------------------------------------- configuration


def test_function_environment_names(template: dict[str, Any]) -> None:
    global_vars = set(global_function(template)["Environment"]["Variables"])
    assert global_vars == GLOBAL_ENV
    assert set(function_ids(template)) == set(FUNCTION_ENV)
    for fid, own in FUNCTION_ENV.items():
        env = props(template, fid).get("Environment", {}).get("Variables", {})
        assert set(env) == own, fid
    assert set(template["Parameters"]["DefaultProvider"]["AllowedValues"]) == PROVIDERS


# --------------------------------------------------------------------------- least privilege


def _policy_statements(policy: Any, where: str) -> list[dict[str, Any]]:
    """Statements of one entry of a function's Policies (SAM policy templates expanded)."""
    from samtranslator.policy_template_processor.processor import PolicyTemplatesProcessor

    if isinstance(policy, dict) and "Statement" in policy:
        statements = policy["Statement"]
        return statements if isinstance(statements, list) else [statements]
    if isinstance(policy, dict) and len(policy) == 1:
        processor = PolicyTemplatesProcessor(
            PolicyTemplatesProcessor.get_default_policy_templates_json()
        )
        ((name, params),) = policy.items()
        if processor.has(name):
            return _policy_statements(processor.convert(name, params or {}), where)
    pytest.fail(f"{where}: {policy!r} cannot be checked (use explicit statements)")


def _all_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for fid in function_ids(template):
        policies = function_setting(template, fid, "Policies") or []
        if not isinstance(policies, list):
            policies = [policies]
        for policy in policies:
            for statement in _policy_statements(policy, fid):
                yield fid, statement
    for lid, role in resources(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield lid, statement
    for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for lid, res in resources(template, type_).items():
            yield from ((lid, s) for s in res["Properties"]["PolicyDocument"]["Statement"])


def test_no_iam_statement_allows_every_resource(template: dict[str, Any]) -> None:
    checked = 0
    for where, statement in _all_statements(template):
        assert "NotResource" not in statement, where
        assert "NotAction" not in statement, where
        resources_ = statement["Resource"]
        resources_ = resources_ if isinstance(resources_, list) else [resources_]
        assert "*" not in resources_, f"{where}: {statement}"
        actions = statement["Action"]
        actions = actions if isinstance(actions, list) else [actions]
        assert not any(a == "*" or a.endswith(":*") for a in actions), f"{where}: {statement}"
        checked += 1
    assert checked >= 8


def test_credit_check_reads_the_secret_and_writes_only_provider_health(
    template: dict[str, Any],
) -> None:
    statements = [s for w, s in _all_statements(template) if w == "CreditCheckFunction"]
    granted = {(s["Sid"], str(s["Action"]), json.dumps(s["Resource"])) for s in statements}
    assert granted == {
        ("ProviderSecret", "secretsmanager:GetSecretValue", '{"Ref": "ProviderSecret"}'),
        ("ProviderHealth", "dynamodb:UpdateItem", '{"Fn::GetAtt": ["HealthTable", "Arn"]}'),
        (
            "RoutingRules",
            "ssm:GetParameter",
            json.dumps(
                {
                    "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
                    "parameter${RoutingRulesParameter}"
                }
            ),
        ),
    }


# --------------------------------------------------------------------------- alarms


def test_alarms_notify_the_alarm_topic(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert {"SendDeadLetterQueueNotEmpty", "ProviderAuthFailures"} <= set(alarms)
    for lid, alarm in alarms.items():
        p = alarm["Properties"]
        assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}], lid
        assert p["OKActions"] == [{"Ref": "AlarmTopic"}], lid
        assert len(p["AlarmDescription"]) > 40, lid
    auth = props(template, "ProviderAuthFailures")
    assert (auth["Namespace"], auth["MetricName"]) == ("smsgate", "ProviderAuthFailed")
    assert auth["Dimensions"] == [{"Name": "service", "Value": "smsgate"}]
    assert auth["TreatMissingData"] == "notBreaching"
    dlq = props(template, "SendDeadLetterQueueNotEmpty")
    assert dlq["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["SendDeadLetterQueue", "QueueName"]}


# --------------------------------------------------------------------------- moto stack


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def test_build_stack_creates_the_template_tables(aws: None, template: dict[str, Any]) -> None:
    stack = build_stack(
        {"callback_token": "t" * 40, "textinghouse": {"user": "u", "pass": "p"}},
        provider_urls={"textinghouse": "http://127.0.0.1:8003"},
    )
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    assert set(stack.tables) == set(resources(template, "AWS::DynamoDB::Table"))
    for lid, name in stack.tables.items():
        assert name == f"smsgate-test-{lid}"
        table = ddb.describe_table(TableName=name)["Table"]
        p = props(template, lid)
        assert table["KeySchema"] == p["KeySchema"], lid
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(
            p["AttributeDefinitions"], key=str
        )
        want = {g["IndexName"]: g["KeySchema"] for g in p.get("GlobalSecondaryIndexes", [])}
        got = {g["IndexName"]: g["KeySchema"] for g in table.get("GlobalSecondaryIndexes", [])}
        assert got == want, lid


def test_build_stack_wires_queues_secret_and_environment(
    aws: None, template: dict[str, Any]
) -> None:
    import json

    secret = {"callback_token": "t" * 40, "grouptexting": {"user": "u", "pass": "p"}}
    stack = build_stack(secret, provider_urls={"grouptexting": "http://127.0.0.1:8002"})

    sqs = boto3.client("sqs", region_name="us-east-1")
    attrs = sqs.get_queue_attributes(QueueUrl=stack.queues["SendQueue"], AttributeNames=["All"])
    redrive = json.loads(attrs["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.queue_arns["SendDeadLetterQueue"]
    assert int(redrive["maxReceiveCount"]) == 5
    assert attrs["Attributes"]["VisibilityTimeout"] == "180"

    sm = boto3.client("secretsmanager", region_name="us-east-1")
    assert json.loads(sm.get_secret_value(SecretId=stack.secret_arn)["SecretString"]) == secret

    ssm = boto3.client("ssm", region_name="us-east-1")
    name = stack.parameters["KeywordRepliesParameter"]
    assert json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"]) == {}

    env = stack.env
    assert set(env) == GLOBAL_ENV.union(*FUNCTION_ENV.values())
    assert env["MESSAGES_TABLE"] == stack.tables["MessagesTable"]
    assert env["STATUS_TABLE"] == stack.tables["StatusTable"]
    assert env["OPTOUTS_TABLE"] == stack.tables["OptOutsTable"]
    assert env["PROVIDER_SECRET"] == stack.secret_arn
    assert env["SEND_QUEUE_URL"] == stack.queues["SendQueue"]
    assert env["SEND_QUEUE_ARN"] == stack.queue_arns["SendQueue"]
    assert env["KEYWORD_REPLIES_PARAMETER"] == name
    assert env["HOLD_SCHEDULE_GROUP"] == stack.schedule_groups["HoldScheduleGroup"]
    assert env["HOLD_SCHEDULER_ROLE_ARN"] == stack.roles["HoldSchedulerRole"]
    assert env["GROUPTEXTING_URL"] == "http://127.0.0.1:8002"
    assert env["CLUBTEXTING_URL"] == "https://app.clubtexting.com"
    assert env["DEFAULT_PROVIDER"] == "textinghouse"
    assert env["POWERTOOLS_SERVICE_NAME"] == "smsgate"

    credit_env = function_env(template, "CreditCheckFunction", stack)
    assert set(credit_env) == GLOBAL_ENV | FUNCTION_ENV["CreditCheckFunction"]
    assert credit_env["HEALTH_TABLE"] == stack.tables["HealthTable"]
    rules = stack.parameters["RoutingRulesParameter"]
    assert json.loads(ssm.get_parameter(Name=rules)["Parameter"]["Value"]) == {"rules": []}
    send_env = function_env(template, "SendFunction", stack)
    assert set(send_env) == GLOBAL_ENV | FUNCTION_ENV["SendFunction"]


# --------------------------------------------------------------------------- cfn-lint


def _cfn_lint() -> str:
    local = Path(sys.executable).parent / "cfn-lint"
    found = str(local) if local.exists() else shutil.which("cfn-lint")
    if not found:
        pytest.fail("cfn-lint is not installed (pip install -e '.[dev]')")
    return found


@pytest.mark.timeout(300)
def test_cfn_lint_is_clean() -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [_cfn_lint(), "template.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
