"""`smsgate callbacks urls` (the six URLs to give the providers) and `smsgate callbacks
rotate-token` (a new callback token, the previous one still accepted for a while)."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from smsgate.tokens import CALLBACK_ROUTES, CallbackTokens, rotated

from .commands import Out
from .context import Context, Failure
from .output import table

MAX_KEEP_DAYS = 90


def _urls(ctx: Context, token: str) -> list[dict[str, str]]:
    base = ctx.target.api_url.rstrip("/") or "<CallbacksApiUrl>"
    return [
        {"provider": p, "for": what, "method": m, "url": base + path.format(token=token)}
        for p, what, m, path in CALLBACK_ROUTES
    ]


def _show(out: Out, urls: list[dict[str, str]], header: str, data: dict[str, Any]) -> None:
    def human() -> None:
        out.out.write(header + "\n")
        rows = ([u["provider"], u["for"], u["method"], u["url"]] for u in urls)
        table(["provider", "for", "method", "url"], rows, out.out)

    out.emit({**data, "urls": urls}, human)


def cmd_callbacks(args: argparse.Namespace, ctx: Context, out: Out) -> int:
    tokens = CallbackTokens.from_secret(ctx.secret)
    if args.action == "urls":
        if not tokens.current:
            raise Failure("the provider secret has no callback_token: run rotate-token")
        _show(out, _urls(ctx, tokens.current), "give each provider its URL:", {})
        return 0
    keep = timedelta(days=args.keep_previous)
    value, new = rotated(ctx.secret, keep)
    ctx.client("secretsmanager").put_secret_value(
        SecretId=ctx.target.secret_arn, SecretString=json.dumps(value)
    )
    until = value.get("previous_callback_token_until")
    note = (
        f"the previous token is still accepted until {until}: update every provider before then "
        "(metric CallbackPreviousToken counts the callbacks that still use it)"
        if until
        else "the previous token is refused from now on (within the functions' secret cache "
        "age, SECRET_MAX_AGE, 5 minutes by default): callbacks fail until each provider has "
        "its new URL"
    )
    header = f"new callback token written; {note}. The new URLs:"
    _show(out, _urls(ctx, new), header, {"rotated": True, "previous_accepted_until": until})
    return 0


def add_parser(command: Any, common: argparse.ArgumentParser) -> None:
    p = command(
        "callbacks",
        "the providers' callback URLs, and rotating their token",
        cmd_callbacks,
        description=(
            "`urls` prints the six callback URLs to give the providers. `rotate-token` writes "
            "a new callback token into the provider secret and prints the new URLs; the "
            "previous token is still accepted for --keep-previous days (0: refused at once, "
            "for a token that leaked), so callbacks keep arriving while each provider's "
            "dashboard is updated."
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("urls", help="the six URLs to give the providers", parents=[common])
    rotate = actions.add_parser(
        "rotate-token", help="a new token; the previous one accepted for a while", parents=[common]
    )
    rotate.add_argument(
        "--keep-previous",
        type=_days,
        default=7,
        metavar="DAYS",
        help=f"days the previous token is still accepted (0-{MAX_KEEP_DAYS}; default 7)",
    )


def _days(raw: str) -> float:
    try:
        days = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {raw!r}") from None
    if not 0 <= days <= MAX_KEEP_DAYS:
        raise argparse.ArgumentTypeError(f"between 0 and {MAX_KEEP_DAYS} days")
    return days
