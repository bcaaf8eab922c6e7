"""Metrics for the local stack: Powertools' EMF lines into moto CloudWatch, and the
template's metric alarms evaluated against them (moto stores alarms but never evaluates them).

Powertools prints each EMF document with ``print`` (``aws_lambda_powertools.metrics``);
``capture_emf`` puts a module-level ``print`` into those modules only, so the documents reach
a ``MetricStore`` instead of stdout, while every other ``print`` is untouched.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("smsgate_local.metrics")

_EMF_MODULES = (
    "aws_lambda_powertools.metrics.base",
    "aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch",
)

Dims = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Point:
    at: float
    namespace: str
    name: str
    dims: Dims
    value: float
    unit: str = "None"


class MetricStore:
    """Every datapoint the functions (and the local stack) emitted, kept in memory for the
    alarm evaluator and queued for ``put_metric_data`` into moto CloudWatch. Points are kept
    per series (namespace, name, dimensions) for ``retention`` seconds (longer than any
    alarm looks back), the newest of each series always; ``version`` moves with every point,
    so a loop can tell that something arrived without reading anything."""

    def __init__(self, limit: int = 200_000, retention: float = 7200.0) -> None:
        self._series: dict[tuple[str, str, Dims], deque[Point]] = {}
        self._limit = limit  # per series
        self.retention = retention
        self._pending: list[Point] = []
        self._lock = threading.Lock()
        self.version = 0

    # ---------------------------------------------------------------- input
    def record(
        self,
        namespace: str,
        name: str,
        dims: Mapping[str, str],
        value: float,
        unit: str = "None",
        at: float | None = None,
    ) -> None:
        point = Point(
            time.time() if at is None else at,
            namespace,
            name,
            frozenset((str(k), str(v)) for k, v in dims.items()),
            float(value),
            unit or "None",
        )
        horizon = time.time() - self.retention
        with self._lock:
            series = self._series.setdefault(
                (namespace, name, point.dims), deque(maxlen=self._limit)
            )
            series.append(point)
            while len(series) > 1 and series[0].at < horizon:
                series.popleft()
            self._pending.append(point)
            self.version += 1

    def emf(self, doc: Mapping[str, Any]) -> int:
        """Record one EMF document; returns the number of datapoints it held."""
        meta = doc.get("_aws") or {}
        stamp = meta.get("Timestamp")
        at = stamp / 1000 if isinstance(stamp, (int, float)) else time.time()
        n = 0
        for directive in meta.get("CloudWatchMetrics") or []:
            namespace = directive.get("Namespace", "")
            for metric in directive.get("Metrics") or []:
                name = metric.get("Name")
                raw = doc.get(name)
                values = raw if isinstance(raw, list) else [raw]
                for dimset in directive.get("Dimensions") or [[]]:
                    dims = {k: str(doc.get(k, "")) for k in dimset}
                    for value in values:
                        if isinstance(value, (int, float)):
                            self.record(namespace, name, dims, value, metric.get("Unit", ""), at)
                            n += 1
        return n

    # ---------------------------------------------------------------- output
    def flush_to(self, cloudwatch: Any) -> int:
        """put_metric_data what was recorded since the last flush (grouped by namespace)."""
        with self._lock:
            pending, self._pending = self._pending, []
        by_ns: dict[str, list[Point]] = {}
        for p in pending:
            by_ns.setdefault(p.namespace, []).append(p)
        for namespace, points in by_ns.items():
            for i in range(0, len(points), 500):
                cloudwatch.put_metric_data(
                    Namespace=namespace,
                    MetricData=[
                        {
                            "MetricName": p.name,
                            "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(p.dims)],
                            "Timestamp": p.at,
                            "Value": p.value,
                            "Unit": p.unit if p.unit in _UNITS else "None",
                        }
                        for p in points[i : i + 500]
                    ],
                )
        return len(pending)

    def values(
        self, namespace: str, name: str, dims: Mapping[str, str], since: float, until: float
    ) -> list[float]:
        with self._lock:
            series = self._series.get((namespace, name, frozenset(dims.items())), ())
            return [p.value for p in series if since <= p.at < until]

    def newest(
        self, namespace: str, name: str, dims: Mapping[str, str], since: float, until: float
    ) -> Point | None:
        """The latest reading of one series within [since, until) (None: no reading)."""
        with self._lock:
            series = self._series.get((namespace, name, frozenset(dims.items())), ())
            found = [p for p in series if since <= p.at < until]
        return max(found, key=lambda p: p.at) if found else None

    def latest(self, namespace: str, name: str) -> dict[Dims, Point]:
        """The newest point of a metric per dimension set."""
        with self._lock:
            return {
                dims: series[-1]
                for (ns, n, dims), series in self._series.items()
                if ns == namespace and n == name and series
            }


_UNITS = {
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
}


def capture_emf(store: MetricStore) -> Callable[[], None]:
    """Route Powertools' EMF prints into ``store``; returns the undo function."""
    import importlib

    def emf_print(*args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str) and '"_aws"' in args[0]:
            try:
                doc = json.loads(args[0])
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                store.emf(doc)
                return
        if args == ("null",):  # single_metric prints null when its block raised
            return
        builtins.print(*args, **kwargs)

    patched = []
    for name in _EMF_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        had = "print" in vars(module)
        old = vars(module).get("print")
        module.print = emf_print  # type: ignore[attr-defined]
        patched.append((module, had, old))

    def undo() -> None:
        for module, had, old in patched:
            if had:
                module.print = old
            else:
                vars(module).pop("print", None)

    return undo


