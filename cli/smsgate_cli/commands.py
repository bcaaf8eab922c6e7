"""The commands (`send` is in send.py). Each takes the parsed arguments, the stack's Context
and an Out, and returns the exit code (0 done, 1 refused or failed; errors are raised:
Failure exits 1, Usage 2)."""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO
from urllib.parse import urlsplit

from smsgate.phones import InvalidNumber, to_e164
from smsgate.providers import GroupTexting, ProviderError, RuleViolation
from smsgate.store import from_item, to_item

from . import cards
from .context import Context, Failure
from .output import cell, pairs, plain, table, to_json

MAX_SCAN_DEFAULT = 10_000


@dataclass
class Out:
    """Where results go: a table or lines for people, one JSON document with --json."""

    json: bool
    out: TextIO
    err: TextIO

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        if self.json:
            self.out.write(to_json(data) + "\n")
        else:
            human()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")


# --------------------------------------------------------------------------- status, messages


def _history_row(entry: dict[str, Any]) -> dict[str, Any]:
    at = str(entry.get("received_at") or entry.get("at", ""))  # a kept receipt: when it came
    return {
        "at": at.split("#", 1)[0],
        "status": entry.get("status", ""),
        "source": entry.get("source", ""),
        "raw": entry.get("raw"),
    }


HIDDEN = frozenset({"lease", "lease_until"})
FIRST = ("id", "status", "direction", "provider", "to", "from", "created_at", "status_at")


def _epoch(value: Any) -> str:
    moment = datetime.fromtimestamp(float(value), UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%SZ} (UTC)"


