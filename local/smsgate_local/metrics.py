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
    alarm evaluator and queued for ``put_metric_data`` into moto CloudWatch."""

    def __init__(self, limit: int = 200_000) -> None:
        self._points: deque[Point] = deque(maxlen=limit)
        self._pending: list[Point] = []
        self._lock = threading.Lock()

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
        with self._lock:
            self._points.append(point)
            self._pending.append(point)

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
        want = frozenset(dims.items())
        with self._lock:
            return [
                p.value
                for p in self._points
                if p.name == name
                and p.namespace == namespace
                and p.dims == want
                and since <= p.at < until
            ]

    def latest(self, namespace: str, name: str) -> dict[Dims, Point]:
        """The newest point of a metric per dimension set."""
        out: dict[Dims, Point] = {}
        with self._lock:
            for p in self._points:
                if p.name == name and p.namespace == namespace:
                    out[p.dims] = p
        return out


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

    @classmethod
    def from_properties(cls, name: str, props: Mapping[str, Any], logical_id: str) -> AlarmDef:
        if "Metrics" in props or "ExtendedStatistic" in props:
            raise ValueError("metric math and extended statistics are not evaluated locally")
        if props.get("ComparisonOperator") not in _COMPARE:
            raise ValueError(f"comparison {props.get('ComparisonOperator')!r} not supported")
        if props.get("Statistic") not in _STATS:
            raise ValueError(f"statistic {props.get('Statistic')!r} not supported")
        return cls(
            name=name,
            namespace=str(props["Namespace"]),
            metric=str(props["MetricName"]),
            dims={str(d["Name"]): str(d["Value"]) for d in props.get("Dimensions") or []},
            statistic=str(props["Statistic"]),
            period=int(props["Period"]),
            evaluation_periods=int(props["EvaluationPeriods"]),
            threshold=float(props["Threshold"]),
            comparison=str(props["ComparisonOperator"]),
            treat_missing=str(props.get("TreatMissingData") or "missing"),
            datapoints_to_alarm=(
                int(props["DatapointsToAlarm"]) if props.get("DatapointsToAlarm") else None
            ),
            alarm_actions=[str(a) for a in props.get("AlarmActions") or []],
            ok_actions=[str(a) for a in props.get("OKActions") or []],
            description=str(props.get("AlarmDescription") or ""),
            logical_id=logical_id,
        )

    def put_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "AlarmName": self.name,
            "AlarmDescription": self.description,
            "Namespace": self.namespace,
            "MetricName": self.metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dims.items()],
            "Statistic": self.statistic,
            "Period": self.period,
            "EvaluationPeriods": self.evaluation_periods,
            "Threshold": self.threshold,
            "ComparisonOperator": self.comparison,
            "TreatMissingData": self.treat_missing,
            "AlarmActions": self.alarm_actions,
            "OKActions": self.ok_actions,
            "ActionsEnabled": True,
        }
        if self.datapoints_to_alarm:
            kwargs["DatapointsToAlarm"] = self.datapoints_to_alarm
        return kwargs


@dataclass
class AlarmChange:
    alarm: AlarmDef
    old: str
    new: str
    reason: str
    at: float


class AlarmEvaluator:
    """CloudWatch's evaluation, simplified: each of the last ``EvaluationPeriods`` windows of
    ``Period`` seconds (sliding, ending now) gives one datapoint (the statistic of the points in
    it, or missing); ``DatapointsToAlarm`` (default all) breaching ones make ALARM.
    ``TreatMissingData``: breaching / notBreaching count a missing window as such; ignore keeps
    the current state when every window is missing; missing gives INSUFFICIENT_DATA then.
    Windows from before the alarm was created are not evaluated (M of N becomes M of the
    windows that exist, at most). ``period_cap`` shortens every Period (``--fast``)."""

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

    def state_of(self, alarm: AlarmDef, now: float) -> tuple[str, str]:
        period = self.period_of(alarm)
        datapoints: list[float | None] = []
        for i in range(alarm.evaluation_periods):
            until = now - i * period
            if i and until <= self.created_at:
                break  # before the alarm existed: no such datapoint
            values = self.store.values(
                alarm.namespace, alarm.metric, alarm.dims, until - period, until
            )
            datapoints.append(_STATS[alarm.statistic](values) if values else None)
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
            f"{alarm.statistic} [{shown}] over {period:g}s: {breaching} of "
            f"{len(datapoints)} datapoint(s) {op} {alarm.threshold:g}"
        )
        return ("ALARM" if breaching >= needed else "OK"), reason

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