# --------------------------------------------------------------------------- alarms

STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
_STATS: dict[str, Callable[[list[float]], float]] = {
    "Sum": sum,
    "Minimum": min,
    "Maximum": max,
    "Average": lambda v: sum(v) / len(v),
    "SampleCount": lambda v: float(len(v)),
}
# Statistics of a reading (a balance, a queue depth, a health flag) rather than of a count:
# the newest period is judged by its latest reading, so an alarm clears once the reading does.
_GAUGE_STATS = {"Minimum", "Maximum", "Average"}


# ---------------------------------------------------------------- metric math

Value = float | None
Expr = Callable[[Mapping[str, Value]], Value]
_TOKEN = re.compile(
    r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|(>=|<=|==|!=|&&|\|\||[-+*/(),<>]))"
)
_BINARY: dict[str, Callable[[float, float], Value]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b else None,
    ">=": lambda a, b: float(a >= b),
    "<=": lambda a, b: float(a <= b),
    ">": lambda a, b: float(a > b),
    "<": lambda a, b: float(a < b),
    "==": lambda a, b: float(a == b),
    "!=": lambda a, b: float(a != b),
    "AND": lambda a, b: float(bool(a) and bool(b)),
    "OR": lambda a, b: float(bool(a) or bool(b)),
}
_LEVELS = (("OR", "||"), ("AND", "&&"), (">=", "<=", ">", "<", "==", "!="), ("+", "-"), ("*", "/"))


def parse_expression(text: str, ids: Iterable[str]) -> Expr:
    """CloudWatch metric math, the part alarms use: numbers, the queries' ids, + - * /,
    comparisons, AND / OR, ``IF(condition, a, b)`` and ``FILL(id, value)``; a missing
    datapoint (None) stays missing through arithmetic. Anything else is a ValueError."""
    known = set(ids)
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"metric math: cannot read {text[pos:]!r}")
        tokens.append(m.group(m.lastindex or 0))
        pos = m.end()
    at = 0

    def peek() -> str:
        return tokens[at] if at < len(tokens) else ""

    def take(want: str | None = None) -> str:
        nonlocal at
        tok = peek()
        if not tok or (want is not None and tok.upper() != want):
            raise ValueError(f"metric math: expected {want or 'more'} in {text!r}")
        at += 1
        return tok

    def level(n: int) -> Expr:
        if n == len(_LEVELS):
            return unary()
        left = level(n + 1)
        while peek().upper() in _LEVELS[n]:
            op = take().upper()
            op = {"&&": "AND", "||": "OR"}.get(op, op)
            left = _binary(_BINARY[op], left, level(n + 1))
        return left

    def unary() -> Expr:
        if peek() == "-":
            take()
            inner = unary()
            return lambda v: None if (x := inner(v)) is None else -x
        return primary()

    def primary() -> Expr:
        tok = take()
        if tok == "(":
            inner = level(0)
            take(")")
            return inner
        if tok[0].isdigit() or tok[0] == ".":
            number = float(tok)
            return lambda v: number
        if peek() == "(":
            take("(")
            args = [level(0)]
            while peek() == ",":
                take(",")
                args.append(level(0))
            take(")")
            return _function(tok.upper(), args)
        if tok not in known:
            raise ValueError(f"metric math: unknown id {tok!r}")
        return lambda v: v.get(tok)

    expr = level(0)
    if at != len(tokens):
        raise ValueError(f"metric math: unexpected {tokens[at]!r} in {text!r}")
    return expr