def readable(key: str, value: Any) -> str:
    """One attribute for people: epoch seconds (`expires_at`) as UTC ISO 8601, lists and maps
    as words rather than Python's brackets."""
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        if key.endswith(("_at", "_until")) and float(value) > 1e9:
            return _epoch(value)
        return cell(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={readable(str(k), v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | set | tuple):
        return "; ".join(readable(key, v) for v in value) or "-"
    return cell(value)


def cmd_status(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    message = ctx.store.get_message(args.id)
    if message is None:
        raise Failure(
            f"no record of {args.id!r} yet: a message queued moments ago may still be on the "
            f"send queue (its record is written when a sender takes it); otherwise no message "
            f"has this id",
            id=args.id,
            found=False,
        )
    shown = {k: v for k, v in message.items() if k not in HIDDEN}
    history = ctx.store.history(args.id)

    def human() -> None:
        attempts = shown.get("provider_attempts")
        listed = [k for k in FIRST if k in shown] + sorted(
            k for k in shown if k not in FIRST and k != "provider_attempts"
        )
        pairs(((k, readable(k, shown[k])) for k in listed), out.out)
        if isinstance(attempts, list) and attempts:
            out.out.write("\nprovider attempts:\n")
            table(
                ["at", "provider", "outcome", "code"],
                (
                    [a.get("at"), a.get("provider"), a.get("outcome"), a.get("code")]
                    for a in attempts
                    if isinstance(a, dict)
                ),
                out.out,
            )
        out.out.write("\nhistory:\n")
        rows = [_history_row(h) for h in history]
        table(
            ["at", "status", "source", "raw"],
            ([h["at"], h["status"] or "(noted)", h["source"], h["raw"]] for h in rows),
            out.out,
        )

    out.emit(plain({"message": shown, "history": history}), human)
    return 0


def cmd_messages(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    filters, values, names = [], {}, {}
    for attr in ("status", "provider", "direction"):
        value = getattr(args, attr)
        if value:
            filters.append(f"#{attr} = :{attr}")
            names[f"#{attr}"], values[f":{attr}"] = attr, value
    kwargs: dict[str, Any] = {"TableName": ctx.target.messages_table}
    if filters:
        kwargs.update(
            FilterExpression=" AND ".join(filters),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )
    items: list[dict[str, Any]] = []
    scanned, truncated = 0, False
    db = ctx.client("dynamodb")
    while True:
        page = db.scan(**kwargs)
        scanned += page.get("ScannedCount", 0)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        if scanned >= args.max_scan:
            truncated = True
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    items.sort(key=lambda m: str(m.get("created_at", "")), reverse=True)
    rows = []
    for m in items[: args.limit]:
        text = m.get("text")
        rows.append(
            {
                "id": m.get("id"),
                "direction": m.get("direction"),
                "provider": m.get("provider"),
                "status": m.get("status"),
                "number": m.get("to") if m.get("direction") != "in" else m.get("from"),
                "text_length": len(text) if isinstance(text, str) else None,
                "created_at": m.get("created_at"),
                "error_code": m.get("error_code"),
                "error": m.get("error"),
            }
        )

    def human() -> None:
        cols = ["id", "direction", "provider", "status", "number", "text_length", "created_at"]
        heads = ["id", "dir", "provider", "status", "number", "len", "created", "error"]
        table(
            heads,
            ([r[c] for c in cols] + [r["error_code"] or ""] for r in rows),
            out.out,
        )
        if truncated:
            out.note(f"stopped after scanning {scanned} items (--max-scan): the list may miss some")

    out.emit(plain({"messages": rows, "scanned": scanned, "truncated": truncated}), human)
    return 0


# --------------------------------------------------------------------------- opt-outs


def _e164(raw: str) -> str:
    try:
        return to_e164(raw)
    except InvalidNumber as exc:
        raise Failure(f"invalid number: {exc}") from None


def cmd_optouts(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    if args.action == "add":
        phone = _e164(args.phone)
        ctx.store.add_opt_out(phone, "manual")
        out.emit({"phone": phone, "opted_out": True}, lambda: out.out.write(f"{phone} opted out\n"))
        return 0
    if args.action == "remove":
        phone = _e164(args.phone)
        if not ctx.store.remove_opt_out(phone):
            raise Failure(f"{phone} was not on the opt-out list")
        out.emit(
            {"phone": phone, "opted_out": False},
            lambda: out.out.write(f"{phone} removed from the opt-out list\n"),
        )
        return 0
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": ctx.target.optouts_table}
    db = ctx.client("dynamodb")
    while True:
        page = db.scan(**kwargs)
        items.extend(from_item(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    items.sort(key=lambda i: str(i.get("since", "")))
    rows = [{k: i.get(k) for k in ("phone", "since", "how", "provider")} for i in items]
    out.emit(
        plain({"optouts": rows}),
        lambda: table(
            ["phone", "since", "how", "provider"],
            ([r["phone"], r["since"], r["how"], r["provider"]] for r in rows),
            out.out,
        ),
    )
    return 0


# --------------------------------------------------------------------------- personal data


def cmd_erase(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    """Erase one number's messages (smsgate.erasure): the number is echoed masked only."""
    from smsgate.erasure import erase
    from smsgate.phones import mask

    phone = _e164(args.phone)
    report = erase(ctx.store, phone)
    data = {"phone": mask(phone), **report.as_dict()}

    def human() -> None:
        if report.nothing_left:
            out.out.write(f"{mask(phone)}: nothing left to erase\n")
        pairs(list(data.items()), out.out)

    out.emit(data, human)
    return 0


def cmd_retention(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    """Remove the text of inbound messages older than InboundTextRetentionDays (the same
    code as the scheduled retention function, without its per-run bound), or --backfill."""
    if args.backfill:
        return _backfill(args, ctx, out)
    from smsgate.retention import strip_inbound_text

    report = strip_inbound_text(ctx.store, apply=args.apply, max_items=None)
    data = {
        "due": report.due,
        "text_removed": report.stripped,
        "already_done": report.already_done,
        "applied": bool(args.apply),
    }

    def human() -> None:
        pairs(list(data.items()), out.out)
        if report.due and not args.apply:
            out.note("dry run: add --apply to remove these texts")

    out.emit(data, human)
    return 0


def _backfill(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    from smsgate.retention import backfill
    from smsgate.store import Store

    store = Store(
        ctx.store.messages,
        ctx.store.status,
        ctx.store.optouts,
        ctx.store.db,
        message_retention_days=args.retention_days,
        inbound_text_retention_days=args.text_retention_days,
    )
    report = backfill(store, apply=args.apply, max_items=args.max_items)
    data = {**report.as_dict(), "applied": bool(args.apply)}

    def human() -> None:
        pairs(list(data.items()), out.out)
        if report.more:
            out.note(f"stopped after {args.max_items} items: run it again")
        if (report.messages or report.history) and not args.apply:
            out.note("dry run: add --apply to write the retention attributes")

    out.emit(data, human)
    return 0


# --------------------------------------------------------------------------- providers


def _provider_error(exc: ProviderError | RuleViolation) -> str:
    return str(exc) or type(exc).__name__


def cmd_credits(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    from smsgate.providers import PROVIDERS

    rows, failed = [], False
    for name in PROVIDERS:
        row: dict[str, Any] = {"provider": name, "balance": None, "state": ""}
        if name not in ctx.configured_providers():
            row["state"] = "not configured"
        elif not PROVIDERS[name].has_balance:
            row["state"] = "no balance API"
        else:
            try:
                client = ctx.provider(name)
                row["balance"] = ctx.patiently(client, client.balance)
                row["state"] = "ok"
            except (ProviderError, Failure) as exc:
                row["state"], failed = f"FAIL: {exc}", True
        rows.append(row)
    out.emit(
        {"credits": rows, "asked": "now, of each provider"},
        lambda: table(
            ["provider", "balance", "state"],
            ([r["provider"], _num(r["balance"]), r["state"]] for r in rows),
            out.out,
        ),
    )
    if not out.json:
        out.note("balances asked of the providers now; the alarms and `smsgate providers` use")
        out.note("the credit check's last reading (shown there with its time)")
    return 1 if failed else 0


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def _grouptexting(ctx: Context) -> GroupTexting:
    client = ctx.provider("grouptexting")
    assert isinstance(client, GroupTexting)
    return client


def cmd_keywords(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    keyword = args.keyword
    try:
        if args.action == "check":
            client = _grouptexting(ctx)
            free = ctx.patiently(client, lambda: client.check_keyword(keyword))
            out.emit(
                {"keyword": keyword, "available": free},
                lambda: out.out.write(f"{keyword}: {'available' if free else 'not available'}\n"),
            )
            return 0
        if args.action == "rent":
            client = _grouptexting(ctx)
            card = cards.read_card(out.err)
            ctx.patiently(client, lambda: client.rent_keyword(card, keyword))
            out.emit(
                {"keyword": keyword, "rented": True},
                lambda: out.out.write(f"{keyword}: rented\n"),
            )
            return 0
        options = {
            "group": args.group,
            "autoreply": args.autoreply,
            "email": args.email,
            "url": args.url,
        }
        client = _grouptexting(ctx)
        ctx.patiently(client, lambda: client.setup_keyword(keyword, **options))
        changed = {k: v for k, v in options.items() if v is not None}
        out.emit(
            {"keyword": keyword, "updated": changed},
            lambda: out.out.write(
                f"{keyword}: updated ({', '.join(changed) or 'nothing changed'})\n"
            ),
        )
        return 0
    except (ProviderError, RuleViolation) as exc:
        raise Failure(f"keyword {args.action}: {_provider_error(exc)}") from None


def cmd_buy_credits(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    if args.credits <= 0:
        raise Failure("--credits must be a positive number")
    client = _grouptexting(ctx)
    card = cards.read_card(out.err)
    try:
        ctx.patiently(client, lambda: client.buy_credits(card, args.credits))
    except (ProviderError, RuleViolation) as exc:
        raise Failure(f"buy credits: {_provider_error(exc)}") from None
    out.emit(
        {"provider": "grouptexting", "credits": args.credits, "bought": True},
        lambda: out.out.write(f"bought {args.credits} credits from grouptexting\n"),
    )
    return 0


# --------------------------------------------------------------------------- doctor


def _tcp(url: str, timeout: float = 3.0) -> None:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not parts.hostname:
        raise OSError(f"no host in {url!r}")
    with socket.create_connection((parts.hostname, port), timeout=timeout):
        pass


def cmd_doctor(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    from smsgate.providers import PROVIDERS

    checks: list[dict[str, Any]] = []

    def check(name: str, probe: Callable[[], str]) -> None:
        try:
            detail, ok = probe(), True
        except Exception as exc:
            detail, ok = _reason(exc), False
        checks.append({"check": name, "ok": ok, "detail": detail})

    t = ctx.target
    checks.append({"check": "configuration", "ok": True, "detail": t.source})
    db, sqs = ctx.client("dynamodb"), ctx.client("sqs")
    for label, table_name in (
        ("messages table", t.messages_table),
        ("status table", t.status_table),
        ("opt-outs table", t.optouts_table),
    ):
        check(
            label,
            lambda n=table_name: f"{n} ({db.describe_table(TableName=n)['Table']['TableStatus']})",
        )
    check("send queue", lambda: _queue(sqs, t.send_queue_url))
    if t.dlq_url:
        check("dead-letter queue", lambda: _queue(sqs, t.dlq_url))
    secret_ok = True

    def probe_secret() -> str:
        nonlocal secret_ok
        try:
            names = ctx.configured_providers()
        except Exception:
            secret_ok = False
            raise
        return "providers: " + (", ".join(names) or "none")

    check("provider secret", probe_secret)
    if secret_ok:
        for name in ctx.configured_providers():
            url = t.provider_urls[name]

            def probe(name: str = name, url: str = url) -> str:
                if PROVIDERS[name].has_balance:
                    client = ctx.provider(name)
                    return f"{url} balance {ctx.patiently(client, client.balance):g}"
                _tcp(url)
                return f"{url} reachable (TCP)"

            check(f"provider {name}", probe)
    failed = [c for c in checks if not c["ok"]]

    def human() -> None:
        for c in checks:
            out.out.write(f"{'OK  ' if c['ok'] else 'FAIL'}  {c['check']}: {c['detail']}\n")

    out.emit({"ok": not failed, "checks": checks}, human)
    return 1 if failed else 0


def _queue(sqs: Any, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"
    ]
    return f"{url} ({attrs.get('ApproximateNumberOfMessages', '?')} waiting)"


def _reason(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- cancel


def cmd_cancel(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    """Put a cancel body on the send queue and wait until the record says what it did."""
    before = ctx.store.get_message(args.id)
    if before is not None and before.get("error_code") == "cancelled":
        return _cancel_answer(out, args.id, before, "already cancelled", 0)
    if before is not None and before.get("status") not in ("queued", "scheduled"):
        return _cancel_answer(out, args.id, before, "too late: it has gone out", 1)
    ctx.client("sqs").send_message(
        QueueUrl=ctx.target.send_queue_url, MessageBody=json.dumps({"cancel": args.id})
    )
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        record = ctx.store.get_message(args.id)
        if record is not None and record.get("error_code") == "cancelled":
            return _cancel_answer(out, args.id, record, "cancelled", 0)
        if record is not None and record.get("status") not in ("queued", "scheduled"):
            return _cancel_answer(out, args.id, record, "too late: it has gone out", 1)
        time.sleep(0.5)
    raise Failure(
        f"the cancel of {args.id!r} is queued but no sender has taken it in {args.wait} s: "
        f"see `smsgate status {args.id}`"
    )


def _cancel_answer(out: Out, message_id: str, record: dict[str, Any], what: str, code: int) -> int:
    status = str(record.get("status", "?"))
    out.emit(
        {"id": message_id, "status": status, "cancelled": code == 0, "result": what},
        lambda: out.out.write(f"{message_id}: {what} ({status})\n"),
    )
    return code
