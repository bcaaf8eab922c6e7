"""Logging and metrics for every function, in one place. Personal data is masked before it
reaches a log line: numbers as `+3361****678`, message text never."""

from __future__ import annotations

import threading
from collections import Counter

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from .phones import mask

NAMESPACE = "smsgate"
SERVICE = "smsgate"

logger = Logger(service=SERVICE)

_counts: Counter[tuple[str, str, str]] = Counter()
_lock = threading.Lock()

__all__ = ["NAMESPACE", "count", "flush_metrics", "gauge", "logger", "mask"]


def count(name: str, provider: str = "", value: int = 1, reason: str = "") -> None:
    """Count an event; the counts of one invocation go out together in `flush_metrics`.
    `reason` (a small, fixed vocabulary) adds a per-provider-and-reason figure."""
    with _lock:
        _counts[(name, provider, reason)] += value


def gauge(name: str, value: float, provider: str = "") -> None:
    """Publish one figure now (e.g. a provider's credit balance)."""
    _emit(name, value, provider, MetricUnit.Count)


def flush_metrics() -> None:
    """Emit the counted metrics as CloudWatch EMF lines: one per (metric, provider), and one
    total per metric without the provider (what the stack's alarms watch)."""
    with _lock:
        pending = list(_counts.items())
        _counts.clear()
    totals: Counter[str] = Counter()
    per_provider: Counter[tuple[str, str]] = Counter()
    for (name, provider, reason), value in pending:
        totals[name] += value
        if provider:
            per_provider[(name, provider)] += value
        if provider and reason:
            _emit(name, value, provider, MetricUnit.Count, reason)
    for (name, provider), value in per_provider.items():
        _emit(name, value, provider, MetricUnit.Count)
    for name, value in totals.items():
        _emit(name, value, "", MetricUnit.Count)


def _emit(name: str, value: float, provider: str, unit: MetricUnit, reason: str = "") -> None:
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        if provider:
            metric.add_dimension(name="Provider", value=provider)
        if reason:
            metric.add_dimension(name="Reason", value=reason)
