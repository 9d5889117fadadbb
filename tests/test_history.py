"""The causal-order checker (ringgen/testing/history.py) on hand-made histories: it accepts
causally consistent ones and rejects each kind of violation."""

from __future__ import annotations

import pytest

from ringgen.testing.history import History, assert_causal, check_history


def _chain() -> History:
    """A sends x(1); B receives x and sends y(2); both go to C."""
    h = History()
    h.send("A", 1)
    h.recv("B", "A", 1)
    h.send("B", 2)
    return h


def test_a_causal_delivery_passes():
    h = _chain()
    h.recv("C", "A", 1)
    h.recv("C", "B", 2)
    assert check_history(h, causal=["C"]) == []
    assert_causal(h, causal=["C"])


def test_an_effect_delivered_before_its_cause_is_rejected():
    h = _chain()
    h.recv("C", "B", 2)
    h.recv("C", "A", 1)
    problems = check_history(h, causal=["C"])
    assert len(problems) == 1 and problems[0].startswith("causal: C was delivered (B, 2)")
    assert check_history(h) == []  # C not asked to be causal: the same history is fine
    with pytest.raises(AssertionError, match="violates causal order"):
        assert_causal(h, causal=["C"])


def test_a_transitive_cause_counts():
    h = _chain()
    h.recv("D", "B", 2)
    h.send("D", 3)
    h.recv("C", "D", 3)  # A -> B -> D -> C, delivered before A's own message
    h.recv("C", "A", 1)
    assert any(p.startswith("causal: C") for p in check_history(h, causal=["C"]))


def test_fifo_per_producer_is_part_of_causal_order():
    h = History()
    h.send("A", 1)
    h.send("A", 2)
    h.recv("C", "A", 2)
    h.recv("C", "A", 1)
    assert any("earlier message of A" in p for p in check_history(h, causal=["C"]))


def test_concurrent_messages_may_come_in_either_order_and_drops_are_allowed():
    h = History()
    h.send("A", 5)
    h.send("B", 3)
    h.send("A", 6)  # never delivered to C (dropped): nothing waits for it
    h.recv("C", "A", 5)
    h.recv("C", "B", 3)
    assert check_history(h, causal=["C"]) == []


def test_a_stamp_not_above_what_came_before_breaks_the_clock_condition():
    h = History()
    h.send("A", 10)
    h.recv("B", "A", 10)
    h.send("B", 7)
    assert check_history(h) == [
        "clock: B sent stamp 7, not above 10 that it sent or received before"
    ]
    h2 = History()
    h2.send("A", 4)
    h2.send("A", 4)
    assert any(p.startswith("integrity: A sent stamp 4 twice") for p in check_history(h2))


def test_invented_duplicated_and_cyclic_messages_are_rejected():
    h = History()
    h.recv("C", "A", 1)
    assert check_history(h) == ["integrity: C received ('A', 1), which was never sent"]
    h = _chain()
    h.recv("C", "A", 1)
    h.recv("C", "A", 1)
    assert any("delivered ('A', 1) twice" in p for p in check_history(h, causal=["C"]))
    h = History()
    h.recv("A", "B", 2)
    h.send("A", 1)
    h.recv("B", "A", 1)
    h.send("B", 2)
    assert any("has a cycle" in p for p in check_history(h))


def test_recorded_deliveries_are_the_order_checked():
    h = _chain()
    h.recv("C", "A", 1)  # the receive rule, applied early
    h.recv("C", "B", 2)
    h.deliver("C", "B", 2)  # but handed over in the other order
    h.deliver("C", "A", 1)
    assert any(p.startswith("causal: C") for p in check_history(h, causal=["C"]))
