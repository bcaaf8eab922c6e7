"""Rotating the callback token without losing callbacks: the secret holds the current and the
previous token (the previous one until its time runs out), `smsgate callbacks rotate-token`
writes a new one and prints the six URLs, and callbacks still using the previous token are
counted. The real callbacks handler, the real CLI, the secret in moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import CALLBACK_TOKEN, LambdaContext, load_function
from test_callbacks import dlr_event, scan, template_routes
from test_cli import runner, stack_file

from smsgate.tokens import CALLBACK_ROUTES, CallbackTokens, rotated


def secret(stack: Any) -> dict[str, Any]:
    value = boto3.client("secretsmanager").get_secret_value(SecretId=stack.secret_arn)
    return dict(json.loads(value["SecretString"]))


def receipt(handler: Any, token: str, message_id: str = "nobody") -> int:
    event = dlr_event({"apimsgid": "", "climsgid": message_id, "status": "3"}, token=token)
    return int(handler(event, LambdaContext())["statusCode"])


@pytest.fixture
def handler(stack: Any) -> Any:
    module = load_function("callbacks")
    module._Refresh.last = 0.0  # each test is a fresh instance
    return module.lambda_handler


def test_the_routes_the_cli_prints_are_the_templates() -> None:
    assert {(m, p) for _, _, m, p in CALLBACK_ROUTES} == set(template_routes())


def test_rotation_keeps_callbacks_arriving_then_refuses_the_old_token(
    stack: Any,
    sims: Any,
    handler: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    assert receipt(handler, CALLBACK_TOKEN) == 200  # the instance has the secret cached
    run = runner(stack_file(stack, sims, tmp_path / "stack.json"), monkeypatch)
    result = run("--json", "callbacks", "rotate-token", "--keep-previous", "7")
    assert result.code == 0, result.err
    printed = result.json()
    new = secret(stack)["callback_token"]
    assert new != CALLBACK_TOKEN and len(new) == 48
    assert [u["url"].split("/hooks/")[1].split("/")[0] for u in printed["urls"]] == [new] * 6
    assert len({u["url"] for u in printed["urls"]}) == 6
    assert secret(stack)["previous_callback_token"] == CALLBACK_TOKEN
    assert secret(stack)["textinghouse"]  # the providers' credentials are kept
    capsys.readouterr()

    # the warm instance accepts the new token at once (its cached secret is re-read on a miss)
    assert receipt(handler, new) == 200
    # ... and the previous one until its time, counted per provider
    assert receipt(handler, CALLBACK_TOKEN) == 200
    logs = capsys.readouterr().out
    assert '"CallbackPreviousToken"' in logs and '"Provider":"textinghouse"' in logs
    assert CALLBACK_TOKEN not in logs and new not in logs

    # rotating again with no grace: the first token is gone, the second one refused at once
    result = run("callbacks", "rotate-token", "--keep-previous", "0")
    assert result.code == 0 and "refused from now on" in result.out
    newest = secret(stack)["callback_token"]
    # warm instances hold the secret up to its cache age (SECRET_MAX_AGE); past it:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    before = scan(stack.tables["StatusTable"])
    assert receipt(handler, new, "m-late") == 403
    assert receipt(handler, CALLBACK_TOKEN, "m-late") == 403
    assert scan(stack.tables["StatusTable"]) == before  # a refused callback changes nothing
    assert receipt(handler, newest) == 200


def test_the_previous_token_expires(stack: Any, handler: Any) -> None:
    value, new = rotated(secret(stack), timedelta(days=1))
    value["previous_callback_token_until"] = "2020-01-01T00:00:00Z"  # long past
    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.secret_arn, SecretString=json.dumps(value)
    )
    assert receipt(handler, CALLBACK_TOKEN) == 403
    assert receipt(handler, new) == 200


def test_forged_tokens_reread_the_secret_at_most_once_per_interval(
    stack: Any, handler: Any
) -> None:
    calls: list[str] = []

    def counted(**kwargs: Any) -> None:
        calls.append(kwargs["event_name"])

    boto3.DEFAULT_SESSION.events.register("before-call.secrets-manager.GetSecretValue", counted)
    try:
        for i in range(20):
            assert receipt(handler, f"forged-{i}") == 403
    finally:
        boto3.DEFAULT_SESSION.events.unregister(
            "before-call.secrets-manager.GetSecretValue", counted
        )
    assert len(calls) <= 2  # the first read, and one re-read for the first miss


@pytest.mark.parametrize(
    ("given", "expected"),
    [("cur", "current"), ("old", "previous"), ("", None), ("cu", None), ("curr", None)],
)
def test_check_accepts_current_and_live_previous_only(given: str, expected: str | None) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    tokens = CallbackTokens("cur", "old", now + timedelta(seconds=1))
    assert tokens.check(given, now) == expected
    assert tokens.check("old", now + timedelta(seconds=2)) is None  # expired
    assert CallbackTokens("", "", None).check("", now) is None  # no token: nothing matches
