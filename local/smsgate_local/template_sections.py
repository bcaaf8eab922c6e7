"""The template's per-provider sections, written from the provider registry.

template.yaml is hand-written except between marker lines::

    # BEGIN generated: <section> (python -m smsgate_local.template_sections)
    # END generated: <section>

whose text this module writes from `smsgate.providers.PROVIDERS`: each provider's health alarm;
for each provider with a balance call (`has_balance`) its low-credit threshold parameter,
condition and alarm; and the operations dashboard, whole (its body is one JSON string, which
has no room for markers, so its provider-independent widgets are written here too).
`python -m smsgate_local.template_sections [TEMPLATE]` rewrites the sections in place;
tests/test_template_sections.py fails while the committed template differs from what it writes.

A provider is named three ways here: its contract name (metric dimensions, the secret's entry),
its client's class name (logical ids: `<ClassName>Unhealthy`, `<ClassName>LaneQueue`) and the
name people write (descriptions, dashboard labels): the client's `display_name`.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smsgate.providers import PROVIDERS, ProviderClient

COMMAND = "python -m smsgate_local.template_sections"
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
ENTRY = "  "  # every section holds entries of Parameters, Conditions or Resources
WIDTH = 100 - len(ENTRY)  # the template's line length, less the entries' indentation


@dataclass(frozen=True)
class Provider:
    name: str  # the contract name: metric dimensions, the secret's entry
    ident: str  # the prefix of its logical ids: the client's class name
    title: str  # the name people write
    has_balance: bool

    @classmethod
    def of(cls, client: type[ProviderClient]) -> Provider:
        return cls(client.name, client.__name__, display_name(client), client.has_balance)


def display_name(client: type[ProviderClient]) -> str:
    """The provider's name as people write it ("Club Texting"): its declared `display_name`."""
    return client.display_name


# --------------------------------------------------------------------------- YAML


def folded(key: str, text: str, indent: int) -> str:
    """`key: >-` with `text` wrapped under it (YAML folds the lines back into `text`)."""
    pad = " " * (indent + 2)
    body = textwrap.fill(
        text,
        WIDTH,
        initial_indent=pad,
        subsequent_indent=pad,
        break_on_hyphens=False,  # a line break after a hyphen would fold into "- "
        break_long_words=False,
    )
    return f"{' ' * indent}{key}: >-\n{body}\n"


def low_credit_parameter(p: Provider) -> str:
    description = (
        f"Alarm when {p.title}'s credit balance (in its own units) stays below this. 0 = no"
        f" alarm (a stack without {p.title} credentials publishes no balance, which would"
        " alarm)."
    )
    return "".join(
        [
            f"LowCreditThreshold{p.ident}:\n  Type: Number\n",
            folded("Description", description, 2),
            "  MinValue: 0\n  Default: 100\n",
        ]
    )


def low_credit_condition(p: Provider) -> str:
    return f'Has{p.ident}CreditAlarm: !Not [!Equals [!Ref LowCreditThreshold{p.ident}, "0"]]\n'


def _alarm(lid: str, description: str, metric: str, provider: str, settings: str) -> str:
    """A CloudWatch alarm on one provider's smsgate metric, notifying AlarmTopic."""
    return "".join(
        [
            "  Properties:\n",
            f"    AlarmName: !Sub ${{AWS::StackName}}-{lid}\n",
            folded("AlarmDescription", description, 4),
            "    Namespace: smsgate\n",
            f"    MetricName: {metric}\n",
            "    Dimensions:\n",
            "      - Name: service\n",
            "        Value: smsgate\n",
            "      - Name: Provider\n",
            f"        Value: {provider}\n",
            textwrap.indent(settings, "    "),
            "    AlarmActions: [!Ref AlarmTopic]\n",
            "    OKActions: [!Ref AlarmTopic]\n",
        ]
    )


def health_alarm(p: Provider) -> str:
    description = (
        f"The senders skip {p.title}: it refused smsgate's credentials or has no credit left,"
        " or its error rate or latency over the health window crossed the routing rules'"
        " limits. Messages that may fail over go to another provider; the others wait"
        " (MessagesWaiting). The reason is the metric ProviderMarkedUnhealthy's Reason"
        " dimension, and `smsgate providers` shows the provider's state."
    )
    settings = (
        "Statistic: Minimum\n"
        "Period: 60\n"
        "EvaluationPeriods: 1\n"
        "Threshold: 1\n"
        "ComparisonOperator: LessThanThreshold\n"
        "TreatMissingData: notBreaching\n"
    )
    lid = f"{p.ident}Unhealthy"
    head = f"{lid}:\n  Type: AWS::CloudWatch::Alarm\n"
    return head + _alarm(lid, description, "ProviderHealthy", p.name, settings)


