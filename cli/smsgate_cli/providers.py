"""`smsgate providers` (each provider's health as the senders see it) and `smsgate routing`
(show, check or set the routing rules)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from smsgate.health import HealthBoard
from smsgate.providers import PROVIDERS
from smsgate.routing import RoutingConfig, RoutingError

from .commands import Out
from .context import Context, Failure
from .output import table


def _rules(ctx: Context) -> RoutingConfig:
    return ctx.routing


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def cmd_providers(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    if not ctx.target.health_table:
        raise Failure("this stack has no health table (HealthTableName output)")
    rules = _rules(ctx)
    board = HealthBoard(ctx.target.health_table, ctx.client("dynamodb"), lambda: rules.health)
    configured = set(ctx.configured_providers())
    now = time.time()
    rows: list[dict[str, Any]] = []
    for name in PROVIDERS:
        state = board.state(name)
        window = board.window(name, now)
        until = float(state.get("unhealthy_until", 0) or 0)
        if name not in configured:
            health = "not configured"
        elif until and now < until:
            health = f"skipped: {state.get('reason', '?')} until {_when(until)}"
        elif until:
            health = f"{state.get('reason', '?')}: cool-down over, next send probes it"
        else:
            health = "healthy"
        waiting, in_flight = _lane_depth(ctx, name)
        rows.append(
            {
                "provider": name,
                "health": health,
                "answers": window.samples,
                "error_rate": round(window.error_rate, 3),
                "mean_latency_ms": round(window.mean_latency_ms),
                "credit": float(state["credit"]) if "credit" in state else None,
                "credit_at": _when(float(state["credit_at"])) if "credit_at" in state else None,
                "price": rules.price(name),
                "lane_waiting": waiting,
                "lane_in_flight": in_flight,
            }
        )
    out.emit(
        {"providers": rows, "window_seconds": rules.health.window_seconds},
        lambda: table(
            ["provider", "health", "answers", "errors", "latency", "credit", "price", "lane"],
            (
                [
                    r["provider"],
                    r["health"],
                    str(r["answers"]),
                    f"{r['error_rate']:.0%}",
                    f"{r['mean_latency_ms']} ms",
                    _credit(r["credit"], r["credit_at"]),
                    "-" if r["price"] is None else f"{r['price']:g}",
                    "-"
                    if r["lane_waiting"] is None
                    else f"{r['lane_waiting']} waiting, {r['lane_in_flight']} in flight",
                ]
                for r in rows
            ),
            out.out,
        ),
    )
    return 0


def _credit(credit: float | None, at: str | None) -> str:
    """The credit check's last reading and its time of day (UTC): `997 at 03:05:21`."""
    if credit is None:
        return "-"
    return f"{credit:g} at {at[11:19]}" if at else f"{credit:g}"


def _lane_depth(ctx: Context, provider: str) -> tuple[int | None, int | None]:
    """Messages waiting in the provider's lane and being sent (or backing off) from it."""
    url = ctx.target.lane_urls.get(provider)
    if not url:
        return None, None
    attrs = ctx.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs.get("ApproximateNumberOfMessages", 0)),
        int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def cmd_routing(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    if args.action == "show":
        rules = _rules(ctx)
        out.out.write(json.dumps(rules.model_dump(mode="json"), indent=2) + "\n")
        return 0
    try:
        document = json.loads(Path(args.file).read_text(encoding="utf-8"))
        rules = RoutingConfig.parse(document)
    except (OSError, json.JSONDecodeError, RoutingError) as exc:
        raise Failure(f"{args.file}: {exc}") from None
    summary = {"rules": [r.name or f"rule {i + 1}" for i, r in enumerate(rules.rules)]}
    if args.action == "set":
        if not ctx.target.routing_parameter:
            raise Failure("this stack has no routing parameter (RoutingRulesParameterName)")
        ctx.client("ssm").put_parameter(
            Name=ctx.target.routing_parameter,
            Value=json.dumps(document),
            Type="String",
            Overwrite=True,
        )
        out.note("routing rules set; the senders read them within a minute")
    out.emit(summary, lambda: out.out.write("valid: " + ", ".join(summary["rules"]) + "\n"))
    return 0
