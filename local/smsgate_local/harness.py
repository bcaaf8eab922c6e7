"""What running a function outside Lambda needs: the context it is handed, and (for moto)
clients whose calls are serialised."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository


class LambdaContext:
    """The Lambda context a handler reads: its name, its memory and its deadline."""

    function_version = "$LATEST"

    def __init__(
        self,
        remaining_ms: int = 30_000,
        function_name: str = "smsgate-local",
        memory_limit_in_mb: int = 256,
    ) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        )
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Serialised:
    """A client whose calls run one at a time: in-process moto checks a condition and writes
    without a lock (DESIGN.md §5), so two threads could both win a conditional write that real
    DynamoDB would serialise."""

    _lock = threading.RLock()

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def load_function(name: str, copy: str = "") -> ModuleType:
    """Import functions/<name>/app.py under a unique module name, as Lambda loads it (every
    function's module is called `app`). `copy` gives a second, independent module object: a
    second handler process's module."""
    module_name = f"smsgate_function_{name}{copy}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load functions/{name}/app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
