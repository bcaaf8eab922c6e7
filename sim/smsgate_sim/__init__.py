"""Faithful local simulators of smsgate's three SMS providers, built from their documents.

Independent of the ``smsgate`` package on purpose: it models the providers, not smsgate.

    sims = Simulators.start()            # three HTTP servers on ephemeral 127.0.0.1 ports
    sims.clubtexting.url                 # "http://127.0.0.1:PORT"; also .grouptexting etc.
    sim.requests / sim.requests_to("/api/sending") / sim.connections / sim.callbacks
    sim.account().credit / sim.add_account(user, password, credit=..) / sim.opt_out(number)
    sim.set_fault("drop" | "hang" | "slow" | "reset" | "http_500" | "http_503" | "garbage",
                  rate=1.0, delay=None, count=None) / sim.clear_faults()
    sim.force_answer(body, status=200, times=1)
    sim.set_clock(datetime) / .advance_clock(seconds) / .now()   (the provider's clock)
    sims.grouptexting.global_opt_out(number) / .rate_limit_enabled / .keyword_config(kw)
    sims.grouptexting.block_seconds / .blocks / .blocked(address) / .unblock()
    sims.textinghouse.set_number_outcome(number, 4) / .dlr_url / .mo_url / .inject_mo(...)
    sims.textinghouse.retained() / .processing_error() / account().allowed_ips = {...}
    sims.clubtexting.inject_keyword(...) / .inject_inbox(...)   (also Group Texting)
    sim.callbacks[i].violations   (keyword / inbox replies against the documented rules)
    sims.reset(); sims.stop()

Pytest: ``pytest_plugins = ["smsgate_sim.pytest_plugin"]`` -> fixtures ``simulators``, ``sims``.
"""

from __future__ import annotations

from .clubtexting import ClubTextingSim
from .grouptexting import Block, GroupTextingSim, KeywordConfig
from .server import (
    DEFAULT_CREDIT,
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    FAULT_MODES,
    Account,
    CallbackRecord,
    ProviderSim,
    RecordedRequest,
    SentMessage,
    php_form,
    unused_url,
)
from .simulators import Simulators
from .textinghouse import TextingHouseSim, THMessage

__all__ = [
    "DEFAULT_CREDIT",
    "DEFAULT_PASSWORD",
    "DEFAULT_USER",
    "FAULT_MODES",
    "Account",
    "Block",
    "CallbackRecord",
    "ClubTextingSim",
    "GroupTextingSim",
    "KeywordConfig",
    "ProviderSim",
    "RecordedRequest",
    "SentMessage",
    "Simulators",
    "THMessage",
    "TextingHouseSim",
    "php_form",
    "unused_url",
]
