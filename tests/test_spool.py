"""The disk spool: durable, ordered, bounded with a counted policy."""
from __future__ import annotations

import pytest

from edge.spool import Spool, SpoolFull


def test_order_ack_and_survives_reopen(tmp_path):
    s = Spool(tmp_path / "s.db", 100)
    seqs = [s.put("t", b"m%d" % i) for i in range(5)]
    s.ack(seqs[1])
    s.close()
    s = Spool(tmp_path / "s.db", 100)
    rows = s.peek()
    assert [r[2] for r in rows] == [b"m0", b"m2", b"m3", b"m4"]
    assert s.depth() == 4
    assert [r[2] for r in s.peek(after=rows[1][0])] == [b"m3", b"m4"]


def test_drop_oldest_counts(tmp_path):
    s = Spool(tmp_path / "s.db", 3, "drop_oldest")
    for i in range(5):
        s.put("t", b"%d" % i)
    assert [r[2] for r in s.peek()] == [b"2", b"3", b"4"]
    assert s.dropped == 2
    s.close()
    assert Spool(tmp_path / "s.db", 3).dropped == 2  # the count is durable too


def test_refuse_new_counts(tmp_path):
    s = Spool(tmp_path / "s.db", 2, "refuse_new")
    s.put("t", b"a")
    s.put("t", b"b")
    with pytest.raises(SpoolFull):
        s.put("t", b"c")
    assert [r[2] for r in s.peek()] == [b"a", b"b"] and s.dropped == 1
