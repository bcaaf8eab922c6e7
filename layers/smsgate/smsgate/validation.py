"""Pydantic's validation errors as one line a user can act on."""

from __future__ import annotations

from pydantic import ValidationError


def summarise(exc: ValidationError, whole: str = "body") -> str:
    """`field: what is wrong; ...` — never the input values (they may hold a number, a text or
    a secret). `whole` names an error about the whole value."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or whole}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )
