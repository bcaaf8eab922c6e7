"""When a commercial message may go out: business days and hours in the recipient's local time.

For a provider that `holds_commercial` (its document allows commercial SMS on working days
during the day, never on Sundays or public holidays). The window is configuration
(`CommercialWindows`, default Mon-Fri 08:00-20:00, Sat 10:00-15:00: docs/providers.md). A
number with several time zones (a US area code spanning two) is only "open" when it is open in
all of them; a number with no zone of its own (a test number) takes the provider's `home`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from phonenumbers import timezone as phone_timezone

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Home = tuple[str, str]  # (time zone, holiday region) for numbers that carry neither
HORIZON_DAYS = 21
_PART = re.compile(
    r"^\s*(?P<d1>[a-z]{3})(?:-(?P<d2>[a-z]{3}))?\s+(?P<t1>\d\d:\d\d)-(?P<t2>\d\d:\d\d)\s*$"
)


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time


@lru_cache(maxsize=8)
def parse_windows(spec: str) -> tuple[Window, ...]:
    """`"mon-fri 08:00-20:00; sat 10:00-15:00"` -> windows; a ValueError names the bad part."""
    windows = []
    for part in filter(str.strip, spec.lower().split(";")):
        match = _PART.match(part)
        if not match or match["d1"] not in DAYS or (match["d2"] and match["d2"] not in DAYS):
            raise ValueError(
                f"commercial window {part.strip()!r} is not like 'mon-fri 08:00-20:00'"
            )
        first = DAYS.index(match["d1"])
        last = DAYS.index(match["d2"]) if match["d2"] else first
        start, end = time.fromisoformat(match["t1"]), time.fromisoformat(match["t2"])
        if end <= start or last < first:
            raise ValueError(f"commercial window {part.strip()!r} ends before it starts")
        windows.append(Window(frozenset(range(first, last + 1)), start, end))
    if not windows:
        raise ValueError("no commercial window configured")
    return tuple(windows)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zones_and_region(e164: str, home: Home) -> tuple[tuple[str, ...], str]:
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return (home[0],), home[1]
    # phonenumbers answers "Etc/Unknown" (not a tz database zone) for numbers it cannot place
    zones = tuple(z for z in phone_timezone.time_zones_for_number(number) if z in _known_zones())
    region = phonenumbers.region_code_for_number(number) or home[1]
    return zones or (home[0],), region


@lru_cache(maxsize=64)
def _holidays(region: str, year: int) -> Any:
    import holidays  # imported on first commercial message only: it is slow to load

    try:
        return holidays.country_holidays(region, years=year)
    except NotImplementedError:
        return {}


def _open_in_zone(moment: datetime, zone: str, region: str, windows: tuple[Window, ...]) -> bool:
    local = moment.astimezone(ZoneInfo(zone))
    if local.date() in _holidays(region, local.year):
        return False
    clock = local.time().replace(tzinfo=None)
    return any(local.weekday() in w.days and w.start <= clock < w.end for w in windows)


def is_open(moment: datetime, e164: str, spec: str, home: Home) -> bool:
    windows = parse_windows(spec)
    zones, region = zones_and_region(e164, home)
    return all(_open_in_zone(moment, z, region, windows) for z in zones)


def next_open(moment: datetime, e164: str, spec: str, home: Home) -> datetime:
    """The first instant at or after `moment` (UTC) when the window is open for `e164`.

    The intersection of every zone's windows opens when one of them opens, so the window
    starts of each zone over the next weeks are the only candidates to test.
    """
    if is_open(moment, e164, spec, home):
        return moment
    windows = parse_windows(spec)
    zones, _ = zones_and_region(e164, home)
    candidates = []
    for zone in zones:
        tz = ZoneInfo(zone)
        first_day: date = moment.astimezone(tz).date()
        for offset in range(HORIZON_DAYS):
            day = first_day + timedelta(days=offset)
            for w in windows:
                if day.weekday() in w.days:
                    start = datetime.combine(day, w.start, tzinfo=tz).astimezone(UTC)
                    if start > moment:
                        candidates.append(start)
    for candidate in sorted(candidates):
        if is_open(candidate, e164, spec, home):
            return candidate
    raise ValueError(f"no commercial window opens within {HORIZON_DAYS} days")
