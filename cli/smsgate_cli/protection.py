"""`smsgate quote` (what the sender would do with a message and what it would cost, nothing
sent or recorded) and `smsgate spend` (a month's spend per provider against the monthly
budgets). Protection itself is in smsgate/protection.py (docs/protection.md)."""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from smsgate.producer import Producer, Refused
from smsgate.protection import TOTAL, WARN_AT, BudgetView
from smsgate.providers import DEFAULT_PROVIDER, PROVIDERS
from smsgate.quote import ProviderQuote, Quote
from smsgate.store.counters import Counters

from .commands import Out
from .context import Context, Failure
from .output import table
from .send import message_fields

WIDTH = 80  # the terminal the human output fits
GOES = frozenset({"send", "hold"})  # answers that exit 0: the message would go out
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- formatting


def amount(value: float | None) -> str:
    """A cost or a spend without float noise: 0.035, 12.5, 0 ("-" for none)."""
    if value is None:
        return "-"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def moment(iso: str) -> str:
    """`2026-12-03T13:00:00.000000Z` -> `2026-12-03T13:00:00Z` (whole seconds are enough)."""
    head, dot, _ = iso.partition(".")
    return head + "Z" if dot else iso


def share(used: float) -> str:
    """A budget's used share and its state: `85% warning`, `100% exhausted`, `12%`."""
    return _used(used, state(used))


def state(used: float) -> str:
    if used >= 1.0:
        return "exhausted"
    return "warning" if used >= WARN_AT else "ok"


def wrapped(text: str, out: TextIO, indent: str = "  ", first: str = "") -> None:
    """One line of output, wrapped to WIDTH (continuation lines indented)."""
    lines = textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False
    )
    out.write("\n".join(lines or [""]) + "\n")


def notes_table(
    headers: Sequence[str], rows: Sequence[tuple[Sequence[str], str, str]], out: TextIO
) -> None:
    """output.table's layout with a last column of notes: each row is (cells, note, detail),
    the note with its detail when that fits WIDTH, else the note alone and the detail on the
    next line, indented and wrapped to WIDTH."""
    widths = [len(h) for h in headers[:-1]]
    for cells, _, _ in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
    lead = sum(widths) + 2 * len(widths)

    def line(cells: Sequence[str], last: str) -> str:
        first = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return (first + "  " + last).rstrip()

    out.write(line([h.upper() for h in headers[:-1]], headers[-1].upper()) + "\n")
    for cells, note, detail in rows:
        full = f"{note}: {detail}" if note and detail else note or detail
        if lead + len(full) <= WIDTH:
            out.write(line(cells, full) + "\n")
            continue
        out.write(line(cells, note) + "\n")
        wrapped(detail, out, indent="    ", first="    ")


# --------------------------------------------------------------------------- quote


def quote_producer(ctx: Context) -> Producer:
    """Context.producer, with the health and opt-outs tables: the recipient's velocity and
    opt-out and the month's spend are judged too."""
    health = ctx.target.health_table or None
    return Producer(
        ctx.target.send_queue_url,
        sqs=ctx.client("sqs"),
        routing=lambda: ctx.routing,
        default_provider=ctx.target.default_provider or DEFAULT_PROVIDER,
        health_table=health,
        optouts_table=ctx.target.optouts_table or None,
        dynamodb=ctx.client("dynamodb"),
    )


