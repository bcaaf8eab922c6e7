"""``python -m smsgate_local [run|demo] ...``: see smsgate_local.run."""

from __future__ import annotations

import sys

from .run import main

if __name__ == "__main__":
    sys.exit(main())
