"""`smsgate send`: one message (`--to`) or a CSV of them (`--file`), through the producer
(smsgate.producer), so what the sender would refuse is refused here and never queued.

Idempotency: without `--id`, a message's id is made from its content (number, text, provider,
subject and options) and the current UTC hour, so running the same command again within the
hour cannot send it twice (in the first ten minutes of an hour the previous hour's id is
looked up too). An id already in the messages table is reported with its status and not queued
again; under an id that names a different message, nothing is queued. `--again` gives a
message a new random id: the same text is sent again, on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from smsgate.producer import NotQueued, Producer, Verdict
from smsgate.store import from_item

from . import rows
from .context import Context, Failure, Usage
from .output import Progress, table

GRACE_MINUTES = 10  # into a new hour, the previous hour's id still counts as the same send
QUEUE_SLICE = 100  # messages queued between two progress updates
BATCH_GET = 100  # ids per BatchGetItem
# Body fields that make a message what it is (the id is made from them), with their defaults.
CONTENT = {
    "to": None,
    "text": None,
    "provider": None,
    "subject": "",
    "express": False,
    "commercial": False,
    "sender": None,
    "failover": None,
}


def now() -> datetime:
    return datetime.now(UTC)


def content_id(body: Mapping[str, Any], hour: datetime) -> str:
    """`<UTC hour: YYYYMMDDHH>h<21 hex digits of the content's SHA-256>` (32 characters)."""
    content = {k: body[k] for k, default in CONTENT.items() if body.get(k, default) != default}
    digest = hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    return f"{hour:%Y%m%d%H}h{digest[:21]}"


@dataclass(frozen=True)
class Planned:
    """One message checked and given its id: where the id comes from (`given`, `content`,
    `random`) and, for a content id, the previous hour's id that also counts (the grace)."""

    verdict: Verdict
    source: str
    line: int = 0
    also: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.verdict.id

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.also)


def plan(producer: Producer, fields: Mapping[str, Any], again: bool, line: int = 0) -> Planned:
    given = fields.get("id")
    verdict = producer.check_row(fields)
    if given or again or not verdict.accepted:
        return Planned(verdict, "given" if given else "random", line)
    moment = now()
    hour = moment.replace(minute=0, second=0, microsecond=0)
    made = content_id(verdict.body, hour)
    also = (content_id(verdict.body, hour - timedelta(hours=1)),)
    verdict = replace(verdict, id=made, body={**verdict.body, "id": made})
    return Planned(verdict, "content", line, also if moment.minute < GRACE_MINUTES else ())


def window_note(planned: Planned) -> str:
    if planned.source == "given":
        return f"id {planned.id} (given with --id)"
    if planned.source == "random":
        return f"id {planned.id} (random, --again: the message is sent again)"
    start = datetime.strptime(planned.id[:10], "%Y%m%d%H").replace(tzinfo=UTC)
    return (
        f"id {planned.id}: made from the message and the UTC hour {start:%Y-%m-%d %H}:00; "
        f"the same send before {start + timedelta(hours=1):%H}:00 UTC queues nothing "
        f"(--again sends it again)"
    )


