"""Before `make run` starts: are its ports free? If one is not, say who holds it (the local
stack whose stack.json names it, else the process /proc says listens on it) and the RUN_ARGS
that start this stack on other ports, instead of the servers' "address in use"."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from .stack import ROOT


def busy_ports(host: str, ports: dict[str, int]) -> dict[str, int]:
    """The ports (name -> number) a server could not listen on now (0: any port, never busy)."""
    busy = {}
    for name, port in ports.items():
        if port and not _bindable(host, port):
            busy[name] = port
    return busy


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _running_stack(state_dir: Path) -> dict[str, Any] | None:
    """The stack.json of a local stack whose process is still alive, if there is one."""
    try:
        info = json.loads((state_dir / "stack.json").read_text(encoding="utf-8"))
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None


def _stack_ports(info: dict[str, Any]) -> set[int]:
    urls = [info.get(k, "") for k in ("endpoint_url", "api_url", "control_url")]
    urls += list((info.get("simulators") or {}).values())
    ports = set()
    for url in urls:
        with contextlib.suppress(ValueError, AttributeError):
            ports.add(int(str(url).split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]))
    return ports


def _listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (Linux /proc; None when it cannot be told)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    return None


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:120]


def busy_message(host: str, busy: dict[str, int], ports: dict[str, int], state_dir: Path) -> str:
    """Which ports are taken, by whom, and the RUN_ARGS that start this stack beside it."""
    running = _running_stack(state_dir)
    held_by_stack = running is not None and bool(set(busy.values()) & _stack_ports(running))
    lines = []
    for name, port in busy.items():
        if held_by_stack and running is not None and port in _stack_ports(running):
            who = (
                f"another `make run` (pid {running['pid']}, its endpoints in "
                f"{_shown(state_dir / 'stack.json')})"
            )
        else:
            pid = _listener_pid(port)
            command = _command_of(pid) if pid else ""
            if pid and "smsgate_local" in command:
                who = f"another `make run` (pid {pid}: {command})"
            elif pid:
                who = f"pid {pid} ({command or 'unknown command'})"
            else:
                who = "another program"
        lines.append(f"port {port} on {host} ({name}) is in use by {who}")
    free: dict[str, int] = {}
    taken = set(ports.values())
    for name, port in busy.items():
        candidate = port + 1
        while candidate < 65536 and (candidate in taken or not _bindable(host, candidate)):
            candidate += 1
        free[name] = candidate if candidate < 65536 else 0
        taken.add(free[name])
    suggestion = " ".join(f"--{name}-port {port}" for name, port in free.items())
    if held_by_stack:
        suggestion += " --state-dir .local-2"  # its stack.json and log stay the other's
    flags = " ".join(f"--{name}-port" for name in ports)
    lines += [
        "",
        "Stop it (Ctrl-C in its terminal"
        + (f", or kill {running['pid']}" if held_by_stack and running else "")
        + "), or start this one on other ports:",
        f'  make run RUN_ARGS="{suggestion}"',
        f"(the port flags: {flags}; 0 picks any free port)",
    ]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT.resolve()))
    return str(path)
