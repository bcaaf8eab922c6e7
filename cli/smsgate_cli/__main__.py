"""`smsgate`: drive a local or deployed smsgate stack.

Exit codes, the same for every command (EXIT_CODES): 0 done, 1 refused or failed (the stack,
a provider or smsgate's rules said no, or some rows were refused), 2 usage or configuration
(argparse's errors, a file the command cannot read, no stack to talk to). With --json every
outcome is one JSON document on stdout, errors too (`{"ok": false, "error": ..., "exit_code":
...}`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from smsgate.providers import PROVIDER_NAMES

from . import bus, callbacks, cards, commands, protection, providers, send
from .config import ConfigProblem, resolve
from .context import Context, Failure, Usage

STATUSES = ("queued", "scheduled", "sent", "unknown", "delivered", "undelivered", "failed",
            "received")  # fmt: skip

DESCRIPTION = """\
Drive an smsgate stack: send messages, follow their status, manage opt-outs, provider credit
and Group Texting keywords, and check the configuration.

Which stack: --config PATH (a stack.json), --stack NAME (a deployed CloudFormation stack's
outputs, with your normal AWS credentials and --profile/--region), --local (the local stack's
.local/stack.json, written by `make run`; the default when that file exists), else the
functions' environment variables (MESSAGES_TABLE, STATUS_TABLE, ...)."""

EXIT_CODES = {0: "done", 1: "refused or failed", 2: "usage or configuration error"}
EPILOG = "Exit codes: " + ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())


