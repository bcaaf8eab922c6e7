"""The live view of `make run` (smsgate_local.view): what it draws fits the terminal, the most
useful lines first, and it draws nothing when nothing changed. The running stack's own
snapshot is rendered in tests/test_local_stack.py."""

from __future__ import annotations

import io

import pytest

from smsgate_local.view import MessageRow, ProviderRow, Screen, Snapshot, render, title

SIZES = [(80, 24), (120, 40), (40, 10)]


def busy_snapshot() -> Snapshot:
    """A stack with a lot to show: three alarms firing, many events and messages."""
    alarms = {f"Alarm{i:02d}": "OK" for i in range(14)}
    alarms |= {
        "TextingHouseLowCredit": "ALARM",
        "SendDeadLetterQueueNotEmpty": "ALARM",
        "ProviderAuthFailures": "ALARM",
        "CreditCheckFailures": "INSUFFICIENT_DATA",
    }
    return Snapshot(
        clock="12:34",
        api_url="http://127.0.0.1:3000/v1",
        queue=3,
        dlq=1,
        providers=[
            ProviderRow("clubtexting", "no API", "healthy", 0, 0),
            ProviderRow("grouptexting", "1000", "healthy", 2, 1),
            ProviderRow("textinghouse", "3", "skipped: credit until 12:36:00", 5, 0),
        ],
        alarms=alarms,
        reasons={
            "TextingHouseLowCredit": "Minimum [3, 3] over 900s: 2 of 2 datapoint(s) LessThan 100"
        },
        events=[
            f"12:{i:02d}:00 status msg-{i:04d} queued -> sent (textinghouse)" for i in range(40)
        ],
        messages=[
            MessageRow(f"msg-{i:04d}", "out", "textinghouse", "+3361****678", "sent")
            for i in range(40)
        ],
        hints=[".venv/bin/smsgate send --to +33612345678 --text Bonjour --provider textinghouse"],
    )


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_view_fits_the_terminal_most_useful_lines_first(width: int, height: int) -> None:
    snap = busy_snapshot()
    lines = render(snap, width, height)
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines), [ln for ln in lines if len(ln) > width]
    # the title is whole: the name, the time, and only complete parts after them
    assert lines[0] == title(snap, width)
    assert lines[0].startswith("smsgate local  12:34")
    assert len(lines[0]) <= width and not lines[0].endswith("…")
    # then each provider (credit, health), then the alarms in ALARM, then the events
    assert [line.split()[0] for line in lines[1:4]] == [
        "clubtexting",
        "grouptexting",
        "textinghouse",
    ]
    firing = [i for i, line in enumerate(lines) if line.strip().startswith("ALARM ")]
    assert firing, lines
    events = [i for i, line in enumerate(lines) if " status msg-" in line]
    messages = [i for i, line in enumerate(lines) if line.startswith("msg-")]
    assert all(a < e for a in firing for e in events + messages), lines
    assert all(e < m for e in events for m in messages), lines
    if events:  # the newest event first
        assert "msg-0039" in lines[events[0]]


def test_a_bigger_terminal_shows_more_and_the_whole_title() -> None:
    snap = busy_snapshot()
    small, big = render(snap, 80, 24), render(snap, 120, 40)
    assert len(big) > len(small)
    count = lambda lines, word: sum(word in line for line in lines)  # noqa: E731
    assert count(big, " status msg-") > count(small, " status msg-")
    assert big[0] == (
        "smsgate local  12:34  queue 3  DLQ 1  API http://127.0.0.1:3000/v1  Ctrl-C stops"
    )
    assert count(big, "ALARM  ") == 3  # every alarm in ALARM, each with why
    assert any("TextingHouseLowCredit  Minimum [3, 3]" in line for line in big)
    # the tiny terminal keeps the title and the alarms, and says what it left out
    tiny = render(snap, 40, 10)
    assert tiny[0] == "smsgate local  12:34  queue 3  DLQ 1"
    assert any("ALARM" in line for line in tiny)


def test_a_quiet_stack_and_a_tiny_terminal() -> None:
    quiet = Snapshot(clock="09:00", providers=[ProviderRow("textinghouse", "1000", "healthy")])
    assert render(quiet, 80, 24) == [
        "smsgate local  09:00  queue ?  DLQ ?  Ctrl-C stops",
        "",
        "textinghouse credit 1000 healthy  lane ? waiting, ? sending",
    ]
    for width, height in [(10, 1), (1, 1), (20, 3)]:
        lines = render(busy_snapshot(), width, height)
        assert len(lines) <= height and all(len(line) <= width for line in lines)


def test_the_screen_draws_only_when_something_changed() -> None:
    out = io.StringIO()
    screen = Screen(out)
    lines = render(busy_snapshot(), 80, 24)
    assert screen.draw(lines, 80, 24)
    drawn = out.getvalue()
    assert drawn.startswith("\x1b[H") and drawn.endswith("\x1b[J")
    assert not drawn.endswith("\n")  # no newline after the last line: nothing scrolls
    assert drawn.count("\n") == len(lines) - 1
    assert not screen.draw(list(lines), 80, 24)  # the same lines: nothing written
    assert out.getvalue() == drawn
    assert screen.draw(lines, 100, 24)  # the terminal was resized
    assert screen.draw(lines[:-1], 100, 24)


def test_the_demo_summary_fits_the_terminal_and_never_cuts_a_word() -> None:
    from smsgate_local.demo import summary_lines

    detail = "demo-1-4 (invalid_body: invalid message: to: phone number is not a phone number)"
    rows = [
        ("invalid number", detail, "failed", "failed"),
        ("keyword PIZZA", "HTTP 200, reply 'Pizza night! 2 for 1'", "Pizza night!", "Pizza!"),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    for columns in (80, 60, 40, 200):
        lines = summary_lines(rows, width, columns)
        assert all(len(line) <= columns for line in lines), columns
        words = " ".join(lines).split()
        for word in detail.split():  # every word of the detail is there, whole
            assert word in words, (columns, word)
        assert any("NO" in line.split() for line in lines)  # the mismatch is marked
