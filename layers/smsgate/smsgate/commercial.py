"""When a commercial message may go out: quiet hours in the recipient's local time.

Every commercial message (`commercial: true`) keeps its country's quiet hours: a window per
country (the routing document's `quiet_hours`, over `DEFAULT_QUIET_HOURS`). A provider that
`holds_commercial` (its document allows commercial SMS on working days during the day, never on
Sundays or public holidays) adds its own window (`CommercialWindows`, default Mon-Fri
08:00-20:00, Sat 10:00-15:00: docs/providers.md): the message goes when both are open.
Public holidays of the number's country close every window. A number with several time zones
(a US area code spanning two) is only "open" when it is open in all of them; a number with no
zone of its own (a test number) takes the provider's `home`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Home = tuple[str, str]  # (time zone, holiday region) for numbers that carry neither
HORIZON_DAYS = 21
_PART = re.compile(
    r"^\s*(?P<d1>[a-z]{3})(?:-(?P<d2>[a-z]{3}))?\s+(?P<t1>\d\d:\d\d)-(?P<t2>\d\d:\d\d)\s*$"
)

# Quiet hours when the routing document names none for a country (`*`: every other country).
# Europe (the EU and EEA, the United Kingdom, Switzerland) keeps working days and hours;
# the United States and Canada 08:00-21:00 every day.
WORKING_HOURS = "mon-fri 08:00-20:00; sat 10:00-15:00"
EU = frozenset(
    {"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"}
    | {"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"}
)
EUROPE = EU | {"IS", "LI", "NO"} | {"GB", "CH"}  # the rest of the EEA; the UK, Switzerland
NORTH_AMERICA_HOURS = "mon-sun 08:00-21:00"
REST_HOURS = "mon-sat 08:00-20:00"
ANY_COUNTRY = "*"
DEFAULT_QUIET_HOURS: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(sorted(EUROPE), WORKING_HOURS),
        "US": NORTH_AMERICA_HOURS,
        "CA": NORTH_AMERICA_HOURS,
        ANY_COUNTRY: REST_HOURS,
    }
)


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time


@lru_cache(maxsize=64)
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


def quiet_window(region: str, quiet: Mapping[str, str] | None = None) -> str:
    """The quiet-hours window of a country: the document's for it, else its default, else the
    document's `*`, else the default `*`."""
    table = quiet or {}
    return (
        table.get(region)
        or DEFAULT_QUIET_HOURS.get(region)
        or table.get(ANY_COUNTRY)
        or DEFAULT_QUIET_HOURS[ANY_COUNTRY]
    )


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zones_and_region(e164: str, home: Home) -> tuple[tuple[str, ...], str]:
    # phonenumbers is imported on first use: the routing document's validation reads this
    # module for its window syntax only
    import phonenumbers
    from phonenumbers import timezone as phone_timezone

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


def _open_in_all(
    moment: datetime, zones: tuple[str, ...], region: str, specs: tuple[tuple[Window, ...], ...]
) -> bool:
    return all(_open_in_zone(moment, z, region, w) for z in zones for w in specs)


def _starts(
    moment: datetime, zones: Iterable[str], specs: tuple[tuple[Window, ...], ...]
) -> list[datetime]:
    """Every window start of every spec in every zone after `moment`, over the horizon."""
    starts: set[datetime] = set()
    for zone in zones:
        tz = ZoneInfo(zone)
        first_day: date = moment.astimezone(tz).date()
        for offset in range(HORIZON_DAYS):
            day = first_day + timedelta(days=offset)
            for windows in specs:
                for w in windows:
                    if day.weekday() in w.days:
                        start = datetime.combine(day, w.start, tzinfo=tz).astimezone(UTC)
                        if start > moment:
                            starts.add(start)
    return sorted(starts)


def _first_open(
    moment: datetime, zones: tuple[str, ...], region: str, specs: tuple[tuple[Window, ...], ...]
) -> datetime:
    """The first instant at or after `moment` when every spec is open in every zone.

    The intersection of windows opens when one of them opens, so the window starts of each
    spec and zone over the next weeks are the only candidates to test.
    """
    if _open_in_all(moment, zones, region, specs):
        return moment
    for candidate in _starts(moment, zones, specs):
        if _open_in_all(candidate, zones, region, specs):
            return candidate
    raise ValueError(f"no commercial window opens within {HORIZON_DAYS} days")


def opens_at(
    moment: datetime,
    e164: str,
    quiet: Mapping[str, str] | None,
    provider_window: str | None,
    home: Home,
) -> datetime | None:
    """None when a commercial message to `e164` may go at `moment` (UTC); else the first
    instant after it when the country's quiet hours (`quiet`: the routing document's, over
    the defaults) and the provider's own window (`provider_window`, for a provider that
    `holds_commercial`; None for the others) are both open."""
    zones, region = zones_and_region(e164, home)
    specs = [parse_windows(quiet_window(region, quiet))]
    if provider_window is not None:
        specs.append(parse_windows(provider_window))
    opens = _first_open(moment, zones, region, tuple(specs))
    return None if opens == moment else opens


def is_open(moment: datetime, e164: str, spec: str, home: Home) -> bool:
    """Is the one window `spec` open at `moment` for `e164` (in all its zones)?"""
    zones, region = zones_and_region(e164, home)
    return _open_in_all(moment, zones, region, (parse_windows(spec),))


def next_open(moment: datetime, e164: str, spec: str, home: Home) -> datetime:
    """The first instant at or after `moment` (UTC) when the one window `spec` is open."""
    zones, region = zones_and_region(e164, home)
    return _first_open(moment, zones, region, (parse_windows(spec),))
