"""The layering rule (CONTRIBUTING.md): handlers -> services -> provider packages / data access,
and nothing above the data access touches boto3. Checked on the imports of every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from smsgate.providers import PROVIDERS

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "smsgate" / "smsgate"
# The data access: the tables, the queues and schedules, the shared health and connection
# slots, the replay of transient AWS errors, the events bus publisher, and the place where
# clients are built (wiring) and the producers' own client.
DATA_ACCESS = {
    "store",
    "queues.py",
    "health.py",
    "budget.py",
    "retries.py",
    "events.py",
    "wiring.py",
    "producer.py",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_data_access_imports_boto3() -> None:
    offenders = {
        str(path.relative_to(LAYER))
        for path in LAYER.rglob("*.py")
        if path.relative_to(LAYER).parts[0] not in DATA_ACCESS
        and _imports(path) & {"boto3", "botocore"}
    }
    assert offenders == set()


def test_provider_packages_never_call_aws() -> None:
    offenders = {
        str(path.relative_to(LAYER))
        for path in (LAYER / "providers").rglob("*.py")
        if _imports(path) & {"boto3", "botocore"}
    }
    assert offenders == set()


def test_handlers_hold_no_aws_calls() -> None:
    for app in (ROOT / "functions").glob("*/app.py"):
        assert not _imports(app) & {"boto3", "botocore"}, app


def _spellings(name: str, cls: type) -> list[str]:
    """`textinghouse`, `TextingHouse`, `Texting House`: how a provider's name is written."""
    words = re.findall(r"[A-Z][a-z]+", cls.__name__)
    return [name, cls.__name__, " ".join(words)]


def test_no_module_outside_a_provider_package_names_a_provider() -> None:
    """A provider's rules live in its own package: the rest of the layer and the handlers
    read them from the registry (whose `__init__.py` lists the packages)."""
    registry = LAYER / "providers" / "__init__.py"
    paths = [*LAYER.rglob("*.py"), *(ROOT / "functions").glob("*/app.py")]
    found = {}
    for path in paths:
        if path == registry or (path.parent.parent == LAYER / "providers"):
            continue
        text = path.read_text(encoding="utf-8").lower()
        named = [
            spelling
            for name, cls in PROVIDERS.items()
            for spelling in _spellings(name, cls)
            if spelling.lower() in text
        ]
        if named:
            found[str(path.relative_to(ROOT))] = named
    assert found == {}
