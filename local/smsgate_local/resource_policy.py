"""An API Gateway resource policy, evaluated locally: the statements of the template's
`CallbacksApi` (`Auth.ResourcePolicy.CustomStatements`), resolved against the stack's
parameters, decide whether a caller's address may invoke a method and path — as API Gateway
does before the function runs (an explicit Deny wins; without an Allow, nothing passes).

Only what the template uses: `execute-api:Invoke`, `execute-api:/<stage>/<METHOD>/<path>`
resources with `*` wildcards, and `IpAddress` / `NotIpAddress` on `aws:SourceIp`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "execute-api:/"
IP_CONDITIONS = ("IpAddress", "NotIpAddress")


def _glob(resource: str) -> re.Pattern[str]:
    # IAM's `*` matches any run of characters, `/` included
    return re.compile("^" + ".*".join(re.escape(p) for p in resource.split("*")) + "$")


@dataclass(frozen=True)
class Statement:
    effect: str
    resources: tuple[re.Pattern[str], ...]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None
    inside: bool  # IpAddress: the caller must be inside; NotIpAddress: outside

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Statement:
        resources = raw["Resource"] if isinstance(raw["Resource"], list) else [raw["Resource"]]
        for resource in resources:
            if not str(resource).startswith(PREFIX):
                raise ValueError(f"resource {resource!r} is not {PREFIX}...")
        conditions = dict(raw.get("Condition") or {})
        unknown = set(conditions) - set(IP_CONDITIONS)
        if unknown or any(set(v) != {"aws:SourceIp"} for v in conditions.values()):
            raise ValueError(f"only aws:SourceIp conditions are evaluated locally: {conditions}")
        networks, inside = None, True
        for name, value in conditions.items():
            cidrs = value["aws:SourceIp"]
            cidrs = cidrs if isinstance(cidrs, list) else [cidrs]
            networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
            inside = name == "IpAddress"
        return cls(
            str(raw["Effect"]),
            tuple(_glob(str(r)[len(PREFIX) :]) for r in resources),
            networks,
            inside,
        )

    def applies(self, target: str, source_ip: str) -> bool:
        if not any(p.match(target) for p in self.resources):
            return False
        if self.networks is None:
            return True
        address = ipaddress.ip_address(source_ip)
        within = any(address in n for n in self.networks)
        return within if self.inside else not within


class ResourcePolicy:
    def __init__(self, statements: Iterable[Mapping[str, Any]], stage: str = "v1") -> None:
        self.statements = [Statement.parse(s) for s in statements]
        self.stage = stage

    def allows(self, method: str, path: str, source_ip: str) -> bool:
        target = f"{self.stage}/{method.upper()}{path}"
        applying = [s for s in self.statements if s.applies(target, source_ip)]
        if any(s.effect == "Deny" for s in applying):
            return False
        return any(s.effect == "Allow" for s in applying)


def callbacks_policy(template: Mapping[str, Any], resolve: Any) -> ResourcePolicy | None:
    """The `CallbacksApi` policy with its parameters resolved (`resolve`: the stack's
    intrinsic-function resolver), or None when the template sets none."""
    api = template["Resources"]["CallbacksApi"]["Properties"]
    statements = ((api.get("Auth") or {}).get("ResourcePolicy") or {}).get("CustomStatements")
    if not statements:
        return None
    return ResourcePolicy(resolve(statements), stage=str(api.get("StageName") or "v1"))