def _binary(fn: Callable[[float, float], Value], left: Expr, right: Expr) -> Expr:
    def run(v: Mapping[str, Value]) -> Value:
        a, b = left(v), right(v)
        return None if a is None or b is None else fn(a, b)

    return run


def _function(name: str, args: list[Expr]) -> Expr:
    if name == "FILL" and len(args) == 2:
        series, fill = args
        return lambda v: series(v) if series(v) is not None else fill(v)
    if name == "IF" and len(args) in (2, 3):
        cond, yes = args[0], args[1]
        no = args[2] if len(args) == 3 else (lambda v: None)

        def run(v: Mapping[str, Value]) -> Value:
            c = cond(v)
            return None if c is None else (yes(v) if c else no(v))

        return run
    raise ValueError(f"metric math: {name}() with {len(args)} argument(s) is not evaluated locally")


@dataclass
class MetricQuery:
    """One ``MetricStat`` of a metric-math alarm."""

    id: str
    namespace: str
    metric: str
    dims: dict[str, str]
    statistic: str
    period: int


@dataclass
class AlarmDef:
    name: str
    namespace: str
    metric: str
    dims: dict[str, str]
    statistic: str
    period: int
    evaluation_periods: int
    threshold: float
    comparison: str
    treat_missing: str = "missing"
    datapoints_to_alarm: int | None = None
    alarm_actions: list[str] = field(default_factory=list)
    ok_actions: list[str] = field(default_factory=list)
    description: str = ""
    logical_id: str = ""
    # metric math (``Metrics``): the queries and the expression whose value is compared
    queries: list[MetricQuery] = field(default_factory=list)
    expression: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)  # as put_metric_alarm takes it
    _expr: Expr | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_properties(cls, name: str, props: Mapping[str, Any], logical_id: str) -> AlarmDef:
        if "ExtendedStatistic" in props:
            raise ValueError("extended statistics are not evaluated locally")
        if props.get("ComparisonOperator") not in _COMPARE:
            raise ValueError(f"comparison {props.get('ComparisonOperator')!r} not supported")
        common: dict[str, Any] = {
            "name": name,
            "evaluation_periods": int(props["EvaluationPeriods"]),
            "threshold": float(props["Threshold"]),
            "comparison": str(props["ComparisonOperator"]),
            "treat_missing": str(props.get("TreatMissingData") or "missing"),
            "datapoints_to_alarm": (
                int(props["DatapointsToAlarm"]) if props.get("DatapointsToAlarm") else None
            ),
            "alarm_actions": [str(a) for a in props.get("AlarmActions") or []],
            "ok_actions": [str(a) for a in props.get("OKActions") or []],
            "description": str(props.get("AlarmDescription") or ""),
            "logical_id": logical_id,
        }
        if "Metrics" in props:
            return cls._math(props["Metrics"], common)
        if props.get("Statistic") not in _STATS:
            raise ValueError(f"statistic {props.get('Statistic')!r} not supported")
        return cls(
            namespace=str(props["Namespace"]),
            metric=str(props["MetricName"]),
            dims={str(d["Name"]): str(d["Value"]) for d in props.get("Dimensions") or []},
            statistic=str(props["Statistic"]),
            period=int(props["Period"]),
            **common,
        )

    @classmethod
    def _math(cls, metrics: list[Mapping[str, Any]], common: dict[str, Any]) -> AlarmDef:
        queries, expressions = [], []
        for m in metrics:
            if "MetricStat" in m:
                stat = m["MetricStat"]
                metric = stat["Metric"]
                if stat.get("Stat") not in _STATS:
                    raise ValueError(f"statistic {stat.get('Stat')!r} not supported")
                queries.append(
                    MetricQuery(
                        id=str(m["Id"]),
                        namespace=str(metric["Namespace"]),
                        metric=str(metric["MetricName"]),
                        dims={
                            str(d["Name"]): str(d["Value"]) for d in metric.get("Dimensions") or []
                        },
                        statistic=str(stat["Stat"]),
                        period=int(stat["Period"]),
                    )
                )
            elif "Expression" in m and m.get("ReturnData", True) not in (False, "false"):
                expressions.append((str(m.get("Label") or m["Id"]), str(m["Expression"])))
        if len(expressions) != 1 or not queries:
            raise ValueError("metric math needs one returned expression over MetricStat queries")
        periods = {q.period for q in queries}
        if len(periods) != 1:
            raise ValueError("metric math over queries of different periods")
        label, expression = expressions[0]
        alarm = cls(
            namespace="",
            metric=label,
            dims={},
            statistic="",
            period=periods.pop(),
            queries=queries,
            expression=expression,
            metrics=[dict(m) for m in metrics],
            **common,
        )
        alarm._expr = parse_expression(expression, (q.id for q in queries))
        return alarm

    def put_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "AlarmName": self.name,
            "AlarmDescription": self.description,
            "EvaluationPeriods": self.evaluation_periods,
            "Threshold": self.threshold,
            "ComparisonOperator": self.comparison,
            "TreatMissingData": self.treat_missing,
            "AlarmActions": self.alarm_actions,
            "OKActions": self.ok_actions,
            "ActionsEnabled": True,
        }
        if self.expression:
            kwargs["Metrics"] = self.metrics
        else:
            kwargs.update(
                Namespace=self.namespace,
                MetricName=self.metric,
                Dimensions=[{"Name": k, "Value": v} for k, v in self.dims.items()],
                Statistic=self.statistic,
                Period=self.period,
            )
        if self.datapoints_to_alarm:
            kwargs["DatapointsToAlarm"] = self.datapoints_to_alarm
        return kwargs

    def series(self) -> list[tuple[str, str, dict[str, str]]]:
        """The metrics the alarm reads: (namespace, name, dimensions)."""
        if self.expression:
            return [(q.namespace, q.metric, q.dims) for q in self.queries]
        return [(self.namespace, self.metric, self.dims)]


