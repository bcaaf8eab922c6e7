"""`smsgate send --file`: a CSV of messages, read column by column into queue body fields.

A header row names the columns (any order, any case): every field of the queue body
(docs/contract.md), plus `phone`, `number` or `mobile` for `to` and `message` for `text`.
Booleans (`commercial`, `express`, `failover`) read true/false, yes/no, 1/0; an empty cell
leaves the field out. A column the body does not have is refused (with the accepted names),
and so is a file without a number column: once, before anything is queued. A file without a
header holds the number in its first column and, optionally, the text in the second.

The delimiter is read from the header line when `--delimiter` is not given (`,`, `;`, tab or
`|`), so a spreadsheet's `;`-separated export is read as it is.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from .context import Usage

# Header name -> queue body field.
COLUMNS: dict[str, str] = {
    "to": "to",
    "phone": "to",
    "number": "to",
    "mobile": "to",
    "text": "text",
    "message": "text",
    "provider": "provider",
    "id": "id",
    "subject": "subject",
    "commercial": "commercial",
    "express": "express",
    "sender": "sender",
    "failover": "failover",
}
BOOLEANS = frozenset({"commercial", "express", "failover"})
TRUE, FALSE = frozenset({"true", "yes", "1", "y"}), frozenset({"false", "no", "0", "n"})
DELIMITERS = (",", ";", "\t", "|")
NAMES = {"\t": "tab"}
# A first cell that is a phone number: the file has no header.
_PHONE = re.compile(r"^\+?[\d\s().-]{7,20}$")


def accepted() -> str:
    return ", ".join(COLUMNS)


def shown(delimiter: str) -> str:
    return NAMES.get(delimiter, repr(delimiter))


@dataclass
class Row:
    line: int
    fields: dict[str, Any] = field(default_factory=dict)
    problem: str = ""  # why this row cannot be a message ("" when it can)


@dataclass
class Sheet:
    """A read CSV: its delimiter (and whether it was detected), and its rows."""

    delimiter: str
    detected: bool
    header: bool
    rows: list[Row]


def read(path: str, delimiter: str | None = None) -> Sheet:
    """The rows of `path`; Usage (exit 2) for a file that cannot be read as messages."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except OSError as exc:
        raise Usage(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Usage(f"{path} is not UTF-8 text (save the CSV as UTF-8)") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise Usage(f"{path} is empty: no messages to send")
    chosen = delimiter if delimiter else _detect(first)
    lines = list(csv.reader(io.StringIO(text), delimiter=chosen))
    numbered = [(n, row) for n, row in enumerate(lines, start=1) if any(c.strip() for c in row)]
    head = [c.strip() for c in numbered[0][1]]
    if _PHONE.match(head[0]) and not any(h.lower() in COLUMNS for h in head):
        rows = [_headless(path, n, row) for n, row in numbered]
        return Sheet(chosen, not delimiter and chosen != ",", False, rows)
    columns = _columns(path, head, chosen, numbered)
    rows = [_row(n, row, columns) for n, row in numbered[1:]]
    return Sheet(chosen, not delimiter and chosen != ",", True, rows)


def _detect(first: str) -> str:
    """The delimiter the header line uses most (`,` when it has none of them)."""
    counts = {d: first.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _headless(path: str, line: int, row: list[str]) -> Row:
    cells = [c.strip() for c in row]
    while len(cells) > 1 and not cells[-1]:
        cells.pop()
    if len(cells) > 2:
        raise Usage(
            f"{path}:{line}: a file without a header holds the number and, optionally, the "
            f"text: add a header row naming the columns (accepted: {accepted()})",
            accepted=list(COLUMNS),
        )
    fields: dict[str, Any] = {"to": cells[0]}
    if len(cells) == 2 and row[1].strip():
        fields["text"] = row[1]
    return Row(line, fields)


def _columns(
    path: str, head: list[str], delimiter: str, numbered: list[tuple[int, list[str]]]
) -> list[str | None]:
    """Each column's body field (None: an unnamed column with nothing in it)."""
    columns: list[str | None] = []
    unknown: list[str] = []
    for n, name in enumerate(head):
        key = name.lower()
        if key in COLUMNS:
            columns.append(COLUMNS[key])
        elif not key and all(n >= len(r) or not r[n].strip() for _, r in numbered[1:]):
            columns.append(None)  # a trailing delimiter: an empty column
        else:
            columns.append(None)
            unknown.append(name or f"(column {n + 1} has no name)")
    if unknown:
        hint = ""
        others = [d for d in DELIMITERS if d != delimiter and any(d in u for u in unknown)]
        if others:
            hint = f"; the file looks {shown(others[0])}-separated: try --delimiter {others[0]!r}"
        raise Usage(
            f"{path}: unknown column{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)} (accepted: {accepted()}){hint}",
            unknown=unknown,
            accepted=list(COLUMNS),
        )
    named = [c for c in columns if c]
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise Usage(f"{path}: more than one column gives {', '.join(twice)}")
    if "to" not in named:
        raise Usage(
            f"{path} has no number column (to, phone, number or mobile): no message sent",
            accepted=list(COLUMNS),
        )
    return columns


def _row(line: int, cells: list[str], columns: list[str | None]) -> Row:
    row = Row(line)
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
        row.problem = (
            f"{len(cells)} cells for {len(columns)} columns (quote a text that holds the delimiter)"
        )
        return row
    for name, cell in zip(columns, cells, strict=False):
        if name is None or not cell.strip():
            continue
        if name in BOOLEANS:
            value = cell.strip().lower()
            if value not in TRUE | FALSE:
                row.problem = f"{name}: expected true/false, yes/no or 1/0"
                return row
            row.fields[name] = value in TRUE
        elif name in ("text", "subject"):
            row.fields[name] = cell  # as written: spaces are the message's
        else:
            row.fields[name] = cell.strip()
    return row
