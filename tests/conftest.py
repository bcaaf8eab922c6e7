"""Shared fixtures: AWS in moto (built from template.yaml), the provider simulators, and the
functions' handlers loaded as Lambda loads them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from smsgate_local.harness import (  # noqa: F401 - the tests import them from here
    LambdaContext,
    cheap_transaction_snapshots,
    load_function,
    serialised_dynamodb,
)

# Fake credentials before boto3 is imported anywhere: nothing in the tests reaches AWS.
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "smsgate",
    }
)
os.environ.pop("AWS_PROFILE", None)

pytest_plugins = ["smsgate_sim.pytest_plugin"]

# moto deep-copies every table a transaction touches (and, with streams, every stream record)
# for its rollback: O(table) per TransactWriteItems. The stand-in is patched to snapshot only
# the items the transaction names (smsgate_local.harness; the same result, tested there).
cheap_transaction_snapshots()
# A sender sends its batch from several threads: in-process moto answers one DynamoDB request
# at a time, as DynamoDB orders conditional writes (the local stack's moto server does too).
serialised_dynamodb()

CALLBACK_TOKEN = "test-callback-token-0123456789abcdef"
SIM_USER, SIM_PASS = "smsgate", "local-secret"


def secret_for(sims: Any) -> dict[str, Any]:
    creds = {"user": SIM_USER, "pass": SIM_PASS}
    return {
        "clubtexting": creds,
        "grouptexting": creds,
        "textinghouse": creds,
        "callback_token": CALLBACK_TOKEN,
    }


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def stack(aws: None, sims: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The template's resources in moto, the simulators as providers, and the functions'
    environment in os.environ; process-wide caches start empty."""
    from smsgate_local.stack import build_stack

    urls = {
        name: sims.by_name[name].url for name in ("clubtexting", "grouptexting", "textinghouse")
    }
    built = build_stack(secret_for(sims), provider_urls=urls)
    for key, value in built.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROVIDER_READ_TIMEOUT", "1.0")
    monkeypatch.setenv("PROVIDER_CONNECT_TIMEOUT", "0.5")
    _clear_caches()
    yield built
    _clear_caches()


def _clear_caches() -> None:
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from smsgate import wiring

    wiring.new_instance()  # each test's consumers start with fresh send pools
    # Powertools would build each provider on a new boto3 session, loading its service model
    # from disk (~50 ms a test); boto3's default session keeps the models it loaded.
    session = boto3._get_default_session()
    DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider(boto3_session=session)
    DEFAULT_PROVIDERS["ssm"] = parameters.SSMProvider(boto3_session=session)


@pytest.fixture
def log_stream() -> Iterator[Any]:
    """What smsgate logs during the test. Powertools' Logger binds its stream when created,
    so capsys cannot see it: point its handlers at a buffer instead."""
    import io

    from smsgate.observability import logger

    buffer = io.StringIO()
    saved = [(h, h.setStream(buffer)) for h in logger.handlers if hasattr(h, "setStream")]
    yield buffer
    for handler, stream in saved:
        handler.setStream(stream)