def cmd_quote(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    producer = quote_producer(ctx)
    try:
        quoted = producer.quote(args.to, args.text, **message_fields(args))
    except Refused as exc:
        verdict = next(iter(exc.verdicts.values()), None)
        details = {"error_code": exc.code, **({"refused": verdict.as_dict()} if verdict else {})}
        raise Failure(f"would be refused: {exc}", **details) from None
    out.emit(quoted.as_dict(), lambda: show_quote(quoted, out.out))
    return 0 if quoted.answer in GOES else 1


def _parts(row: ProviderQuote) -> str:
    cost = "no price" if row.cost is None else amount(row.cost)
    return f"{row.encoding}, {row.parts} part{'' if row.parts == 1 else 's'}, {cost}"


def answer_line(q: Quote) -> str:
    row = next((r for r in q.providers if r.provider == q.provider and not r.refused), None)
    through = f"{q.provider} ({_parts(row)})" if row else q.provider
    if q.answer == "send":
        return f"would send now through {through}"
    if q.answer == "hold":
        why = f"{q.code}: {q.reason}" if q.code else "quiet hours"
        return f"would be held until {moment(q.at)} ({why}), then go through {through}"
    what = f"{q.code}: {q.reason}" if q.reason else q.code
    if q.answer == "wait":
        return f"would wait: {what}"
    return f"would be refused: {what}"


def _count(seen: Any, limit: Any, window: str) -> str:
    return f"{seen} {window}" + (f" of {limit}" if limit is not None else " (no limit)")


def velocity_line(velocity: dict[str, Any]) -> str:
    hour, day = velocity.get("per_hour"), velocity.get("per_day")
    if "this_hour" not in velocity:
        if hour is None and day is None:
            return "recipient: no velocity limits"
        limits = [f"{hour} an hour" if hour else "", f"{day} a day" if day else ""]
        return f"recipient: at most {', '.join(filter(None, limits))} (counts not read)"
    line = "recipient: " + ", ".join(
        (
            _count(velocity["this_hour"], hour, "this hour"),
            _count(velocity.get("today", 0), day, "today"),
        )
    )
    if velocity.get("country_limit") is not None:
        country = velocity.get("country") or "unknown country"
        line += f"; {country}: {velocity.get('country_this_hour', 0)} this hour of "
        line += str(velocity["country_limit"])
    return line


def budget_line(budget: dict[str, Any]) -> str:
    caps: dict[str, float] = budget.get("caps") or {}
    spent: dict[str, float] = budget.get("spent") or {}
    view = BudgetView(caps, spent)
    shown = []
    for name, used in view.used().items():
        figure = budget.get("spent_total", view.total) if name == TOTAL else spent.get(name, 0.0)
        shown.append(f"{name} {amount(figure)} of {amount(caps[name])} ({share(used)})")
    return "budget this month: " + "; ".join(shown)


def show_quote(q: Quote, out: TextIO) -> None:
    out.write(f"quote for {q.to} (route {q.route})\n")
    rows = []
    for r in q.providers:
        code, _, reason = r.refused.partition(": ")
        if r.refused:
            note = f"refused: {code}"
        elif r.over_budget:
            note, reason = "over budget", r.over_budget.partition(": ")[2]
        else:
            note, reason = (f"opens {moment(r.opens_at)}" if r.opens_at else ""), ""
        rows.append(([r.provider, r.encoding, str(r.parts), amount(r.cost)], note, reason))
    notes_table(["provider", "encoding", "parts", "cost", "note"], rows, out)
    wrapped(answer_line(q), out)
    wrapped(velocity_line(q.velocity), out)
    if q.budget.get("caps"):
        wrapped(budget_line(q.budget), out)


# --------------------------------------------------------------------------- spend


def month_arg(value: str) -> str:
    """--month: `YYYY-MM` (an argparse type: a bad value is a usage error, exit 2)."""
    match = _MONTH.fullmatch(value.strip())
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 2000:
        raise argparse.ArgumentTypeError(f"not a month like 2026-12 (YYYY-MM, UTC): {value!r}")
    return match[0]


def _row(name: str, spend: float, messages: int, cap: float | None) -> dict[str, Any]:
    used = spend / cap if cap else None
    return {
        "provider": name,
        "spend": round(spend, 6),
        "messages": messages,
        "budget": cap,
        "used": None if used is None else round(used, 4),
        "state": None if used is None else state(used),
    }


def _used(used: float, label: str) -> str:
    return f"{used:.0%}" + ("" if label == "ok" else f" {label}")


def cmd_spend(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    if not ctx.target.health_table:
        raise Failure("this stack has no health table (HealthTableName output): no spend kept")
    month = args.month or now().strftime("%Y-%m")
    found = Counters(ctx.target.health_table, ctx.client("dynamodb")).month(PROVIDERS, month)
    caps = ctx.routing.monthly_budgets
    rows = []
    for name in PROVIDERS:
        spend, messages = found.get(name, (0.0, 0))
        rows.append(_row(name, spend, messages, caps.get(name)))
    total = _row(
        TOTAL,
        sum(r["spend"] for r in rows),
        sum(r["messages"] for r in rows),
        caps.get(TOTAL),
    )

    def human() -> None:
        out.out.write(f"spend in {month} (UTC), in the currency of the routing rules' prices\n")
        table(
            ["provider", "spend", "messages", "budget", "used"],
            [
                [
                    r["provider"],
                    amount(r["spend"]),
                    str(r["messages"]),
                    amount(r["budget"]),
                    "-" if r["used"] is None else _used(r["used"], r["state"]),
                ]
                for r in [*rows, total]
            ],
            out.out,
        )

    out.emit({"month": month, "providers": rows, "total": total}, human)
    return 0
