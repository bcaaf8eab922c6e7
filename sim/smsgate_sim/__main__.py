"""``python -m smsgate_sim`` / ``smsgate-sim``: serve the three simulators until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .simulators import Simulators


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smsgate-sim",
        description="Local simulators of Club Texting, Group Texting and TextingHouse.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--clubtexting-port", type=int, default=0, help="0: ephemeral")
    p.add_argument("--grouptexting-port", type=int, default=0, help="0: ephemeral")
    p.add_argument("--textinghouse-port", type=int, default=0, help="0: ephemeral")
    p.add_argument("--dlr-url", help="TextingHouse status callback URL")
    p.add_argument("--mo-url", help="TextingHouse SMS reply (MO) callback URL")
    p.add_argument("--ct-keyword-url", help="Club Texting keyword URL")
    p.add_argument("--ct-inbox-url", help="Club Texting inbox forwarding URL")
    p.add_argument("--gt-keyword-url", help="Group Texting keyword URL")
    p.add_argument("--gt-inbox-url", help="Group Texting inbox forwarding URL")
    p.add_argument("--dlr-delay", type=float, default=0.05, help="seconds until a final status")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--record-limit",
        type=int,
        default=10_000,
        help="requests/callbacks kept in memory per simulator (0: unlimited)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    sims = Simulators.start(
        host=args.host,
        ports={
            "clubtexting": args.clubtexting_port,
            "grouptexting": args.grouptexting_port,
            "textinghouse": args.textinghouse_port,
        },
        dlr_url=args.dlr_url,
        mo_url=args.mo_url,
        seed=args.seed,
        ct_keyword_url=args.ct_keyword_url,
        ct_inbox_url=args.ct_inbox_url,
        gt_keyword_url=args.gt_keyword_url,
        gt_inbox_url=args.gt_inbox_url,
        dlr_delay=args.dlr_delay,
        record_limit=args.record_limit or None,
    )
    try:
        for name, url in sims.urls.items():
            print(f"{name} {url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sims.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
