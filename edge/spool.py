"""A bounded on-disk queue of outgoing messages (SQLite, WAL): nothing is lost while the broker is away.

An event is written here before any attempt to publish it and deleted only when
the broker has acknowledged it (PUBACK for QoS 1). After a broker outage, a
crash or `kill -9`, the backlog is sent again in order. When the spool is full
the configured policy drops the oldest or refuses the new, and counts it.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import List, Tuple


class SpoolFull(Exception):
    pass


class Spool:
    def __init__(self, path: Path, max_items: int = 100000, policy: str = "drop_oldest") -> None:
        if policy not in ("drop_oldest", "refuse_new"):
            raise ValueError("spool policy must be drop_oldest or refuse_new")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_items, self.policy = max_items, policy
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an acknowledged-by-us event survives power loss
        self.db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        self.dropped = self._meta("dropped")

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Store a message durably; returns its sequence number. Raises SpoolFull under refuse_new."""
        with self.lock:
            n = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if n >= self.max_items:
                    if self.policy == "refuse_new":
                        self.dropped += 1
                        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (self.dropped,))
                        self.db.execute("COMMIT")
                        raise SpoolFull("spool %s is full (%d messages); new message refused" % (self.path, n))
                    excess = n - self.max_items + 1
                    self.db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                                    (excess,))
                    self.dropped += excess
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (self.dropped,))
                cur = self.db.execute("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                                      (topic, payload, qos, int(retain)))
                self.db.execute("COMMIT")
                return int(cur.lastrowid or 0)
            except SpoolFull:
                raise
            except Exception:
                self.db.execute("ROLLBACK")
                raise

    def peek(self, after: int = 0, limit: int = 100) -> List[Tuple[int, str, bytes, int, bool]]:
        with self.lock:
            rows = self.db.execute("SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq "
                                   "LIMIT ?", (after, limit)).fetchall()
        return [(int(s), t, bytes(p), int(q), bool(r)) for s, t, p, q, r in rows]

    def ack(self, seq: int) -> None:
        with self.lock:
            self.db.execute("DELETE FROM outbox WHERE seq=?", (seq,))

    def depth(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self.lock:
            self.db.close()
