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
    without a lock (CONTRIBUTING.md, Running things), so two threads could both win a conditional
    write that real DynamoDB would serialise."""

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
    return import_file(module_name, ROOT / "functions" / name / "app.py")


def import_file(module_name: str, path: Path) -> ModuleType:
    """Import the file at `path` as the module `module_name` (kept in sys.modules)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


PATCH_NOTE = (
    "moto.dynamodb TransactWriteItems: rollback snapshot of the named items only, "
    "not a deepcopy of whole tables"
)


def cheap_transaction_snapshots() -> str:
    """moto 5.x snapshots, for its rollback, a deep copy of every table a TransactWriteItems
    touches, once per item of the transaction: O(table size) per call, so a run that writes
    thousands of items measures moto's copying (measured: 14 ms per call at 2000 messages,
    growing, and gigabytes of memory in the moto server). Here the rollback snapshot holds
    only the items the transaction names (deep copies of those, or their absence), restored
    when moto cancels the transaction, and the table's stream loses the records the cancelled
    transaction's first writes added (moto's own rollback dropped them with the table copy):
    the same result, O(items in the transaction). Used by the tests and the benchmarks (it
    changes the stand-in for DynamoDB, never smsgate's code)."""
    import copy
    import types

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models import table as table_module
    from moto.dynamodb.models.dynamo_type import DynamoType

    models = sys.modules["moto.dynamodb.models"]
    if getattr(DynamoDBBackend.transact_write_items, "_cheap", False):
        return PATCH_NOTE

    def no_table_copy(value: Any, memo: Any = None) -> Any:
        if isinstance(value, table_module.Table):
            return value  # moto's own rollback becomes a no-op; ours below restores
        return copy.deepcopy(value, memo)

    models.copy = types.SimpleNamespace(deepcopy=no_table_copy, copy=copy.copy)  # type: ignore[attr-defined]
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        saved = []
        streams = {
            id(t.stream_shard): (t.stream_shard, len(t.stream_shard.items))
            for t in self.tables.values()
            if t.stream_shard is not None
        }
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            raw = op.get("Key") or op.get("Item")
            if table is None or not raw or table.hash_key_attr not in raw:
                continue
            h = DynamoType(raw[table.hash_key_attr])
            r = DynamoType(raw[table.range_key_attr]) if table.range_key_attr else None
            if h not in table.items:
                old = None
            elif r is None:
                old = copy.deepcopy(table.items[h])
            else:
                inner = table.items[h]
                old = copy.deepcopy(inner[r]) if r in inner else None
            saved.append((table, h, r, old))
        try:
            return original(self, transact_items)
        except Exception:
            for table, h, r, old in reversed(saved):
                if r is None:
                    if old is None:
                        table.items.pop(h, None)
                    else:
                        table.items[h] = old
                elif old is None:
                    if h in table.items:
                        table.items[h].pop(r, None)
                        if not table.items[h]:
                            del table.items[h]
                else:
                    table.items[h][r] = old
            for shard, length in streams.values():
                del shard.items[length:]
            raise

    transact_write_items._cheap = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    return PATCH_NOTE


def serialised_dynamodb() -> None:
    """Make in-process moto answer one DynamoDB request at a time, as the local stack's moto
    server already does: moto checks a condition and then writes without a lock, so two
    threads (a sender's workers) could both win a conditional write that DynamoDB serialises,
    and a cancelled transaction's rollback could undo another's stream records."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_serialised", False):
        return
    original = DynamoHandler.call_action
    lock = threading.RLock()

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    call_action._serialised = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
