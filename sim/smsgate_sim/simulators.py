"""The three provider simulators, started together in one process."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any

from .clubtexting import ClubTextingSim
from .grouptexting import GroupTextingSim
from .server import ProviderSim
from .textinghouse import TextingHouseSim

NAMES = ("clubtexting", "grouptexting", "textinghouse")


class Simulators:
    """``Simulators.start()`` -> three running servers; ``reset()`` between tests; ``stop()``."""

    def __init__(
        self,
        clubtexting: ClubTextingSim,
        grouptexting: GroupTextingSim,
        textinghouse: TextingHouseSim,
    ) -> None:
        self.clubtexting = clubtexting
        self.grouptexting = grouptexting
        self.textinghouse = textinghouse
        self.by_name: dict[str, ProviderSim] = {
            "clubtexting": clubtexting,
            "grouptexting": grouptexting,
            "textinghouse": textinghouse,
        }

    @classmethod
    def start(
        cls,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        dlr_url: str | None = None,
        mo_url: str | None = None,
        seed: int = 0,
        *,
        ct_keyword_url: str | None = None,
        ct_inbox_url: str | None = None,
        gt_keyword_url: str | None = None,
        gt_inbox_url: str | None = None,
        dlr_delay: float | None = 0.05,
        record_limit: int | None = None,
    ) -> Simulators:
        """Start the three simulators (ephemeral ports unless ``ports`` names them).

        The URLs given here are the defaults ``reset()`` restores.
        """
        ports = ports or {}
        common: dict[str, Any] = {"seed": seed, "record_limit": record_limit}
        unknown = set(ports) - set(NAMES)
        if unknown:
            raise ValueError(f"unknown simulator names in ports: {sorted(unknown)}")
        sims = cls(
            ClubTextingSim(
                host,
                ports.get("clubtexting", 0),
                **common,
                keyword_url=ct_keyword_url,
                inbox_url=ct_inbox_url,
            ),
            GroupTextingSim(
                host,
                ports.get("grouptexting", 0),
                **common,
                keyword_url=gt_keyword_url,
                inbox_url=gt_inbox_url,
            ),
            TextingHouseSim(
                host,
                ports.get("textinghouse", 0),
                **common,
                dlr_url=dlr_url,
                mo_url=mo_url,
                dlr_delay=dlr_delay,
            ),
        )
        started: list[ProviderSim] = []
        try:
            for sim in sims:
                sim.start()
                started.append(sim)
        except BaseException:
            for sim in started:
                sim.stop()
            raise
        return sims

    def __iter__(self) -> Iterator[ProviderSim]:
        return iter(self.by_name.values())

    @property
    def urls(self) -> dict[str, str]:
        return {name: sim.url for name, sim in self.by_name.items()}

    def reset(self) -> None:
        for sim in self:
            sim.reset()

    def stop(self) -> None:
        for sim in self:
            sim.stop()

    def __enter__(self) -> Simulators:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
