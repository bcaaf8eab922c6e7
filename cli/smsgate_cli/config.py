"""Where the stack is: a stack.json (the local stack's, or `--config PATH`), a deployed
CloudFormation stack's outputs (`--stack NAME`), or the functions' environment variables."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from smsgate.config import DEFAULT_URLS
from smsgate.providers import PROVIDERS

LOCAL_FILE = Path(".local") / "stack.json"
REPO_ROOT = Path(__file__).resolve().parents[2]  # cli/smsgate_cli/config.py -> repository
# Stack outputs (template.yaml) -> Target fields.
OUTPUTS = {
    "SendQueueUrl": "send_queue_url",
    "SendDeadLetterQueueUrl": "dlq_url",
    "MessagesTableName": "messages_table",
    "StatusTableName": "status_table",
    "OptOutsTableName": "optouts_table",
    "ProviderSecretArn": "secret_arn",
    "CallbacksApiUrl": "api_url",
    "EventBusName": "event_bus_name",
    "HealthTableName": "health_table",
    "RoutingRulesParameterName": "routing_parameter",
}
# Stack outputs naming the providers' lanes, and parameters naming their base URLs: named after
# each provider's client class in the template (`TextingHouseLaneQueueUrl`, `TextingHouseUrl`).
LANE_OUTPUTS = {f"{cls.__name__}LaneQueueUrl": name for name, cls in PROVIDERS.items()}
URL_PARAMETERS = {f"{cls.__name__}Url": name for name, cls in PROVIDERS.items()}
REQUIRED = ("send_queue_url", "messages_table", "status_table", "optouts_table", "secret_arn")


class ConfigProblem(Exception):
    """The CLI cannot tell where the stack is (exit 2)."""


@dataclass
class Target:
    """Everything the CLI needs to reach one smsgate stack."""

    source: str
    send_queue_url: str = ""
    messages_table: str = ""
    status_table: str = ""
    optouts_table: str = ""
    secret_arn: str = ""
    dlq_url: str = ""
    api_url: str = ""
    event_bus_name: str = ""  # the application events bus (`smsgate events`)
    health_table: str = ""  # provider health (`smsgate providers`)
    routing_parameter: str = ""  # routing rules (SSM parameter name)
    default_provider: str = ""  # the stack's DefaultProvider ("": the template's default)
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None  # moto server (local stack); None for AWS
    provider_urls: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_URLS))
    lane_urls: dict[str, str] = field(default_factory=dict)  # provider -> its lane queue

    def missing(self) -> list[str]:
        return [name for name in REQUIRED if not getattr(self, name)]


def _provider(value: object) -> str:
    """A provider name the stack gives as its default; "" when it gives none (or a name this
    CLI does not know: the template's default applies)."""
    return value if isinstance(value, str) and value in PROVIDERS else ""


def local_file() -> Path | None:
    """The local stack's stack.json: in the current directory's `.local/`, else the repo's."""
    for base in (Path.cwd(), REPO_ROOT):
        candidate = base / LOCAL_FILE
        if candidate.is_file():
            return candidate
    return None


def from_file(path: Path, region: str | None, profile: str | None) -> Target:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigProblem(f"{path}: no such file (is the local stack running?)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigProblem(f"{path}: not a readable JSON stack file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigProblem(f"{path}: expected a JSON object")
    urls = dict(DEFAULT_URLS)
    urls.update({k: v for k, v in (data.get("simulators") or {}).items() if k in DEFAULT_URLS})
    urls.update({k: v for k, v in (data.get("provider_urls") or {}).items() if k in DEFAULT_URLS})
    return Target(
        source=f"file {path}",
        send_queue_url=data.get("send_queue_url") or "",
        messages_table=data.get("messages_table") or "",
        status_table=data.get("status_table") or "",
        optouts_table=data.get("optouts_table") or "",
        secret_arn=data.get("secret_arn") or "",
        dlq_url=data.get("dlq_url") or "",
        api_url=data.get("api_url") or "",
        event_bus_name=data.get("event_bus_name") or "",
        health_table=data.get("health_table") or "",
        routing_parameter=data.get("routing_parameter") or "",
        default_provider=_provider(data.get("default_provider")),
        region=region or data.get("region") or "us-east-1",
        profile=profile,
        endpoint_url=data.get("endpoint_url") or None,
        provider_urls=urls,
        lane_urls={k: v for k, v in (data.get("lane_urls") or {}).items() if k in DEFAULT_URLS},
    )


def from_stack(name: str, region: str | None, profile: str | None) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise ConfigProblem(f"cannot read stack {name!r}: {exc}") from None
    if not stacks:
        raise ConfigProblem(f"stack {name!r} not found")
    stack = stacks[0]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    target = Target(source=f"stack {name}", region=session.region_name, profile=profile)
    for key, attr in OUTPUTS.items():
        setattr(target, attr, outputs.get(key, ""))
    for key, provider in URL_PARAMETERS.items():
        if params.get(key):
            target.provider_urls[provider] = params[key]
    target.lane_urls = {p: outputs[k] for k, p in LANE_OUTPUTS.items() if outputs.get(k)}
    target.default_provider = _provider(params.get("DefaultProvider"))
    return target


def from_env(region: str | None, profile: str | None) -> Target | None:
    """The functions' own variables (docs/contract.md, Environment variables), when set."""
    env = os.environ
    if not env.get("MESSAGES_TABLE"):
        return None
    urls = {name: env.get(f"{name.upper()}_URL") or url for name, url in DEFAULT_URLS.items()}
    return Target(
        source="environment",
        send_queue_url=env.get("SEND_QUEUE_URL", ""),
        messages_table=env.get("MESSAGES_TABLE", ""),
        status_table=env.get("STATUS_TABLE", ""),
        optouts_table=env.get("OPTOUTS_TABLE", ""),
        secret_arn=env.get("PROVIDER_SECRET", ""),
        event_bus_name=env.get("EVENT_BUS_NAME", ""),
        health_table=env.get("HEALTH_TABLE", ""),
        routing_parameter=env.get("ROUTING_PARAMETER", ""),
        default_provider=_provider(env.get("DEFAULT_PROVIDER")),
        region=region,
        profile=profile,
        endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        provider_urls=urls,
        lane_urls={
            name: env[f"{name.upper()}_LANE_URL"]
            for name in DEFAULT_URLS
            if env.get(f"{name.upper()}_LANE_URL")
        },
    )


def resolve(
    *,
    config: str | None,
    stack: str | None,
    local: bool,
    region: str | None,
    profile: str | None,
) -> Target:
    """Pick the target: --config, --stack, --local, then `.local/stack.json` if it exists,
    then the environment variables."""
    if config and stack:
        raise ConfigProblem("--config and --stack are exclusive")
    if stack and local:
        raise ConfigProblem("--local and --stack are exclusive")
    if config:
        target = from_file(Path(config), region, profile)
    elif stack:
        target = from_stack(stack, region, profile)
    else:
        found = local_file()
        env_target = None if (local or found) else from_env(region, profile)
        if found is not None:
            target = from_file(found, region, profile)
        elif env_target is not None:
            target = env_target
        elif local:
            raise ConfigProblem(
                f"no {LOCAL_FILE} here or in {REPO_ROOT}: start the local stack with `make run`"
            )
        else:
            raise ConfigProblem(
                f"no stack to talk to: start the local stack (`make run`, which writes "
                f"{LOCAL_FILE}), or pass --stack NAME or --config PATH"
            )
    missing = target.missing()
    if missing:
        raise ConfigProblem(f"{target.source} does not say: {', '.join(missing)}")
    return target
