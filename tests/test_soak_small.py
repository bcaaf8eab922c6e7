"""The soak's four reliability checks (`make soak`, benchmarks/soak.py) at small N (20
messages, 150 bodies): counts only, no timing assertions."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import soak


def _check(result: dict[str, Any]) -> None:
    assert result["failed"] == 0, result
    assert result["passed"] > 0, result


def test_redelivery_sends_each_message_once() -> None:
    result = soak.run_check("redelivery", soak.redelivery, 20)
    _check(result)
    assert result["provider_send_requests"] == 20
    assert result["lost"] == 0 and result["duplicates"] == 0


@pytest.mark.slow
def test_faults_lose_nothing_and_send_nothing_twice() -> None:
    result = soak.run_check("faults", soak.faults, 20, read_timeout=0.5)
    _check(result)
    assert result["lost"] == 0 and result["duplicate_sends"] == 0
    assert result["drained"]


def test_bad_bodies_fail_with_a_reason_and_spare_neighbours() -> None:
    result = soak.run_check("bad_bodies", soak.bad_bodies, 150)
    _check(result)
    assert result["unhandled_exceptions"] == 0
    assert result["neighbours_sent"] >= 150 // 9


def test_shuffled_duplicated_receipts_never_regress() -> None:
    result = soak.run_check("receipts", soak.receipts, 20)
    _check(result)
    assert result["regressions"] == 0
