"""The opt-outs table: who must never be texted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..retries import with_retries
from ..timestamps import now_iso
from .expressions import Update
from .tables import BATCH_GET_LIMIT, Tables


class OptOuts(Tables):
    def opted_out(self, phones: Iterable[str]) -> set[str]:
        """Which of `phones` have opted out: one BatchGetItem per 100 numbers."""
        return self.opted_out_and(phones, {})[0]

    def opted_out_and(
        self, phones: Iterable[str], also: Mapping[str, Mapping[str, Any]]
    ) -> tuple[set[str], dict[str, list[dict[str, Any]]]]:
        """`opted_out`, with other tables' BatchGetItem requests (`also`, table -> request)
        sent in the same first call: a batch's opt-outs and its providers' health in one
        round trip. Returns the opted-out numbers and the other tables' items (raw)."""
        wanted = sorted(set(phones))
        extra_keys = sum(len(r["Keys"]) for r in also.values())
        size = BATCH_GET_LIMIT - extra_keys  # BatchGetItem reads 100 keys at most per call
        chunks = [wanted[i : i + size] for i in range(0, len(wanted), size)] or [[]]
        found: set[str] = set()
        other: dict[str, list[dict[str, Any]]] = {}
        for n, chunk in enumerate(chunks):
            request: dict[str, Any] = dict(also) if n == 0 else {}
            if chunk:
                request[self.optouts] = {
                    "Keys": [{"phone": {"S": p}} for p in chunk],
                    "ProjectionExpression": "phone",
                    "ConsistentRead": True,
                }
            while request:
                answer = with_retries(self.db.batch_get_item, RequestItems=request)
                for table, items in answer["Responses"].items():
                    if table == self.optouts:
                        found.update(i["phone"]["S"] for i in items)
                    else:
                        other.setdefault(table, []).extend(items)
                request = answer.get("UnprocessedKeys") or {}
        return found, other

    def add_opt_out(self, phone: str, how: str, provider: str | None = None) -> None:
        with_retries(self.db.update_item, **self.opt_out_write(phone, how, provider)["Update"])

    def opt_out_write(self, phone: str, how: str, provider: str | None = None) -> dict[str, Any]:
        """The write that opts `phone` out (keeping the first `since`), for a Transition's
        `also` or on its own."""
        at = now_iso()
        update = Update().set_if_absent("since", at).set("how", how).set("updated_at", at)
        if provider:
            update.set("provider", provider)
        return {"Update": update.request(self.optouts, {"phone": phone})}

    def opt_in_write(self, phone: str) -> dict[str, Any]:
        """The write that opts `phone` back in, for a Transition's `also`."""
        return {"Delete": {"TableName": self.optouts, "Key": {"phone": {"S": phone}}}}

    def remove_opt_out(self, phone: str) -> bool:
        answer = with_retries(
            self.db.delete_item,
            TableName=self.optouts,
            Key={"phone": {"S": phone}},
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in answer