def low_credit_alarm(p: Provider) -> str:
    description = (
        f"{p.title}'s credit is below LowCreditThreshold{p.ident}, or no balance was published"
        " in 2 of the last 3 15-minute periods (the credit check runs every CreditCheckRate,"
        f" which must stay at 15 minutes or less). Top up the {p.title} account before its"
        f" sends are refused for lack of credit (the senders then skip it: {p.ident}Unhealthy)."
        " If the balance is fine, the check is not reporting: read the credit-check"
        " function's logs and the CreditCheckFailures alarm, and check the"
        f" {p.name} entry of the provider secret."
    )
    settings = (
        "Statistic: Minimum\n"
        "Period: 900\n"
        "EvaluationPeriods: 3\n"
        "DatapointsToAlarm: 2\n"
        f"Threshold: !Ref LowCreditThreshold{p.ident}\n"
        "ComparisonOperator: LessThanThreshold\n"
        "TreatMissingData: breaching\n"
    )
    lid = f"{p.ident}LowCredit"
    head = f"{lid}:\n  Type: AWS::CloudWatch::Alarm\n  Condition: Has{p.ident}CreditAlarm\n"
    return head + _alarm(lid, description, "CreditBalance", p.name, settings)


# --------------------------------------------------------------------------- the dashboard


class Raw(str):
    """JSON text put into the body as it is (a `${Parameter}` that !Sub makes a number)."""


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def _block(opening: str, rows: Sequence[Any], closing: str) -> list[str]:
    last = len(rows) - 1
    return [opening, *(f"  {to_json(r)}{',' * (i < last)}" for i, r in enumerate(rows)), closing]


def widget_lines(widget: Mapping[str, Any]) -> list[str]:
    """One widget as the dashboard's text shows it: its settings on a line, a line per metric
    and per annotation."""
    head = {k: v for k, v in widget.items() if k != "properties"}
    settings = dict(widget["properties"])
    annotations = settings.pop("annotations", None)
    metrics = settings.pop("metrics", None)
    parts = [[to_json(settings)[1:-1]]]
    if annotations:
        ((kind, marks),) = annotations.items()
        parts.append(_block(f'"annotations": {{{json.dumps(kind)}: [', marks, "]}"))
    if metrics:
        parts.append(_block('"metrics": [', metrics, "]"))
    lines = [to_json(head)[:-1] + ', "properties": {']
    for n, part in enumerate(parts):
        part[-1] += "," * (n < len(parts) - 1)
        lines += [f"  {line}" for line in part]
    return [*lines, "}}"]


def smsgate_row(metric: str, label: str, provider: str | None = None) -> list[Any]:
    dims = ["Provider", provider] if provider else []
    return ["smsgate", metric, "service", "smsgate", *dims, {"label": label}]


def sqs_row(metric: str, queue: str, label: str, right: bool = False) -> list[Any]:
    extra = {"yAxis": "right"} if right else {}
    return ["AWS/SQS", metric, "QueueName", f"${{{queue}.QueueName}}", {"label": label, **extra}]


def metric_widget(
    place: tuple[int, int, int], title: str, stat: str, period: int, **properties: Any
) -> dict[str, Any]:
    """A time-series widget at (x, y, width), 6 high."""
    x, y, width = place
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": width,
        "height": 6,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "stacked": False,
            "stat": stat,
            "period": period,
            **properties,
        },
    }


MESSAGE_METRICS = (
    ("MessagesSent", "sent"),
    ("MessagesDelivered", "delivered"),
    ("MessagesUndelivered", "undelivered"),
    ("MessagesFailed", "failed"),
    ("SendUnknown", "unknown (no usable answer)"),
    ("SendRetried", "retried"),
)
SEND_QUEUE_METRICS = (
    ("ApproximateNumberOfMessagesVisible", "waiting", False),
    ("ApproximateNumberOfMessagesNotVisible", "in flight / backing off", False),
    ("ApproximateAgeOfOldestMessage", "age of oldest (s)", True),
)
LANE_METRICS = (
    ("ApproximateNumberOfMessagesVisible", "lane waiting", False),
    ("ApproximateNumberOfMessagesNotVisible", "lane in flight", False),
    ("ApproximateAgeOfOldestMessage", "lane age of oldest (s)", True),
)
PER_ROW = 4  # provider widgets side by side at most