def differences(record: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
    """The fields in which the stored message differs from `body` ([] when it is the same)."""
    if record.get("direction") != "out":
        return ["direction (an inbound message has this id)"]
    found = [
        name
        for name in ("to", "text", "subject", "express", "commercial", "sender")
        if (record.get(name) or CONTENT[name]) != (body.get(name) or CONTENT[name])
    ]
    pinned = body.get("provider") and not body.get("failover")
    if pinned and record.get("provider") != body["provider"]:
        found.append("provider")
    return found


def existing(ctx: Context, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The messages table's records of `ids` (consistent reads, 100 ids a call)."""
    unique = list(dict.fromkeys(ids))
    if len(unique) == 1:
        record = ctx.store.get_message(unique[0])
        return {unique[0]: record} if record else {}
    found: dict[str, dict[str, Any]] = {}
    db, name = ctx.client("dynamodb"), ctx.store.messages
    for start in range(0, len(unique), BATCH_GET):
        keys = [{"id": {"S": i}} for i in unique[start : start + BATCH_GET]]
        request: dict[str, Any] = {name: {"Keys": keys, "ConsistentRead": True}}
        for attempt in range(6):
            answer = db.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(name, []):
                record = from_item(item)
                found[str(record["id"])] = record
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.1 * 2**attempt)
        if request:
            raise Failure("the messages table did not answer for every id: nothing queued")
    return found


@dataclass(frozen=True)
class Known:
    """A planned message whose id is already in the table: the same message, or not."""

    id: str
    status: str
    record: dict[str, Any]
    differs: tuple[str, ...]


def known(planned: Planned, records: Mapping[str, dict[str, Any]]) -> Known | None:
    for message_id in planned.ids:
        record = records.get(message_id)
        if record is None:
            continue
        differs: tuple[str, ...]
        if record.get("erased_at"):  # its content is gone: only a content id proves sameness
            differs = () if planned.source == "content" else ("content (erased)",)
        else:
            differs = tuple(differences(record, planned.verdict.body))
        return Known(message_id, str(record.get("status", "?")), record, differs)
    return None


def message_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The queue body's fields from the options `send` and `quote` share."""
    return {
        "provider": args.provider,
        "subject": args.subject,
        "express": True if args.express else None,
        "commercial": True if args.commercial else None,
        "sender": args.sender,
        "failover": args.failover,
    }


def fields_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "text": args.text,
        **message_fields(args),
        "send_at": args.at,
        "validity_seconds": args.valid_for,
    }


# --------------------------------------------------------------------------- one message


def cmd_send(args: argparse.Namespace, ctx: Context, out: Any) -> int:
    if args.file:
        return send_file(args, ctx, out)
    planned = plan(ctx.producer, {"to": args.to, "id": args.id, **fields_of(args)}, args.again)
    verdict = planned.verdict
    if not verdict.accepted:
        raise Failure(f"refused, nothing queued: {verdict.reason}", refused=verdict.as_dict())
    found = known(planned, existing(ctx, list(planned.ids)))
    if found is not None and found.differs:
        raise Failure(
            f"id {found.id} already names another message ({', '.join(found.differs)} "
            f"differ{'s' if len(found.differs) == 1 else ''}; status {found.status}): nothing "
            f"queued — give another --id, or --again for a new one",
            id=found.id,
            status=found.status,
        )
    to = verdict.body["to"]
    if found is not None:
        out.emit(
            {"id": found.id, "to": to, "queued": False, "known": True, "status": found.status},
            lambda: out.out.write(found.id + "\n"),
        )
        out.note(
            f"{found.id} is already known (status {found.status}): not queued again, so it "
            f"is never sent twice; --again sends the same text as a new message"
        )
        return 0
    ctx.producer.queue([verdict])
    out.emit(
        {"id": verdict.id, "to": to, "queued": True, "id_from": planned.source},
        lambda: out.out.write(verdict.id + "\n"),
    )
    if not out.json:
        out.note(f"queued: {window_note(planned)}")
    return 0


# --------------------------------------------------------------------------- a CSV


@dataclass
class FileReport:
    queued: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    known: list[dict[str, Any]]

    def refuse(self, line: int, error: str, code: str = "") -> None:
        self.refused.append({"line": line, "error": error, **({"code": code} if code else {})})


