"""A bounded on-disk queue of outgoing messages (SQLite, WAL): nothing is lost while the broker is away.

An event is written here before any attempt to publish it and deleted only when
the broker has acknowledged it (PUBACK for QoS 1). After a broker outage, a
crash or `kill -9`, the backlog is sent again in order.

Two caps bound it: a number of messages and a number of bytes (an event with a
snapshot is ten times the size of one without). When either is reached, events
outrank counts: the oldest counts go first (a later counts window still says how
many people passed), then, under `drop_oldest`, the oldest events; under
`refuse_new` a new message that does not fit is refused. Every drop is counted
per kind (kept across restarts, reported in stats) and logged, at most once a
minute, with the totals.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

from .errors import ConfigError

log = logging.getLogger(__name__)

EVENT, COUNTS = 0, 1  # priority: lower is kept longer
LOG_EVERY_S = 60.0


class SpoolFull(Exception):
    pass


def priority_of(topic: str) -> int:
    return COUNTS if topic.endswith("/counts") else EVENT


class Spool:
    def __init__(
        self, path: Path, max_items: int = 100000, policy: str = "drop_oldest", max_bytes: int = 256 * 1024 * 1024
    ) -> None:
        if policy not in ("drop_oldest", "refuse_new"):
            raise ValueError("spool policy must be drop_oldest or refuse_new")
        self.path = Path(path)
        self.max_items, self.max_bytes, self.policy = max_items, max_bytes, policy
        self.lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._open()
        except (OSError, sqlite3.Error) as exc:
            if getattr(self, "db", None) is not None:
                self.db.close()
            damaged = isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
            raise ConfigError(
                "spool.path %s: %s (%s): %s"
                % (
                    self.path,
                    "not a spool this daemon can read" if damaged else "cannot open or create it",
                    getattr(exc, "strerror", None) or exc,
                    "move it aside, since it may hold events not yet sent, and start again (a new spool is made)"
                    if damaged
                    else "give a path the service may write (default <state_dir>/spool.db)",
                )
            ) from exc

    def _open(self) -> None:
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an acknowledged-by-us event survives power loss
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(outbox)")}
        if "priority" not in cols:  # a spool written by an older version: migrate in place, keep its backlog
            self.db.execute("ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")
            self.db.execute("ALTER TABLE outbox ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
            self.db.execute("UPDATE outbox SET priority=?, size=length(payload) WHERE topic LIKE '%/counts'", (COUNTS,))
            self.db.execute("UPDATE outbox SET size=length(payload) WHERE size=0")
        self.db.execute("CREATE INDEX IF NOT EXISTS outbox_prio ON outbox (priority, seq)")
        self.dropped_by: Dict[str, int] = {
            "events": self._meta("dropped_events"),
            "counts": self._meta("dropped_counts"),
        }
        old = self._meta("dropped")  # before per-kind counting
        if old and not any(self.dropped_by.values()):
            self.dropped_by["events"] = old
        self._n, self._bytes = self._totals()
        self._logged_at = 0.0
        self._logged: Dict[str, int] = dict(self.dropped_by)

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by.values())

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _totals(self) -> Tuple[int, int]:
        n, b = self.db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        return int(n), int(b)

    def _fits(self, extra_n: int, extra_bytes: int) -> bool:
        return self._n + extra_n <= self.max_items and self._bytes + extra_bytes <= self.max_bytes

    def _drop_oldest(self, priority: int) -> bool:
        row = self.db.execute(
            "SELECT seq, size FROM outbox WHERE priority=? ORDER BY seq LIMIT 1", (priority,)
        ).fetchone()
        if row is None:
            return False
        self.db.execute("DELETE FROM outbox WHERE seq=?", (row[0],))
        self._n, self._bytes = self._n - 1, self._bytes - int(row[1])
        kind = "counts" if priority == COUNTS else "events"
        self.dropped_by[kind] += 1
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("dropped_" + kind, self.dropped_by[kind]))
        return True

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        new = {k: v - self._logged.get(k, 0) for k, v in self.dropped_by.items()}
        if not any(new.values()) or (not force and now - self._logged_at < LOG_EVERY_S):
            return
        log.warning(
            "spool %s full (%d messages, %.1f MB; caps %d messages, %.1f MB, policy %s): dropped %d events "
            "and %d counts since the last report (%d events, %d counts in all)",
            self.path,
            self._n,
            self._bytes / 1e6,
            self.max_items,
            self.max_bytes / 1e6,
            self.policy,
            new["events"],
            new["counts"],
            self.dropped_by["events"],
            self.dropped_by["counts"],
        )
        self._logged_at, self._logged = now, dict(self.dropped_by)

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Store a message durably; returns its sequence number. Raises SpoolFull when it does not fit."""
        prio, size = priority_of(topic), len(payload)
        with self.lock:
            if size > self.max_bytes:
                self._count_refused(prio)
                raise SpoolFull(
                    "spool %s: a %d-byte message is larger than spool.max_bytes; refused" % (self.path, size)
                )
            self.db.execute("BEGIN IMMEDIATE")
            try:
                # counts make room for events; under drop_oldest the oldest message of the same or lower rank goes
                while not self._fits(1, size):
                    if prio == EVENT and self._drop_oldest(COUNTS):
                        continue
                    if self.policy == "drop_oldest" and self._drop_oldest(prio):
                        continue
                    self._count_refused(prio)
                    self.db.execute("COMMIT")
                    self._report()
                    raise SpoolFull(
                        "spool %s is full (%d messages, %.1f MB); new %s refused"
                        % (self.path, self._n, self._bytes / 1e6, "counts" if prio == COUNTS else "event")
                    )
                cur = self.db.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain, priority, size) VALUES (?, ?, ?, ?, ?, ?)",
                    (topic, payload, qos, int(retain), prio, size),
                )
                self.db.execute("COMMIT")
                self._n, self._bytes = self._n + 1, self._bytes + size
            except SpoolFull:
                raise
            except Exception:
                if self.db.in_transaction:  # SQLite has already rolled back after "database or disk is full"
                    self.db.execute("ROLLBACK")
                self._n, self._bytes = self._totals()
                raise
            self._report()
            return int(cur.lastrowid or 0)

    def _count_refused(self, prio: int) -> None:
        kind = "counts" if prio == COUNTS else "events"
        self.dropped_by[kind] += 1
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("dropped_" + kind, self.dropped_by[kind]))

    def report_drops(self) -> None:
        """Log drops not yet reported, now (the publisher calls it when the broker is back)."""
        with self.lock:
            self._report(force=True)

    def peek(self, after: int = 0, limit: int = 100) -> List[Tuple[int, str, bytes, int, bool]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        return [(int(s), t, bytes(p), int(q), bool(r)) for s, t, p, q, r in rows]

    def ack(self, seq: int) -> None:
        with self.lock:
            row = self.db.execute("SELECT size FROM outbox WHERE seq=?", (seq,)).fetchone()
            if row is not None:
                self.db.execute("DELETE FROM outbox WHERE seq=?", (seq,))
                self._n, self._bytes = self._n - 1, self._bytes - int(row[0])

    def depth(self) -> int:
        with self.lock:
            return self._n

    def size_bytes(self) -> int:
        with self.lock:
            return self._bytes

    def close(self) -> None:
        with self.lock:
            self._report(force=True)
            self.db.close()