def provider_widgets(providers: Sequence[Provider]) -> tuple[list[dict[str, Any]], int]:
    """One messages widget per provider, in rows under the title; and the y below them."""
    per_row = min(len(providers), PER_ROW)
    width = 24 // per_row
    widgets = [
        metric_widget(
            ((n % per_row) * width, 2 + (n // per_row) * 6, width),
            f"{p.title}: messages",
            "Sum",
            300,
            metrics=[smsgate_row(metric, label, p.name) for metric, label in MESSAGE_METRICS],
        )
        for n, p in enumerate(providers)
    ]
    return widgets, 2 + -(-len(providers) // per_row) * 6


def account_widgets(providers: Sequence[Provider], y: int) -> list[dict[str, Any]]:
    credited = [p for p in providers if p.has_balance]
    problems = metric_widget(
        (12, y, 12) if credited else (0, y, 24),
        "Provider account problems",
        "Sum",
        300,
        metrics=[
            smsgate_row("ProviderAuthFailed", "authentication refused"),
            smsgate_row("ProviderCreditExhausted", "credit exhausted"),
            smsgate_row("CreditCheckFailed", "credit check failed"),
        ],
    )
    if not credited:
        return [problems]
    marks = [
        {
            "label": f"{p.title} low-credit threshold",
            "value": Raw(f"${{LowCreditThreshold{p.ident}}}"),
        }
        for p in credited
    ]
    credit = metric_widget(
        (0, y, 12),
        "Provider credit",
        "Minimum",
        900,
        annotations={"horizontal": marks},
        metrics=[smsgate_row("CreditBalance", p.title, p.name) for p in credited],
    )
    return [credit, problems]


def queue_widgets(providers: Sequence[Provider], y: int) -> list[dict[str, Any]]:
    queues = [sqs_row(m, "SendQueue", label, right) for m, label, right in SEND_QUEUE_METRICS]
    queues += [
        sqs_row(m, f"{p.ident}LaneQueue", f"{p.title} {label}", right)
        for p in providers
        for m, label, right in LANE_METRICS
    ]
    visible = "ApproximateNumberOfMessagesVisible"
    dead = [sqs_row(visible, "SendDeadLetterQueue", "send queue")]
    dead += [
        sqs_row(visible, f"{p.ident}LaneDeadLetterQueue", f"{p.title} lane") for p in providers
    ]
    api = ["ApiName", "${AWS::StackName}", "Stage", "${CallbacksApi.Stage}"]
    return [
        metric_widget((0, y, 8), "Send queue and lanes", "Maximum", 300, metrics=queues),
        metric_widget((8, y, 8), "Dead-letter queues", "Maximum", 300, metrics=dead),
        metric_widget(
            (16, y, 8),
            "Callbacks (API Gateway)",
            "Sum",
            300,
            metrics=[
                ["AWS/ApiGateway", metric, *api, {"label": label}]
                for metric, label in (
                    ("Count", "requests"),
                    ("4XXError", "4xx"),
                    ("5XXError", "5xx"),
                )
            ],
        ),
    ]


def service_widgets(providers: Sequence[Provider], y: int) -> list[dict[str, Any]]:
    reconcile = (
        ("ReconcileSettled", "settled by lookup"),
        ("ReconcileStillPending", "still in progress"),
        ("ReconcileNotFound", "provider has no record"),
        ("ReconcileNoStatusApi", "unknown: no status API"),
        ("ReconcileDeadline", "unknown: deadline passed"),
        ("ReconcileLookupFailed", "lookup failed"),
        ("ReconcileDeferred", "left for the next run"),
        ("ReconcileAlreadySettled", "settled meanwhile by a receipt"),
    )
    inbound = (
        ("MessagesReceived", "received"),
        ("OptOuts", "opt-outs"),
        ("OptIns", "opt-ins"),
        ("DuplicatesDropped", "duplicates dropped"),
        ("MessagesScheduled", "held (commercial window)"),
    )
    routing = (
        ("SendFailedOver", "moved to the next provider"),
        ("MessagesWaiting", "waiting (no healthy provider)"),
        ("ProviderMarkedUnhealthy", "providers marked unhealthy"),
        ("ProviderRecovered", "providers recovered"),
        ("RoutingRulesInvalid", "routing rules rejected"),
    )

    def rows(pairs: Sequence[tuple[str, str]]) -> list[list[Any]]:
        return [smsgate_row(metric, label) for metric, label in pairs]

    return [
        metric_widget(
            (0, y, 12),
            "Reconciliation (messages left sent or unknown)",
            "Sum",
            300,
            metrics=rows(reconcile),
        ),
        metric_widget((12, y, 12), "Inbound", "Sum", 300, metrics=rows(inbound)),
        metric_widget(
            (0, y + 6, 12),
            "Provider health (1 = used, 0 = skipped)",
            "Minimum",
            60,
            metrics=[smsgate_row("ProviderHealthy", p.title, p.name) for p in providers],
        ),
        metric_widget(
            (12, y + 6, 12),
            "Routing: failovers and waiting messages",
            "Sum",
            300,
            metrics=rows(routing),
        ),
        *protection_widgets(providers, y + 12),
    ]


BUDGET_WARNING = 80  # % used: the SpendBudgetWarning alarm's threshold


def protection_widgets(providers: Sequence[Provider], y: int) -> list[dict[str, Any]]:
    """Protection (docs/protection.md): the monthly budgets' use (the alarm's figure, the
    most used cap, and each provider's cap) and the messages velocity and budgets held back."""
    budgets = metric_widget(
        (0, y, 12),
        "Monthly budgets (% used)",
        "Maximum",
        300,
        annotations={
            "horizontal": [
                {"label": "SpendBudgetWarning", "value": BUDGET_WARNING},
                {"label": "exhausted", "value": 100},
            ]
        },
        metrics=[
            smsgate_row("SpendBudgetUsed", "most used budget (total included)"),
            *(smsgate_row("SpendBudgetUsed", p.title, p.name) for p in providers),
        ],
    )
    refusals = metric_widget(
        (12, y, 12),
        "Protection: velocity and budgets",
        "Sum",
        300,
        metrics=[
            smsgate_row("VelocityExceeded", "recipient velocity exceeded"),
            smsgate_row("BudgetExhausted", "waiting: no budget left"),
        ],
    )
    return [budgets, refusals]


INTRODUCTION = (
    "## smsgate ${AWS::StackName}\nMessages per provider (5-minute sums), provider credit, the"
    " send queue and its dead-letter queue, the callback API, the reconciliation of messages"
    " left sent or unknown, and protection (monthly budgets, recipient velocity). Alarms go to"
    " the stack's AlarmTopic."
)


def dashboard_widgets(providers: Sequence[Provider]) -> list[dict[str, Any]]:
    title = {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2}
    messages, y = provider_widgets(providers)
    return [
        {**title, "properties": {"markdown": INTRODUCTION}},
        *messages,
        *account_widgets(providers, y),
        *queue_widgets(providers, y + 6),
        *service_widgets(providers, y + 12),
    ]


def dashboard(providers: Sequence[Provider]) -> str:
    lines = ["{", '  "widgets": [']
    widgets = dashboard_widgets(providers)
    for n, widget in enumerate(widgets):
        text = widget_lines(widget)
        text[-1] += "," * (n < len(widgets) - 1)
        lines += [f"    {line}" for line in text]
    lines += ["  ]", "}"]
    body = textwrap.indent("\n".join(lines) + "\n", " " * 6)
    return (
        "OperationsDashboard:\n"
        "  Type: AWS::CloudWatch::Dashboard\n"
        "  Properties:\n"
        "    DashboardName: !Sub ${AWS::StackName}-operations\n"
        "    DashboardBody: !Sub |\n" + body
    )


# --------------------------------------------------------------------------- the sections


Section = Callable[[Sequence[Provider]], str]


def _each(entry: Callable[[Provider], str], *, credited: bool = False, gap: str = "") -> Section:
    """A section of one entry per provider (per provider with a balance call: `credited`)."""

    def section(providers: Sequence[Provider]) -> str:
        return gap.join(entry(p) for p in providers if p.has_balance or not credited)

    return section


SECTIONS: dict[str, Section] = {
    "low-credit parameters": _each(low_credit_parameter, credited=True),
    "low-credit conditions": _each(low_credit_condition, credited=True),
    "provider health alarms": _each(health_alarm, gap="\n"),
    "low-credit alarms": _each(low_credit_alarm, credited=True, gap="\n"),
    "operations dashboard": dashboard,
}


def markers(section: str) -> tuple[str, str]:
    return (
        f"{ENTRY}# BEGIN generated: {section} ({COMMAND})\n",
        f"{ENTRY}# END generated: {section}\n",
    )


def sections(registry: Mapping[str, type[ProviderClient]] = PROVIDERS) -> dict[str, str]:
    """Each section's text (indented as an entry of its template section) for `registry`."""
    providers = [Provider.of(client) for client in registry.values()]
    return {
        name: textwrap.indent(build(providers), ENTRY, lambda line: bool(line.strip()))
        for name, build in SECTIONS.items()
    }


def render(text: str, registry: Mapping[str, type[ProviderClient]] = PROVIDERS) -> str:
    """`text` (a template) with each generated section rewritten for `registry`."""
    for section, body in sections(registry).items():
        begin, end = markers(section)
        if text.count(begin) != 1 or text.count(end) != 1:
            raise ValueError(f"the template needs one pair of markers for {section!r}: {begin}")
        start, stop = text.index(begin) + len(begin), text.index(end)
        if stop < start:
            raise ValueError(f"the END marker of {section!r} comes before its BEGIN")
        text = text[:start] + body + text[stop:]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m smsgate_local.template_sections [TEMPLATE]`: rewrite the generated sections."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0]) if args else TEMPLATE
    old = path.read_text(encoding="utf-8")
    new = render(old)
    if new == old:
        print(f"{path}: up to date")
    else:
        path.write_text(new, encoding="utf-8")
        print(f"{path}: generated sections rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