@dataclass
class AlarmChange:
    alarm: AlarmDef
    old: str
    new: str
    reason: str
    at: float


class AlarmEvaluator:
    """CloudWatch's evaluation, simplified for a stack that starts and stops: each of the last
    ``EvaluationPeriods`` windows of ``Period`` seconds (sliding, ending now) gives one
    datapoint (the statistic of the points in it, or the metric-math expression over its
    queries' statistics; or missing); ``DatapointsToAlarm`` (default all) breaching ones make
    ALARM. ``TreatMissingData``: breaching / notBreaching count a missing window as such;
    ignore keeps the current state when every window is missing; missing gives
    INSUFFICIENT_DATA then.

    Where the local stack differs, on purpose:

    - only windows the alarm existed for count as missing: an empty window that began before
      the alarm was created is no datapoint at all (M of N becomes M of the windows there
      are), so an alarm starts INSUFFICIENT_DATA, then follows its metric, never ALARM for
      want of data it could not have had yet;
    - recovery is immediate: the newest window of a reading (Minimum, Maximum, Average: a
      balance, a queue depth, a health flag) is judged by its latest reading, and when the
      newest window's datapoint is present and not breaching the alarm is OK whatever the
      older windows say (a credit top-up clears the low-credit alarm at the next check, not
      three periods later).

    ``period_cap`` shortens every Period (``--fast``)."""

    def __init__(
        self,
        alarms: Iterable[AlarmDef],
        store: MetricStore,
        cloudwatch: Any = None,
        sns: Any = None,
        on_change: Callable[[AlarmChange], None] | None = None,
        *,
        period_cap: float | None = None,
        created_at: float | None = None,
    ) -> None:
        self.alarms = list(alarms)
        self.period_cap = period_cap
        self.created_at = time.time() if created_at is None else created_at
        self.store = store
        self.cloudwatch, self.sns, self.on_change = cloudwatch, sns, on_change
        self.states: dict[str, str] = {a.name: "INSUFFICIENT_DATA" for a in self.alarms}
        self.reasons: dict[str, str] = {a.name: "not evaluated yet" for a in self.alarms}
        self.changes: deque[AlarmChange] = deque(maxlen=50)
        self._lock = threading.Lock()

    def period_of(self, alarm: AlarmDef) -> float:
        return min(alarm.period, self.period_cap) if self.period_cap else alarm.period

    def _stat(
        self,
        namespace: str,
        metric: str,
        dims: Mapping[str, str],
        statistic: str,
        window: tuple[float, float],
        newest: bool,
    ) -> Value:
        since, until = window
        if newest and statistic in _GAUGE_STATS:
            point = self.store.newest(namespace, metric, dims, since, until)
            return None if point is None else point.value
        values = self.store.values(namespace, metric, dims, since, until)
        return _STATS[statistic](values) if values else None

    def datapoint(self, alarm: AlarmDef, window: tuple[float, float], newest: bool) -> Value:
        """The alarm's datapoint for one window (``newest``: the window ending now)."""
        if alarm.expression and alarm._expr is not None:
            values = {
                q.id: self._stat(q.namespace, q.metric, q.dims, q.statistic, window, newest)
                for q in alarm.queries
            }
            return alarm._expr(values)
        return self._stat(
            alarm.namespace, alarm.metric, alarm.dims, alarm.statistic, window, newest
        )

    def state_of(self, alarm: AlarmDef, now: float) -> tuple[str, str]:
        period = self.period_of(alarm)
        datapoints: list[Value] = []
        newest: Value = None
        for i in range(alarm.evaluation_periods):
            until = now - i * period
            if i and until <= self.created_at:
                break  # before the alarm existed: no such datapoint
            value = self.datapoint(alarm, (until - period, until), newest=i == 0)
            if value is None and until - period < self.created_at:
                continue  # empty, and partly before the alarm existed: not a missing datapoint
            if i == 0:
                newest = value
            datapoints.append(value)
        if not datapoints:
            return "INSUFFICIENT_DATA", f"no data yet (first {period:g}s period)"
        compare = _COMPARE[alarm.comparison]
        needed = min(alarm.datapoints_to_alarm or alarm.evaluation_periods, len(datapoints))
        present = [d for d in datapoints if d is not None]
        shown = ", ".join("-" if d is None else f"{d:g}" for d in datapoints)
        if not present:
            treat = alarm.treat_missing
            if treat == "breaching":
                return "ALARM", "no data (treated as breaching)"
            if treat == "notBreaching":
                return "OK", "no data (treated as not breaching)"
            if treat == "ignore":
                return self.states.get(alarm.name, "INSUFFICIENT_DATA"), "no data (ignored)"
            return "INSUFFICIENT_DATA", "no data"
        breaching = sum(1 for d in present if compare(d, alarm.threshold))
        if alarm.treat_missing == "breaching":
            breaching += len(datapoints) - len(present)
        op = alarm.comparison.replace("Threshold", "")
        reason = (
            f"{alarm.statistic or 'expression'} [{shown}] over {period:g}s: {breaching} of "
            f"{len(datapoints)} datapoint(s) {op} {alarm.threshold:g}"
        )
        if breaching < needed:
            return "OK", reason
        if newest is not None and not compare(newest, alarm.threshold):
            return "OK", reason + ", but not the newest: recovered"
        return "ALARM", reason

    def evaluate(self, now: float | None = None) -> list[AlarmChange]:
        now = time.time() if now is None else now
        changes = []
        with self._lock:
            for alarm in self.alarms:
                new, reason = self.state_of(alarm, now)
                old = self.states.get(alarm.name, "INSUFFICIENT_DATA")
                self.reasons[alarm.name] = reason
                if new == old:
                    continue
                self.states[alarm.name] = new
                change = AlarmChange(alarm, old, new, reason, now)
                self.changes.append(change)
                changes.append(change)
        for change in changes:
            self._publish(change)
        return changes

    def _publish(self, change: AlarmChange) -> None:
        alarm = change.alarm
        if self.cloudwatch is not None:
            try:
                self.cloudwatch.set_alarm_state(
                    AlarmName=alarm.name, StateValue=change.new, StateReason=change.reason[:1000]
                )
            except Exception:
                log.exception("set_alarm_state failed for %s", alarm.name)
        actions = alarm.alarm_actions if change.new == "ALARM" else alarm.ok_actions
        if change.new == "INSUFFICIENT_DATA":
            actions = []
        for arn in actions:
            if self.sns is None or not arn.startswith("arn:aws:sns:"):
                continue
            message = {
                "AlarmName": alarm.name,
                "AlarmDescription": alarm.description,
                "NewStateValue": change.new,
                "OldStateValue": change.old,
                "NewStateReason": change.reason,
                "StateChangeTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(change.at)),
                "Trigger": {
                    "MetricName": alarm.metric,
                    "Namespace": alarm.namespace,
                    "Dimensions": [{"name": k, "value": v} for k, v in alarm.dims.items()],
                },
            }
            try:
                self.sns.publish(
                    TopicArn=arn,
                    Subject=f'{change.new}: "{alarm.name}"'[:100],
                    Message=json.dumps(message),
                )
            except Exception:
                log.exception("SNS publish failed for %s", alarm.name)
        if self.on_change is not None:
            self.on_change(change)
