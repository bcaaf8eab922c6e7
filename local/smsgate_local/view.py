"""The live view of `make run`, fitted to the terminal: what a snapshot of the local stack
shows (``Snapshot``), laid out in ``render(snapshot, width, height)`` — the title, each
provider's credit and health, the alarms in ALARM, then the latest events, then recent
messages, as many of each as the terminal holds, no line wider than it. ``Screen`` redraws
only when the lines change. Numbers are masked and no message text is shown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO


@dataclass
class ProviderRow:
    name: str
    credit: str  # the credit check's last reading ("1000", "n/a", "no API")
    health: str  # "healthy", "skipped: credit until 12:00:00", ...
    waiting: int | None = None  # in its lane
    in_flight: int | None = None  # batches being sent from its lane


@dataclass
class MessageRow:
    id: str
    direction: str
    provider: str
    number: str  # masked
    status: str
    error_code: str = ""


@dataclass
class Snapshot:
    clock: str  # HH:MM
    api_url: str = ""
    queue: int | None = None
    dlq: int | None = None
    providers: list[ProviderRow] = field(default_factory=list)
    alarms: dict[str, str] = field(default_factory=dict)  # name -> state
    reasons: dict[str, str] = field(default_factory=dict)  # name -> why
    events: list[str] = field(default_factory=list)  # oldest first (alarm changes, bus events)
    messages: list[MessageRow] = field(default_factory=list)  # newest first
    hints: list[str] = field(default_factory=list)  # commands, shown whole or not at all


def clip(line: str, width: int, ellipsis: str = "…") -> str:
    if len(line) <= width:
        return line
    if width <= len(ellipsis):
        return line[: max(0, width)]
    return line[: width - len(ellipsis)] + ellipsis


def title(snap: Snapshot, width: int) -> str:
    """The first line, made of whole parts only: those that do not fit are left out."""
    parts = [f"queue {_n(snap.queue)}", f"DLQ {_n(snap.dlq)}"]
    if snap.api_url:
        parts.append(f"API {snap.api_url}")
    parts.append("Ctrl-C stops")
    line = f"smsgate local  {snap.clock}"
    for part in parts:
        if len(line) + 2 + len(part) <= width:
            line += "  " + part
    return line


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


def provider_lines(rows: Sequence[ProviderRow], width: int) -> list[str]:
    """One line per provider, in columns when they fit the width, else in short."""
    health = max((len(r.health) for r in rows), default=0) + 2
    credit = max((len(r.credit) for r in rows), default=0) + 1
    wide = [
        f"{r.name:<13}credit {r.credit:<{credit}}{r.health:<{health}}"
        f"lane {_n(r.waiting)} waiting, {_n(r.in_flight)} sending"
        for r in rows
    ]
    if all(len(line) <= width for line in wide):
        return wide
    return [f"{r.name} {r.credit} {r.health} {_n(r.waiting)}/{_n(r.in_flight)}" for r in rows]


def alarm_lines(snap: Snapshot, width: int, room: int, ellipsis: str) -> list[str]:
    """A count of the alarms by state, then one line per alarm in ALARM (with why)."""
    if room <= 0 or not snap.alarms:
        return []
    firing = [name for name, state in snap.alarms.items() if state == "ALARM"]
    counts: dict[str, int] = {}
    for state in snap.alarms.values():
        counts[state] = counts.get(state, 0) + 1
    order = ("ALARM", "OK", "INSUFFICIENT_DATA")
    summary = "alarms: " + ", ".join(
        f"{counts[s]} {s}" for s in (*order, *sorted(set(counts) - set(order))) if counts.get(s)
    )
    lines = [summary]
    shown = firing if len(firing) <= room - 1 else firing[: max(0, room - 2)]
    for name in shown:
        reason = snap.reasons.get(name, "")
        lines.append(clip(f"  ALARM  {name}  {reason}".rstrip(), width, ellipsis))
    if len(shown) < len(firing):
        lines.append(f"  ... {len(firing) - len(shown)} more in ALARM")
    return lines[:room]


def message_lines(rows: Sequence[MessageRow], room: int) -> list[str]:
    if room < 2 or not rows:
        return []
    head = f"{'message':<28} {'dir':<3} {'provider':<12} {'number':<14} {'status':<11} error"
    body = [
        f"{m.id[:28]:<28} {m.direction:<3} {m.provider:<12} {m.number:<14} {m.status:<11} "
        f"{m.error_code}".rstrip()
        for m in rows
    ]
    return [head, *body[: room - 1]]


def render(snap: Snapshot, width: int, height: int, ellipsis: str = "…") -> list[str]:
    """At most ``height`` lines of at most ``width`` characters, the most useful first."""
    width, height = max(1, width), max(1, height)
    sections: list[list[str]] = [[title(snap, width)]]
    used = 1
    providers = provider_lines(snap.providers, width)[: height - used]
    sections.append(providers)
    used += len(providers)
    alarms = alarm_lines(snap, width, height - used, ellipsis)
    sections.append(alarms)
    used += len(alarms)
    room = height - used
    events: list[str] = []
    if room >= 2 and snap.events:
        # the events first; recent messages share what is left (at least 3 lines each)
        cap = room if not snap.messages else max(min(room, 4), room // 2 + 1)
        latest = list(reversed(snap.events))[: cap - 1]
        events = ["recent events (smsgate events --follow):", *(f"  {e}" for e in latest)]
    sections.append(events)
    used += len(events)
    messages = message_lines(snap.messages, height - used)
    sections.append(messages)
    used += len(messages)
    sections.append([h for h in snap.hints if len(h) <= width][: height - used])
    sections = [s for s in sections if s]
    spare = height - sum(len(s) for s in sections)
    lines: list[str] = []
    for i, section in enumerate(sections):
        if i and spare > 0:  # a blank line between sections, while there is room
            lines.append("")
            spare -= 1
        lines += section
    return [clip(line, width, ellipsis) for line in lines[:height]]


class Screen:
    """Draws the lines at the top of a terminal (no scrolling: the cursor goes home, each line
    is cleared to its end, the rest of the screen below); nothing when the lines and the size
    are what was drawn last."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._last: tuple[int, int, list[str]] | None = None

    def draw(self, lines: list[str], width: int, height: int) -> bool:
        if self._last == (width, height, lines):
            return False
        self._last = (width, height, list(lines))
        self.out.write("\x1b[H" + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J")
        self.out.flush()
        return True