class UsageError(Exception):
    """An argparse error: exit 2 with the usage line (or a JSON document with --json)."""

    def __init__(self, prog: str, usage: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.usage, self.message = prog, usage, message


class Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with the usage line (as argparse's), never a traceback; `main`
    prints them, as JSON with --json."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, self.format_usage(), message)


def _globals(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The global options, accepted before or after the command."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("stack and output")
    g.add_argument(
        "--local",
        action="store_true",
        default=default(False),
        help="use the local stack's .local/stack.json (default when it exists)",
    )
    g.add_argument(
        "--stack",
        metavar="NAME",
        default=default(None),
        help="a deployed CloudFormation stack: read its outputs",
    )
    g.add_argument(
        "--config",
        metavar="PATH",
        default=default(None),
        help="a stack.json file (the local stack's format)",
    )
    g.add_argument("--region", default=default(None), help="AWS region")
    g.add_argument("--profile", default=default(None), help="AWS profile (credentials)")
    g.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable JSON on stdout",
    )


SEND_DESCRIPTION = """\
Put a message on the send queue, checked first as the sender will check it: the queue body
(docs/contract.md) and the rules of every provider the routing rules could give it to. A
message no provider would accept is refused (exit 1, the rule in words) and nothing is
queued; the number is put in E.164.

The id: --id, else one made from the message (number, text, provider, subject, options) and
the current UTC hour, printed on stdout. Running the same send again within the hour (or in
the first 10 minutes of the next) cannot send it twice: an id already in the messages table
is reported with its status and not queued again (a copy queued before a sender took the
first is dropped by the sender's claim), and an id that names a different message is
refused. --again gives a new random id, to send the same text again on purpose.

--file: one message per CSV row. A header row names the columns (any order, any case): to
(or phone, number, mobile), text (or message), provider, id, subject, commercial, express,
sender, failover; booleans are true/false, yes/no or 1/0; an empty cell leaves the field out
(the options above fill it). An unknown column is refused (exit 2). Without a header the
number is the first column and the text the second. The delimiter is read from the first
line (, ; tab |) unless --delimiter says. Refused rows are reported and the others queued;
the summary counts what was queued; the exit code is 1 when any row was refused."""


QUOTE_DESCRIPTION = """\
What the sender would do with a message and what it would cost, without sending
or recording anything. For each provider the routing rules would try, in order:
the encoding and parts it would bill, the estimated cost (its price per part in
the routing rules' prices), and whether its rules, the destinations or its
monthly budget refuse the message, or (--commercial) when the recipient's quiet
hours let it out. Then the answer: sent now, held until a moment (quiet hours,
or velocity with when_exceeded "hold"), waiting for next month's budget, or
refused with the error code the sender would record (opted_out first: the
opt-outs table is read too). The recipient's messages this hour and today and
the month's spend are read from the health table. The number is shown masked,
the text never.

Exit 0 when the message would go (now or held), 1 when it would be refused or
wait."""


def _message_options(p: argparse.ArgumentParser) -> None:
    """The message's options `send` and `quote` share (the queue body's fields)."""
    p.add_argument("--subject", help="Club Texting / Group Texting subject")
    p.add_argument("--express", action="store_true", help="Club Texting Express delivery")
    p.add_argument(
        "--commercial",
        action="store_true",
        help="marketing: held outside the recipient's quiet hours",
    )
    p.add_argument("--sender", help="TextingHouse sender id (1-11 of A-Za-z0-9)")
    p.add_argument(
        "--failover",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="may another provider carry it after a refusal that blames the provider "
        "(default: yes when no --provider is named)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="smsgate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _globals(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _globals(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str, func: Callable[..., int], **kw: Any) -> Parser:
        p = sub.add_parser(name, help=help_, description=kw.pop("description", help_),
                           parents=[common], epilog=EPILOG, **kw)  # fmt: skip
        p.set_defaults(func=func, command_parser=p, usage_check=None)
        return p  # type: ignore[return-value]

    # send
    p = command(
        "send",
        "put a message (or a CSV of messages) on the send queue",
        send.cmd_send,
        description=SEND_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(usage_check=send.usage_problem)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", help="recipient (E.164, or 10 US digits)")
    target.add_argument("--file", metavar="CSV", help="bulk: one message per CSV row")
    p.add_argument("--text", help="message text (required unless the CSV has a text column)")
    p.add_argument("--provider", choices=PROVIDER_NAMES, help="default: the routing rules'")
    p.add_argument("--id", help="message id (1-32 of A-Za-z0-9_-): the idempotency key")
    p.add_argument(
        "--again",
        action="store_true",
        help="a new random id: send the same message again, on purpose",
    )
    _message_options(p)
    p.add_argument(
        "--at",
        metavar="WHEN",
        help="send it then, not now: ISO 8601 with an offset or Z (2027-01-05T09:00:00+01:00), "
        "1 minute to 365 days ahead; held until then",
    )
    p.add_argument(
        "--valid-for",
        type=_duration,
        metavar="DURATION",
        help="never send it after this long (90s, 5m, 2h, 1d; from --at when given): it "
        "ends failed/expired instead",
    )
    p.add_argument(
        "--delimiter",
        metavar="CHAR",
        help="with --file: the CSV's delimiter (default: read from its first line)",
    )

    p = command(
        "status",
        "a message and its status history",
        commands.cmd_status,
        description=(
            "A message's record and its status history, times in UTC (ISO 8601). An id with "
            "no record yet exits 1: a message queued moments ago may still be on the send "
            "queue (the record is written when a sender takes it). --json prints the stored "
            "item as it is."
        ),
    )
    p.add_argument("id", metavar="ID", help="message id")

    p = command(
        "messages",
        "recent messages (text never shown, only its length)",
        commands.cmd_messages,
        description=(
            "Recent messages, newest first, filtered by status, provider and direction. The "
            "text is never shown, only its length. This SCANS the messages table (reading up to "
            "--max-scan items, then sorting by creation time): fine for an operator, costly on "
            "a big table."
        ),
    )
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--provider", choices=PROVIDER_NAMES)
    p.add_argument("--direction", choices=("in", "out"))
    p.add_argument("--limit", type=_positive, default=20, help="rows to show (default 20)")
    p.add_argument(
        "--max-scan",
        type=_positive,
        default=commands.MAX_SCAN_DEFAULT,
        help=f"stop scanning after this many items (default {commands.MAX_SCAN_DEFAULT})",
    )

    callbacks.add_parser(command, common)

    p = command("optouts", "list, add or remove opted-out numbers", commands.cmd_optouts)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every opted-out number (a table scan)", parents=[common])
    for action, help_ in (("add", "opt a number out (how: manual)"),
                          ("remove", "opt a number back in")):  # fmt: skip
        a = actions.add_parser(action, help=help_, description=help_, parents=[common])
        a.add_argument("phone", metavar="PHONE", help="E.164, or 10 US digits")

    command(
        "credits",
        "credit balance of each configured provider with a balance API",
        commands.cmd_credits,
    )

    command(
        "providers",
        "each provider's health as the senders see it (state, window, credit, price)",
        providers.cmd_providers,
        description=(
            "Each provider's health from the stack's health table: healthy, or skipped (why and "
            "until when), its answers, error rate and mean latency over the routing rules' "
            "window, the last credit the credit check saw, and its price per part."
        ),
    )

    p = command(
        "routing",
        "show, check or set the routing rules (SSM parameter, no redeploy)",
        providers.cmd_routing,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("show", help="the rules in force, with defaults", parents=[common])
    for action, help_ in (
        ("check", "validate a rules file"),
        ("set", "validate a rules file and put it in the parameter"),
    ):
        a = actions.add_parser(action, help=help_, description=help_, parents=[common])
        a.add_argument("file", metavar="FILE", help="routing rules JSON (README)")

    p = command(
        "quote",
        "what the sender would do with a message and what it would cost (nothing sent)",
        protection.cmd_quote,
        description=QUOTE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--to", required=True, help="recipient (E.164, or 10 US digits)")
    p.add_argument("--text", required=True, help="message text (never shown)")
    p.add_argument("--provider", choices=PROVIDER_NAMES, help="default: the routing rules'")
    _message_options(p)

    p = command(
        "spend",
        "a month's spend and messages per provider, against the monthly budgets",
        protection.cmd_spend,
        description=(
            "A month's spend (the sum of the sent messages' cost estimates, from the routing "
            "rules' prices) and messages per provider, from the health table's counters, and "
            "their total; against the routing rules' monthly_budgets (those in force now) each "
            "cap and the share used, marked warning from 80% and exhausted at 100% (a provider "
            "at its cap is skipped; with none left messages wait for the next month). Months "
            "are UTC."
        ),
    )
    p.add_argument(
        "--month",
        type=protection.month_arg,
        metavar="YYYY-MM",
        help="the UTC month (default: the current one)",
    )

    p = command(
        "keywords",
        "Group Texting keywords: check, rent (card from a prompt or stdin) or set up",
        commands.cmd_keywords,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("check", help="is the keyword free to rent", parents=[common])
    a.add_argument("keyword", metavar="KW")
    a = actions.add_parser(
        "rent",
        help="rent a keyword",
        description="Rent a keyword. " + cards.CARD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    a.add_argument("keyword", metavar="KW")
    a = actions.add_parser("setup", help="configure a rented keyword", parents=[common])
    a.add_argument("keyword", metavar="KW")
    a.add_argument("--group", help="group subscribers join")
    a.add_argument("--autoreply", help="auto-reply text")
    a.add_argument("--email", help="forward messages to this e-mail")
    a.add_argument("--url", help="forward messages to this URL")

    p = command(
        "buy-credits",
        "buy Group Texting credits (card from a prompt or stdin)",
        commands.cmd_buy_credits,
        description="Buy Group Texting credits. " + cards.CARD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--credits", type=_positive, required=True, metavar="N")

    p = command(
        "cancel",
        "take back a message that has not gone out",
        commands.cmd_cancel,
        description=(
            "Cancel a message that is still queued, scheduled or held: it ends failed "
            '(cancelled) and its schedule is deleted. Puts {"cancel": "ID"} on the send '
            "queue and waits for the sender's answer. A message already sent is not changed "
            "(exit 1, with its status); cancelling twice is the same as once; an id not seen "
            "yet is recorded cancelled, so its message is never sent."
        ),
    )
    p.add_argument("id", help="the message id")
    p.add_argument("--wait", type=_positive, default=20, metavar="SECONDS")

    p = command(
        "erase",
        "erase one number's messages (personal data request)",
        commands.cmd_erase,
        description=(
            "Erase every message of a number, found through the messages table's ByPhone "
            "index (a query, not a scan): inbound messages are deleted with their status "
            "history, outbound ones anonymised (number, text, subject, sender and error "
            "removed; id and status kept, so the id is still never sent twice). An opt-out "
            "is kept. An audit record without the number goes into the status table "
            "(message_id audit#erasure). Running it again reports nothing left to erase."
        ),
    )
    p.add_argument("--phone", required=True, help="E.164, or 10 US digits")

    p = command(
        "retention",
        "remove inbound message text older than InboundTextRetentionDays",
        commands.cmd_retention,
        description=(
            "Find inbound messages whose text is past its retention (text_expires_at, set "
            "from InboundTextRetentionDays; a query on the ByInboundTextExpiry index) and, "
            "with --apply, remove the text (the rest of the message stays until its TTL). "
            "Without --apply only counts them. The stack's RetentionFunction does this on "
            "its own every RetentionRate; this command is for doing it now. --backfill "
            "instead gives items written before retention existed their expires_at (and "
            "phone, text_expires_at), once after upgrading (a scan, bounded by --max-items)."
        ),
    )
    p.add_argument("--apply", action="store_true", help="write the changes (default: dry run)")
    p.add_argument("--backfill", action="store_true", help="add retention attributes to old items")
    p.add_argument(
        "--retention-days",
        type=_positive,
        default=90,
        help="with --backfill: the stack's MessageRetentionDays (default 90)",
    )
    p.add_argument(
        "--text-retention-days",
        type=_positive,
        default=30,
        help="with --backfill: the stack's InboundTextRetentionDays (default 30)",
    )
    p.add_argument(
        "--max-items",
        type=_positive,
        default=commands.MAX_SCAN_DEFAULT,
        help="with --backfill: items updated per run, at most (default %(default)s)",
    )

    p = command(
        "events",
        "show the application events (status, inbound, opt-out) as they reach the bus",
        bus.cmd_events,
        description=(
            "Subscribe to the stack's events bus for as long as the command runs: a temporary "
            "SQS queue and a rule on the bus targeting it, both removed when it ends (Ctrl-C "
            "or SIGTERM with --follow). Shows the events that arrive after it starts, one line "
            "each (numbers masked, no text), or with --json each EventBridge event as one JSON "
            "line, as applications receive it."
        ),
    )
    p.add_argument("--follow", "-f", action="store_true", help="until Ctrl-C")
    p.add_argument(
        "--type",
        action="append",
        choices=sorted(bus.DETAIL_TYPES),
        help="only these events (repeatable; default all)",
    )
    p.add_argument("--id", help="only the events of this message (status or inbound)")
    p.add_argument(
        "--wait",
        type=_positive,
        default=20,
        help="without --follow: stop after this many seconds (default 20)",
    )
    p.add_argument("--limit", type=_positive, help="stop after this many events")

    command(
        "doctor",
        "check the configuration: tables, queues, secret, providers (OK/FAIL each)",
        commands.cmd_doctor,
    )
    return parser


def _duration(value: str) -> int:
    """`90`, `90s`, `5m`, `2h`, `1d` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    text = value.strip().lower()
    scale = units.get(text[-1:], 0)
    number = text[:-1] if scale else text
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration like 90s, 5m, 2h or 1d: {value!r}")
    return int(number) * (scale or 1)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return number


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    sink = commands.Out(json="--json" in argv, out=out, err=err)
    try:
        code = _run(argv, sink)
        out.flush()
    except BrokenPipeError:  # `smsgate ... | head`: the reader left, nothing more to say
        _quiet(out)
        return 0
    return code


def _run(argv: list[str], sink: commands.Out) -> int:
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(sink.out), contextlib.redirect_stderr(sink.err):
            args = parser.parse_args(argv)
        check = getattr(args, "usage_check", None)
        problem = check(args) if check else None
        if problem:
            args.command_parser.error(problem)
    except SystemExit as exc:  # --help (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except UsageError as exc:
        sink.err.write(exc.usage)
        return _fail(sink, exc.message, 2, exc.prog, usage=exc.usage.strip())
    sink.json = args.json
    prog = f"smsgate {args.command}"
    try:
        target = resolve(
            config=args.config,
            stack=args.stack,
            local=args.local,
            region=args.region,
            profile=args.profile,
        )
        return int(args.func(args, Context(target), sink))
    except ConfigProblem as exc:
        return _fail(sink, str(exc), 2, prog)
    except Usage as exc:
        return _fail(sink, str(exc), 2, prog, **exc.details)
    except Failure as exc:
        return _fail(sink, str(exc), 1, prog, **exc.details)
    except KeyboardInterrupt:
        return _fail(sink, "interrupted", 130, prog)
    except BrokenPipeError:
        raise
    except Exception as exc:  # AWS and network errors: one clear line, no traceback
        return _fail(sink, _aws_reason(exc), 1, prog)


def _quiet(out: TextIO) -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())


def _aws_reason(exc: BaseException) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        e = exc.response.get("Error", {})
        op = getattr(exc, "operation_name", "")
        return f"{op}: {e.get('Code', 'error')}: {e.get('Message', '')}".strip()
    if isinstance(exc, BotoCoreError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _fail(
    sink: commands.Out, message: str, code: int, prog: str = "smsgate", **details: Any
) -> int:
    sink.note(f"{prog}: error: {message}")
    if sink.json:
        document = {"ok": False, "error": message, "exit_code": code, **details}
        sink.out.write(commands.to_json(document) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
