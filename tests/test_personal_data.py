"""Personal data: retention attributes, erasure (layer and CLI), the inbound-text
sweep, encryption settings and no secret in environment variables or outputs."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_cli import Run, runner, stack_file

from smsgate.erasure import AUDIT_ID, erase
from smsgate.retention import strip_inbound_text
from smsgate.status import Status
from smsgate.store import DAY, Store, Transition, from_item, now_iso
from smsgate_local.stack import function_env, function_ids, load_template

FR, US = "+33612345678", "+12125550111"


@pytest.fixture
def store(stack: Any) -> Store:
    t = stack.tables
    return Store(t["MessagesTable"], t["StatusTable"], t["OptOutsTable"], boto3.client("dynamodb"))


@pytest.fixture
def cli(stack: Any, sims: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    return runner(stack_file(stack, sims, tmp_path / "stack.json"), monkeypatch)


def scan(table: str) -> list[dict[str, Any]]:
    return [from_item(i) for i in boto3.client("dynamodb").scan(TableName=table)["Items"]]


def outbound(store: Store, message_id: str, to: str, text: str = "Bonjour") -> None:
    claim = store.claim(message_id, {"direction": "out", "provider": "textinghouse", "to": to,
                                     "text": text}, 30)  # fmt: skip
    assert claim.won
    store.advance(message_id, Transition(Status.SENT, source="send", lease=claim.lease,
        attrs={"provider_message_id": f"p-{message_id}"}))  # fmt: skip


def inbound(store: Store, message_id: str, sender: str, text: str = "STOP") -> None:
    record = {"direction": "in", "provider": "textinghouse", "from": sender, "text": text,
              "created_at": now_iso()}  # fmt: skip
    assert store.advance(message_id, Transition(Status.RECEIVED, source="mo", create=record))


# --------------------------------------------------------------------------- retention


def test_store_sets_phone_and_expiry_on_every_item(store: Store, stack: Any) -> None:
    store = Store(store.messages, store.status, store.optouts, store.db,
                  message_retention_days=7, inbound_text_retention_days=2)  # fmt: skip
    before = int(time.time())
    outbound(store, "out1", FR)
    inbound(store, "in1", US)
    store.advance("bad1", Transition(Status.FAILED, source="send", raw="invalid_body",
        create={"direction": "out", "created_at": now_iso()}))  # fmt: skip
    store.keep_unmatched_receipt("textinghouse", "p-x", "", "3")
    messages = {m["id"]: m for m in scan(stack.tables["MessagesTable"])}
    for item in [*messages.values(), *scan(stack.tables["StatusTable"])]:
        assert before + 7 * DAY <= int(item["expires_at"]) <= time.time() + 7 * DAY + 1, item
    assert messages["out1"]["phone"] == FR and "text_expires_at" not in messages["out1"]
    assert messages["in1"]["phone"] == US
    assert messages["in1"]["text_expires_at"] > now_iso()
    assert messages["in1"]["text_expires_at"] <= now_iso(datetime.fromtimestamp(
        time.time() + 2 * DAY + 1, UTC))  # fmt: skip
    assert "phone" not in messages["bad1"]


def test_wiring_reads_the_retention_settings(stack: Any, monkeypatch: Any) -> None:
    from smsgate import config, wiring

    monkeypatch.setenv("MESSAGE_RETENTION_DAYS", "12")
    monkeypatch.setenv("INBOUND_TEXT_RETENTION_DAYS", "3")
    config.settings.cache_clear()
    wiring.store.cache_clear()
    s = wiring.store()
    assert (s.message_retention_days, s.inbound_text_retention_days) == (12, 3)
    assert stack.env["MESSAGE_RETENTION_DAYS"] == "90"
    assert stack.env["INBOUND_TEXT_RETENTION_DAYS"] == "30"


def test_opt_outs_hold_only_the_ledger(store: Store, stack: Any) -> None:
    store.add_opt_out(FR, "STOP keyword", "textinghouse")
    (item,) = scan(stack.tables["OptOutsTable"])
    assert set(item) == {"phone", "since", "how", "provider", "updated_at"}


def test_inbound_text_sweep(store: Store, stack: Any) -> None:
    inbound(store, "in1", US, "hello there")
    outbound(store, "out1", US)
    assert strip_inbound_text(store, apply=True).due == 0
    later = time.time() + 31 * DAY
    dry = strip_inbound_text(store, apply=False, now=later)
    assert (dry.due, dry.stripped) == (1, 0)
    done = strip_inbound_text(store, apply=True, now=later)
    assert (done.due, done.stripped) == (1, 1)
    message = store.get_message("in1") or {}
    assert "text" not in message and "text_expires_at" not in message
    assert message["from"] == US and message["status"] == "received"
    assert (store.get_message("out1") or {})["text"] == "Bonjour"
    assert strip_inbound_text(store, apply=True, now=later).due == 0


# --------------------------------------------------------------------------- erasure


def test_erase_removes_a_numbers_data_and_keeps_the_opt_out(store: Store, stack: Any) -> None:
    outbound(store, "out1", FR, "Votre code 1234")
    outbound(store, "out2", FR)
    outbound(store, "other", US)
    inbound(store, "in1", FR, "STOP")
    store.add_opt_out(FR, "STOP keyword", "textinghouse")
    report = erase(store, FR)
    assert (report.messages_found, report.inbound_deleted, report.outbound_anonymised) == (3, 1, 2)
    assert report.history_deleted == 1 and report.opt_out_kept
    assert store.get_message("in1") is None and store.history("in1") == []
    for mid in ("out1", "out2"):
        m = store.get_message(mid) or {}
        assert not {"to", "phone", "text"} & set(m), m
        assert m["status"] == "sent" and m["erased_at"]
    assert (store.get_message("other") or {})["to"] == US
    assert store.opted_out([FR]) == {FR}
    dumped = json.dumps([scan(stack.tables["MessagesTable"]), scan(stack.tables["StatusTable"])],
                        default=str)  # fmt: skip
    assert "33612345678" not in dumped and "Votre code" not in dumped
    second = erase(store, FR)
    assert second.nothing_left and second.messages_found == 0
    audits = store.history(AUDIT_ID)
    assert len(audits) == 2 and audits[0]["messages_found"] + audits[1]["messages_found"] == 3
    assert "3361" not in json.dumps(audits, default=str)


def test_cli_erase_then_nothing_left(cli: Run, store: Store) -> None:
    outbound(store, "out1", FR)
    inbound(store, "in1", FR, "hello")
    first = cli("--json", "erase", "--phone", "+33 6 12 34 56 78")
    assert first.code == 0, first.err
    data = first.json()
    assert data["messages_found"] == 2 and not data["nothing_left"]
    assert data["phone"] == "+3361****678"
    assert "33612345678" not in first.out + first.err
    again = cli("erase", "--phone", FR)
    assert again.code == 0 and "nothing left to erase" in again.out
    assert cli("erase", "--phone", "not a number").code == 1


def test_cli_retention_dry_run(cli: Run, store: Store) -> None:
    inbound(store, "in1", US)
    result = cli("--json", "retention")
    assert result.code == 0
    assert result.json() == {"due": 0, "text_removed": 0, "already_done": 0, "applied": False}


# --------------------------------------------------------------------------- template

SECRET_LIKE = re.compile(r"(?i)(pass(word)?|secret|token|api[_-]?key)\s*[:=]|^[A-Za-z0-9+/]{32,}$")


def test_ttl_on_messages_and_status_not_on_opt_outs() -> None:
    r = load_template()["Resources"]
    for lid in ("MessagesTable", "StatusTable"):
        ttl = r[lid]["Properties"]["TimeToLiveSpecification"]
        assert ttl == {"AttributeName": "expires_at", "Enabled": True}, lid
    assert "TimeToLiveSpecification" not in r["OptOutsTable"]["Properties"]
    params = load_template()["Parameters"]
    assert params["MessageRetentionDays"]["Default"] == 90
    assert params["InboundTextRetentionDays"]["Default"] == 30
    assert params["KmsKeyArn"]["Default"] == ""


def test_customer_key_is_optional_and_only_used_when_set() -> None:
    t = load_template()
    r = t["Resources"]
    assert t["Conditions"]["HasKmsKey"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]}
    no_value = {"Ref": "AWS::NoValue"}
    for lid in ("MessagesTable", "StatusTable", "OptOutsTable"):
        sse = r[lid]["Properties"]["SSESpecification"]
        assert sse["KMSMasterKeyId"] == {"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, no_value]}
    for lid in ("SendQueue", "SendDeadLetterQueue"):
        p = r[lid]["Properties"]
        assert p["KmsMasterKeyId"] == {"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, no_value]}
        assert p["SqsManagedSseEnabled"] == {"Fn::If": ["HasKmsKey", no_value, True]}
    policy = r["DataKeyPolicy"]
    assert policy["Condition"] == "HasKmsKey"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"Ref": "KmsKeyArn"}
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_no_secret_in_environment_or_outputs(stack: Any) -> None:
    template = load_template()
    envs = [function_env(template, fid, stack) for fid in function_ids(template)]
    for env in [stack.env, *envs]:
        for name, value in env.items():
            if value.startswith("arn:"):  # a reference (the secret by ARN), not a value
                continue
            assert not SECRET_LIKE.search(value), name
            assert "local-secret" not in value and "callback-token" not in value, name
    assert stack.env["PROVIDER_SECRET"].startswith("arn:aws:secretsmanager:")
    outputs = json.dumps(template["Outputs"])
    assert "SecretString" not in outputs and "resolve:secretsmanager" not in outputs
    assert template["Outputs"]["ProviderSecretArn"]["Value"] == {"Ref": "ProviderSecret"}