def send_file(args: argparse.Namespace, ctx: Context, out: Any) -> int:
    sheet = rows.read(args.file, args.delimiter)
    if sheet.detected:
        out.note(
            f"reading {args.file} as {rows.shown(sheet.delimiter)}-separated (from its first "
            f"line; --delimiter to choose)"
        )
    common = {k: v for k, v in fields_of(args).items() if v is not None}
    if "text" not in common and not any("text" in r.fields for r in sheet.rows):
        raise Usage("the following arguments are required: --text (or a text column)")
    report = FileReport([], [], [])
    planned = plan_rows(ctx, sheet, common, args.again, report)
    records = existing(ctx, [i for p in planned for i in p.ids]) if planned else {}
    fresh: list[Planned] = []
    for p in planned:
        found = known(p, records)
        if found is None:
            fresh.append(p)
        elif found.differs:
            report.refuse(
                p.line, f"id {found.id} already names another message "
                f"({', '.join(found.differs)} differ; status {found.status}): not queued",
                "id_taken",
            )  # fmt: skip
        else:
            report.known.append({"line": p.line, "id": found.id, "status": found.status})
    queue_rows(ctx, fresh, report, Progress(len(fresh), out.err, None if not out.json else False))
    report.refused.sort(key=lambda r: r["line"])
    show_report(args.file, report, out)
    return 1 if report.refused else 0


def plan_rows(
    ctx: Context,
    sheet: rows.Sheet,
    common: Mapping[str, Any],
    again: bool,
    report: FileReport,
) -> list[Planned]:
    """Each row checked and given its id; refused rows go to `report`. A second row with an
    id already used in the file is refused (one id is one message)."""
    planned: list[Planned] = []
    seen: dict[str, int] = {}
    for row in sheet.rows:
        if row.problem:
            report.refuse(row.line, row.problem, "row")
            continue
        fields = {**common, **row.fields}
        if not fields.get("text"):
            report.refuse(row.line, "no text (give --text or fill the text column)", "no_text")
            continue
        p = plan(ctx.producer, fields, again, row.line)
        if not p.verdict.accepted:
            report.refuse(row.line, p.verdict.reason, p.verdict.code)
        elif p.id in seen:
            same = "the same message as" if p.source == "content" else "the id of"
            report.refuse(row.line, f"{same} line {seen[p.id]} (id {p.id}): not queued", "dup")
        else:
            seen[p.id] = row.line
            planned.append(p)
    return planned


def queue_rows(ctx: Context, fresh: list[Planned], report: FileReport, progress: Progress) -> None:
    for start in range(0, len(fresh), QUEUE_SLICE):
        part = fresh[start : start + QUEUE_SLICE]
        failed: dict[int, str] = {}
        try:
            ctx.producer.queue([p.verdict for p in part])
        except NotQueued as exc:
            failed = exc.failed
        for n, p in enumerate(part):
            if n in failed:
                report.refuse(p.line, f"not queued: {failed[n]}", "not_queued")
            else:
                report.queued.append({"line": p.line, "id": p.id, "to": p.verdict.body["to"]})
        progress.advance(len(part))
    progress.close()


def show_report(path: str, report: FileReport, out: Any) -> None:
    counts = f"{len(report.queued)} queued, {len(report.refused)} refused"
    if report.known:
        counts += f", {len(report.known)} already known (not queued again)"

    def human() -> None:
        if report.queued:
            table(["line", "id", "to"], ([q["line"], q["id"], q["to"]] for q in report.queued),
                  out.out)  # fmt: skip
        for r in report.refused:
            out.note(f"{path}:{r['line']}: {r['error']}")
        for k in report.known:
            out.note(f"{path}:{k['line']}: {k['id']} already known (status {k['status']})")
        out.note(counts)

    data = {"queued": report.queued, "refused": report.refused, "known": report.known}
    out.emit({**data, "summary": counts}, human)


def usage_problem(args: argparse.Namespace) -> str | None:
    """What argparse cannot say about `send` (exit 2 with the usage line, as its errors)."""
    if not args.file and args.text is None:
        return "the following arguments are required: --text"
    if args.file and args.id:
        return "argument --id: not allowed with argument --file (give an id column)"
    return None
