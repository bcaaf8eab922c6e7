"""Payment card details for purchases: from stdin as JSON, or an interactive prompt (number and
code through getpass). Never an argument, never printed, never logged; errors name fields only.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import TextIO

from smsgate.providers import Card

from .context import Failure

# Card field -> accepted JSON keys (ours first, then Group Texting's names).
FIELDS: dict[str, tuple[str, ...]] = {
    "first_name": ("first_name", "firstname"),
    "last_name": ("last_name", "lastname"),
    "address": ("address",),
    "city": ("city",),
    "state": ("state",),
    "zip": ("zip",),
    "country": ("country",),
    "type": ("type",),
    "number": ("number", "ccnumber"),
    "code": ("code", "cvv", "cccode"),
    "exp_month": ("exp_month", "expm"),
    "exp_year": ("exp_year", "expy"),
}
SECRET_FIELDS = frozenset({"number", "code"})
CARD_HELP = """\
Card details come from an interactive prompt (number and code hidden) or, when stdin is not a
terminal, from stdin as one JSON object (all fields strings, all required):

  first_name, last_name   the cardholder's names (or firstname, lastname)
  address, city, state    the billing address; state as the card's issuer has it (NY)
  zip, country            ZIP / postal code; country code (US)
  type                    MC, Visa, AX, DS or JCB
  number                  the card number, digits only (or ccnumber)
  code                    the security code / CVV, 3 or 4 digits (or cvv, cccode)
  exp_month, exp_year     expiry, two digits each: MM and YY (or expm, expy)

e.g. echo '{"first_name": "Ada", ..., "exp_month": "12", "exp_year": "30"}' | smsgate ...
The details are never an argument and never printed or logged."""
PROMPTS = {
    "first_name": "First name",
    "last_name": "Last name",
    "address": "Billing address",
    "city": "City",
    "state": "State",
    "zip": "ZIP code",
    "country": "Country",
    "type": "Card type (MC, Visa, AX, DS, JCB)",
    "number": "Card number (hidden)",
    "code": "Security code / CVV (hidden)",
    "exp_month": "Expiry month (MM)",
    "exp_year": "Expiry year (YY)",
}


def from_json(text: str) -> Card:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise Failure("card details on stdin are not valid JSON") from None
    if not isinstance(data, dict):
        raise Failure("card details on stdin must be a JSON object")
    values: dict[str, str] = {}
    missing = []
    for name, keys in FIELDS.items():
        value = next((data[k] for k in keys if data.get(k) not in (None, "")), None)
        if value is None:
            missing.append(name)
        else:
            values[name] = str(value).strip()
    if missing:
        raise Failure(f"card details lack: {', '.join(missing)}")
    return Card(**values)


def prompt(err: TextIO) -> Card:
    values: dict[str, str] = {}
    for name, label in PROMPTS.items():
        if name in SECRET_FIELDS:
            value = getpass.getpass(f"{label}: ", stream=err)
        else:
            err.write(f"{label}: ")
            err.flush()
            value = sys.stdin.readline()
        value = value.strip()
        if not value:
            raise Failure(f"card details lack: {name}")
        values[name] = value
    return Card(**values)


def read_card(err: TextIO) -> Card:
    """Stdin as JSON when it is not a terminal, else prompts."""
    if sys.stdin.isatty():
        return prompt(err)
    return from_json(sys.stdin.read())
