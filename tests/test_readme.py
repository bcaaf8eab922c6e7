"""README's claims about the tree: its module map names every module of the layer and every
function, its CLI paragraph every command the CLI has, and nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

from smsgate_cli.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "smsgate" / "smsgate"


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def module_map() -> str:
    text = readme()
    start = text.index("- `layers/smsgate/smsgate/` — the shared layer")
    return text[start : text.index("\n\n", start)]


def test_the_module_map_names_every_module_and_only_those() -> None:
    section = module_map()
    named = set(re.findall(r"`([a-z_]+(?:\.py|/))`", section))
    modules = {p.name for p in LAYER.glob("*.py") if p.name != "__init__.py"}
    # the layer's packages (providers/, send/, store/) and the providers' own
    packages = {f"{p.parent.name}/" for p in LAYER.glob("*/**/__init__.py")}
    in_packages = {p.name for p in LAYER.glob("*/**/*.py") if p.name != "__init__.py"}
    expected = modules | packages | in_packages | {"__init__.py"}  # the registry's
    assert expected - named == set(), "modules the README's map leaves out"
    others = {"app.py", "docs/", "benchmarks/", "tests/", "events/"}  # the top-level folders
    assert named - expected - others == set(), "names in the map that are not modules"
    functions = {p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists()}
    [listed] = re.findall(r"`functions/\{([a-z_,]+)\}/app\.py`", section)
    assert set(listed.split(",")) == functions


def test_the_cli_paragraph_names_every_command() -> None:
    text = readme()
    start = text.index("### The `smsgate` CLI")
    paragraph = text[start : text.index("\n\n", text.index("\n\n", start) + 2)]
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    missing = {c for c in commands if f"`{c}" not in paragraph}
    assert missing == set()


def test_nothing_points_outside_the_repository() -> None:
    """Code and docs refer to the repository's own documents, never to a design file, the
    providers' document files or issue numbers a clone does not have."""
    pattern = re.compile(r"DESIGN\.md|DESIGN §|seeds/|\.\./shared|\b[Ii]ssue \d|\(issue")
    skip = {"results"}  # benchmarks/results: generated
    found = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if not path.is_file() or parts & {".git", ".venv", ".tools", ".aws-sam", ".local", *skip}:
            continue
        if path.suffix not in {".py", ".md", ".yaml", ".yml", ".json", ".toml", ""} or (
            path == Path(__file__).resolve()  # the pattern itself
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}: {m.group()}" for m in pattern.finditer(text)]
    assert found == []


def _subcommands() -> dict[str, set[str]]:
    """Each CLI command -> the options it takes (its own and the global ones)."""
    import argparse

    parser = build_parser()
    globals_ = {o for a in parser._actions for o in a.option_strings}
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands: dict[str, set[str]] = {}
    for name, command in sub.choices.items():
        options = {o for a in command._actions for o in a.option_strings}
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for group in nested:  # optouts add, routing set, ...: their options count too
            for inner in group.choices.values():
                options |= {o for a in inner._actions for o in a.option_strings}
        commands[name] = options | globals_
    return commands


def test_the_commands_and_flags_it_names_exist() -> None:
    """Every `smsgate <command> --flag` the README writes (in code spans and shell blocks, with
    or without `smsgate`) names a command the CLI has and flags that command takes."""
    import shlex

    commands = _subcommands()
    text = readme()
    spans = re.findall(r"`([^`\n]+)`", text)
    for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", text, re.S):
        spans.extend(line.strip() for line in block.splitlines())
    checked = 0
    for span in spans:
        words = span.split("#", 1)[0].replace("…", "").split()
        if words[:1] in (["smsgate"], [".venv/bin/smsgate"]):
            words = words[1:]
        while words[:1] and words[0].startswith("--") and words[0] in commands["send"]:
            words = words[1:]  # global options before the command (`--json send`)
        if not words or words[0] not in commands or not any(w.startswith("--") for w in words):
            continue
        try:
            argv = shlex.split(" ".join(words))
        except ValueError:
            argv = words
        flags = {w.split("=", 1)[0] for w in argv if w.startswith("--")}
        assert flags <= commands[argv[0]], f"README: `{span}` names {flags - commands[argv[0]]}"
        checked += 1
    assert checked >= 5  # the README does name commands with their flags
