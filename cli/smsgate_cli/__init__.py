"""`smsgate`: the operator's command-line tool for a local or deployed smsgate stack."""

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from .__main__ import main as _main

    return _main(argv)
