"""smsgate: the shared core of the SMS gateway (provider clients, rules, store, observability)."""

__version__ = "0.1.0"
