"""The control room's database: one data-access layer (SQLAlchemy Core) for SQLite and PostgreSQL.

* ``sqlite:///PATH`` (embedded; WAL journal, ``synchronous=FULL``: a committed row survives a power cut)
  and ``postgresql://USER:PASS@HOST:PORT/DB`` (driven by psycopg 3);
* schema migrations: numbered steps in :data:`MIGRATIONS`, applied in order inside a transaction and
  recorded in ``schema_migrations`` (``edge-controlroom migrate``; ``serve`` applies pending ones);
* idempotent writes: an event is keyed by its ``event_id`` (a unique key), a counts window by
  (site, device, window_start, window_end), a status change by (site, device, time, state), so a QoS 1
  redelivery, or two instances sharing the load, store each message once.

Times are epoch seconds (float); ``*_s`` columns hold the integer second, for portable bucketing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from maskwatch_protocol import (
    NON_COMPLIANT,
    VERDICTS,
    clock_skew,
    clock_why,
    iso,
    next_starts,
    parse_iso,
    process_start,
    stats_time,
)

log = logging.getLogger("controlroom.db")

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("site", sa.String(128), primary_key=True),
    sa.Column("device", sa.String(128), primary_key=True),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),  # any valid message, retained ones included
    sa.Column("status_state", sa.String(32)),
    sa.Column("status_time", sa.Float),  # the kiosk's own time in the status payload
    sa.Column("status_received", sa.Float),
    sa.Column("status_retained", sa.Boolean),
    sa.Column("last_stats", sa.Float),  # when the last live (not retained) stats message arrived
    sa.Column("stats_interval_s", sa.Float),  # the gap between the last two stats messages
    sa.Column("stats_interval_announced", sa.Float),  # the status payload's stats_interval_s (migration 2)
    sa.Column("status_ts", sa.Float),  # the status payload's ts (kiosk clock), when it has one (migration 2)
    # two kiosks reporting as one device (migration 3): each stats message says when its process started (ts -
    # uptime_s); a start seen again after another one means two processes take turns, not a restart
    sa.Column("stats_start", sa.Float),
    sa.Column("stats_prev_start", sa.Float),
    sa.Column("twin_seen", sa.Float),  # when that last happened (control room clock)
    sa.Column("stats_ts", sa.Float),  # the last live stats' own time (kiosk clock): with last_stats, the clock's offset
    sa.Column("backend", sa.String(64)),
    sa.Column("model_id", sa.String(200)),
    sa.Column("version", sa.String(64)),
    sa.Column("degraded", sa.Text),  # JSON list
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("site", sa.String(128), nullable=False),
    sa.Column("device", sa.String(128), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("ts_s", sa.BigInteger, nullable=False),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("alert", sa.Boolean, nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("track_id", sa.Integer, nullable=False),
    sa.Column("model_id", sa.String(200), nullable=False),
    sa.Column("received", sa.Float, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the JSON payload, without the snapshot
    sa.Column("snapshot", sa.LargeBinary),  # JPEG bytes, when the kiosk sent one
    sa.Column("ack_by", sa.String(128)),
    sa.Column("ack_at", sa.Float),
)
sa.Index("ix_events_site_device_ts", events.c.site, events.c.device, events.c.ts)
sa.Index("ix_events_ts", events.c.ts)
sa.Index("ix_events_alert_ack", events.c.alert, events.c.ack_at)

counts = sa.Table(
    "counts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(128), nullable=False),
    sa.Column("device", sa.String(128), nullable=False),
    sa.Column("window_start", sa.String(40), nullable=False),
    sa.Column("window_end", sa.String(40), nullable=False),
    sa.Column("start_s", sa.BigInteger, nullable=False),
    sa.Column("end_ts", sa.Float, nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("non_compliant", sa.Integer, nullable=False),
    sa.Column("per_verdict", sa.Text, nullable=False),  # JSON {verdict: n}
    sa.Column("received", sa.Float, nullable=False),
    sa.UniqueConstraint("site", "device", "window_start", "window_end", name="uq_counts_window"),
)
sa.Index("ix_counts_site_device_start", counts.c.site, counts.c.device, counts.c.start_s)

status_changes = sa.Table(
    "status_changes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(128), nullable=False),
    sa.Column("device", sa.String(128), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("received", sa.Float, nullable=False),
    sa.Column("retained", sa.Boolean, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.UniqueConstraint("site", "device", "time", "state", name="uq_status_change"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(300), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), sa.ForeignKey("users.username", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


def _m1_initial(conn: sa.Connection) -> None:
    for t in (devices, events, counts, status_changes, users, sessions):
        t.create(conn, checkfirst=True)


def _m2_announced_interval(conn: sa.Connection) -> None:
    have = {c["name"] for c in sa.inspect(conn).get_columns("devices")}
    for name in ("stats_interval_announced", "status_ts"):
        if name not in have:  # a database made by version 1 (a new one has them from the table definition)
            conn.execute(sa.text("ALTER TABLE devices ADD COLUMN %s DOUBLE PRECISION" % name))


def _m3_twins(conn: sa.Connection) -> None:
    have = {c["name"] for c in sa.inspect(conn).get_columns("devices")}
    for name in ("stats_start", "stats_prev_start", "twin_seen"):
        if name not in have:
            conn.execute(sa.text("ALTER TABLE devices ADD COLUMN %s DOUBLE PRECISION" % name))


def _m4_clock(conn: sa.Connection) -> None:
    if "stats_ts" not in {c["name"] for c in sa.inspect(conn).get_columns("devices")}:
        conn.execute(sa.text("ALTER TABLE devices ADD COLUMN stats_ts DOUBLE PRECISION"))


# (version, name, step): append new steps, never edit an applied one
MIGRATIONS: List[Tuple[int, str, Any]] = [
    (1, "initial: devices, events, counts, status_changes, users, sessions", _m1_initial),
    (2, "devices: the stats interval the kiosk announces, the status ts", _m2_announced_interval),
    (3, "devices: two kiosks reporting as one (their processes' start times)", _m3_twins),
    (4, "devices: the last stats' own time, for the kiosk clock's offset", _m4_clock),
]


class DatabaseError(Exception):
    """A database problem meant for a person (bad URL, unreachable server, schema too new)."""


def redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<unparseable URL>"


def make_engine(url: str) -> Engine:
    """An engine for sqlite:///PATH or postgresql://...; raises DatabaseError with one line."""
    try:
        u = sa.engine.make_url(url)
    except Exception as exc:  # noqa: BLE001
        raise DatabaseError(
            "--db %r is not a database URL (sqlite:///PATH or postgresql://USER@HOST/DB): %s" % (url, exc)
        )
    backend = u.get_backend_name()
    if backend == "sqlite":
        if not u.database or u.database == ":memory:":
            raise DatabaseError(
                "--db %s: give a file (sqlite:///PATH): the control room's history must survive a restart" % url
            )
        import os

        parent = os.path.dirname(os.path.abspath(u.database))
        if not os.path.isdir(parent):
            raise DatabaseError(
                "cannot open the database %s (the directory %s does not exist; sqlite:///rel/path is "
                "relative, sqlite:////abs/path absolute)" % (url, parent)
            )
        u = u.set(drivername="sqlite+pysqlite")
        engine = sa.create_engine(u, connect_args={"timeout": 30, "check_same_thread": False}, pool_pre_ping=False)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every sqlite test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if backend == "postgresql":
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        try:
            return sa.create_engine(
                u, pool_pre_ping=True, pool_size=8, max_overflow=8, connect_args={"connect_timeout": 10}
            )
        except ImportError as exc:
            raise DatabaseError("PostgreSQL driver missing (pip install 'psycopg[binary]'): %s" % exc)
    raise DatabaseError(
        "--db %s: unsupported database %r (use sqlite:///PATH or postgresql://...)" % (redact(url), backend)
    )


def check_connection(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        raise DatabaseError(
            "cannot open the database %s (%s)"
            % (engine.url.render_as_string(hide_password=True), _first_line(exc.orig or exc))
        )
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(
            "cannot open the database %s (%s)"
            % (engine.url.render_as_string(hide_password=True), _first_line(exc.orig or exc))
        )


def _first_line(exc: Any) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def current_version(engine: Engine) -> int:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_migrations"):
            return 0
        v = conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar()
        return int(v or 0)


def migrate(engine: Engine) -> List[int]:
    """Apply the pending migrations; the versions applied (empty when up to date)."""
    check_connection(engine)
    latest = MIGRATIONS[-1][0]
    with engine.begin() as conn:
        schema_migrations.create(conn, checkfirst=True)
    have = current_version(engine)
    if have > latest:
        raise DatabaseError(
            "the database's schema is version %d, newer than this edge-controlroom knows (%d): "
            "upgrade maskwatch" % (have, latest)
        )
    done = []
    for version, name, step in MIGRATIONS:
        if version <= have:
            continue
        with engine.begin() as conn:
            step(conn)
            conn.execute(schema_migrations.insert().values(version=version, name=name, applied_at=time.time()))
        log.info("database migrated to version %d (%s)", version, name)
        done.append(version)
    return done


def _insert(engine: Engine, table: sa.Table):
    """INSERT ... ON CONFLICT DO NOTHING in the engine's dialect."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


# -- writing (the ingest thread) --------------------------------------------------------------------------
class Writer:
    """Stores one batch of checked messages in one transaction. Returns the new alert/event rows."""

    def __init__(self, engine: Engine, default_stats_interval: float = 30.0) -> None:
        self.engine = engine
        self.default_stats_interval = default_stats_interval
        self.ins_events = _insert(engine, events)
        self.ins_counts = _insert(engine, counts)
        self.ins_status = _insert(engine, status_changes)
        self.ins_devices = _insert(engine, devices)

    def write(self, batch: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        """Each item: kind, site, device, payload, retained, received. All or nothing."""
        new_events: List[Dict[str, Any]] = []
        changed_devices: set = set()
        ev_rows, count_rows = [], []
        for it in batch:
            p, kind = it["payload"], it["kind"]
            if kind == "events":
                body = {k: v for k, v in p.items() if k != "snapshot_jpeg_b64"}
                snap = None
                if p.get("snapshot_jpeg_b64"):
                    import base64
                    import binascii

                    try:
                        snap = base64.b64decode(p["snapshot_jpeg_b64"], validate=True)
                    except (binascii.Error, ValueError):
                        snap = None
                ev_rows.append(
                    {
                        "event_id": p["event_id"],
                        "site": it["site"],
                        "device": it["device"],
                        "ts": float(p["ts"]),
                        "ts_s": int(math.floor(float(p["ts"]))),
                        "verdict": p["verdict"],
                        "alert": p["verdict"] in NON_COMPLIANT,
                        "confidence": float(p["confidence"]),
                        "track_id": int(p["track_id"]),
                        "model_id": p["model_id"],
                        "received": it["received"],
                        "payload": json.dumps(body, sort_keys=True, separators=(",", ":")),
                        "snapshot": snap,
                    }
                )
            elif kind == "counts":
                ws = parse_iso(p["window_start"]) or it["received"]
                we = parse_iso(p["window_end"]) or it["received"]
                per = {k: int(v) for k, v in p["counts"].items()}
                count_rows.append(
                    {
                        "site": it["site"],
                        "device": it["device"],
                        "window_start": p["window_start"],
                        "window_end": p["window_end"],
                        "start_s": int(math.floor(ws)),
                        "end_ts": we,
                        "total": int(p["total"]),
                        "non_compliant": sum(per.get(v, 0) for v in NON_COMPLIANT),
                        "per_verdict": json.dumps(per, sort_keys=True),
                        "received": it["received"],
                    }
                )
        with self.engine.begin() as conn:
            seen = set()
            for it in batch:
                key = (it["site"], it["device"])
                if key not in seen:
                    seen.add(key)
                    conn.execute(
                        self.ins_devices.values(
                            site=key[0], device=key[1], first_seen=it["received"], last_seen=it["received"]
                        )
                    )
            if ev_rows:
                ids = [r["event_id"] for r in ev_rows]
                have = set(conn.execute(sa.select(events.c.event_id).where(events.c.event_id.in_(ids))).scalars())
                fresh: Dict[str, Dict[str, Any]] = {}
                for r in ev_rows:
                    if r["event_id"] not in have and r["event_id"] not in fresh:
                        fresh[r["event_id"]] = r
                if fresh:
                    conn.execute(self.ins_events, list(fresh.values()))
                    new_events = list(fresh.values())
            if count_rows:
                conn.execute(self.ins_counts, count_rows)
            for it in batch:
                dev = (it["site"], it["device"])
                conn.execute(
                    devices.update()
                    .where(devices.c.site == dev[0], devices.c.device == dev[1], devices.c.last_seen < it["received"])
                    .values(last_seen=it["received"])
                )
                if it["kind"] == "stats" and not it["retained"]:
                    self._stats(conn, dev, it["received"], it["payload"])
                    changed_devices.add(dev)
                elif it["kind"] == "status":
                    if self._status(conn, dev, it):
                        changed_devices.add(dev)
        return {"events": new_events, "devices": sorted(changed_devices)}

    def _stats(self, conn: sa.Connection, dev: Tuple[str, str], received: float, p: Dict[str, Any]) -> None:
        row = conn.execute(
            sa.select(
                devices.c.last_stats, devices.c.stats_interval_s, devices.c.stats_start, devices.c.stats_prev_start
            ).where(devices.c.site == dev[0], devices.c.device == dev[1])
        ).first()
        values: Dict[str, Any] = {"last_stats": received, "stats_ts": stats_time(p)}
        if row is not None:
            current, previous, twins = next_starts(row.stats_start, row.stats_prev_start, process_start(p))
            values.update(stats_start=current, stats_prev_start=previous)
            if twins:
                values["twin_seen"] = received
        if row is not None and row.last_stats is not None and received > row.last_stats:
            gap = received - row.last_stats
            prev = row.stats_interval_s
            # a gap that spans an outage (much longer than the interval seen so far) is not the interval
            if 0.2 <= gap <= 3600 and (prev is None or gap <= 4 * prev):
                values["stats_interval_s"] = gap
        if row is not None and row.last_stats is not None and received < row.last_stats:
            return
        conn.execute(devices.update().where(devices.c.site == dev[0], devices.c.device == dev[1]).values(**values))

    def _status(self, conn: sa.Connection, dev: Tuple[str, str], it: Dict[str, Any]) -> bool:
        p = it["payload"]
        if p is None:  # an empty retained status: the device was retired
            conn.execute(
                devices.update()
                .where(devices.c.site == dev[0], devices.c.device == dev[1])
                .values(status_state=None, status_time=None, status_received=it["received"])
            )
            return True
        t = parse_iso(p["time"]) or it["received"]
        row = conn.execute(
            sa.select(devices.c.status_state, devices.c.status_time, devices.c.degraded).where(
                devices.c.site == dev[0], devices.c.device == dev[1]
            )
        ).first()
        if row is not None and row.status_time is not None and t < row.status_time:
            return False  # an older status than the one we have (redelivered late)
        degraded = json.dumps(list(p.get("degraded") or []))
        # a kiosk that stays online but turns degraded (or recovers) is a change too: kept in status_changes, and
        # the open pages redraw its tile at once
        changed = row is None or row.status_state != p["state"] or (row.degraded or "[]") != degraded
        announced = p.get("stats_interval_s")
        if not isinstance(announced, (int, float)) or isinstance(announced, bool) or announced <= 0:
            announced = None
        ts = p.get("ts") if isinstance(p.get("ts"), (int, float)) and not isinstance(p.get("ts"), bool) else None
        conn.execute(
            devices.update()
            .where(devices.c.site == dev[0], devices.c.device == dev[1])
            .values(
                stats_interval_announced=announced,
                status_ts=ts,
                status_state=p["state"],
                status_time=t,
                status_received=it["received"],
                status_retained=bool(it["retained"]),
                backend=p.get("backend"),
                model_id=p.get("model_id"),
                version=p.get("version"),
                degraded=degraded,
            )
        )
        if changed:
            conn.execute(
                self.ins_status.values(
                    site=dev[0],
                    device=dev[1],
                    state=p["state"],
                    time=p["time"],
                    received=it["received"],
                    retained=bool(it["retained"]),
                    payload=json.dumps(p, sort_keys=True),
                )
            )
        return changed


# -- reading (the web server) -----------------------------------------------------------------------------
def clock(row: Any) -> Optional[Dict[str, Any]]:
    """The kiosk clock's offset from the control room's, from its last stats: {skew_s (positive: the kiosk is
    behind), why (a warning from maskwatch_protocol.CLOCK_SKEW_WARN_S, else None)}, or None before any stats."""
    skew = clock_skew(row.stats_ts, row.last_stats) if row.last_stats is not None else None
    return None if skew is None else {"skew_s": round(skew, 1), "why": clock_why(skew)}


TWIN_WINDOW_S = 600.0  # a device shows two kiosks for this long after their stats last took turns


def twin(row: Any, now: float) -> Optional[Dict[str, Any]]:
    """Two kiosks reporting as this device: their stats took turns within TWIN_WINDOW_S (else None)."""
    if row.twin_seen is None or now - row.twin_seen > TWIN_WINDOW_S:
        return None
    return {
        "seen": row.twin_seen,
        "starts": sorted(
            [row.stats_prev_start, row.stats_start]
        ),  # the two processes' starts (kiosk clocks), older first
        "why": "two kiosks report as %s/%s: stats from processes started at %s and %s take turns (each kiosk "
        "needs its own device name and account; their events and counts are mixed here until then)"
        % (row.site, row.device, iso(row.stats_prev_start), iso(row.stats_start)),
    }


def secs(x: float) -> str:
    """Seconds as the tiles say them: whole from 10 s up, else to a tenth ("0.6 s", not "0 s")."""
    return "%.0f s" % x if x >= 9.95 else ("%.1f" % x).rstrip("0").rstrip(".") + " s"


def liveness(row: Any, now: float, default_interval: float) -> Dict[str, Any]:
    """online / stale / offline / unknown from the device row (see docs/controlroom.md, "Liveness").

    The same rule as maskwatch_protocol.liveness: offline/stopped from the status; online only while stats keep
    arriving, within twice the stats interval (the one the kiosk announces in its status, else the gap seen
    between its last two stats, else `default_interval`); before any stats, the status's own ts counts as the
    last sign of life, so a retained "online" from a kiosk that died long ago is stale, never online.
    """
    interval = row.stats_interval_announced or row.stats_interval_s or default_interval
    deadline = 2.0 * interval
    down = row.status_state in ("offline", "stopped")
    down_after_stats = down and (row.last_stats is None or (row.status_received or 0) >= row.last_stats)
    since, what = row.last_stats, "stats"
    if since is None and row.status_state == "online" and row.status_ts is not None:
        since, what = row.status_ts, "status"
    fresh = since is not None and now - since <= deadline
    if down_after_stats or (down and not fresh):
        state, why = "offline", "status %s" % row.status_state
    elif fresh:
        state, why = "online", "%s %s ago (stale after %s)" % (what, secs(max(0.0, now - since)), secs(deadline))
    elif since is not None:
        state, why = "stale", "no stats for %s (expected every %s)" % (secs(now - since), secs(interval))
    elif row.status_state:
        state, why = (
            "stale",
            "status %s%s but no stats since the control room started listening"
            % (row.status_state, " (retained)" if row.status_retained else ""),
        )
    else:
        state, why = "unknown", "no status and no stats yet"
    return {"state": state, "why": why, "stale_after_s": deadline, "stats_interval_s": interval}


def _since_until(q, col, since: Optional[float], until: Optional[float]):
    if since is not None:
        q = q.where(col >= since)
    if until is not None:
        q = q.where(col < until)
    return q


class Reader:
    def __init__(self, engine: Engine, default_stats_interval: float = 30.0) -> None:
        self.engine = engine
        self.default_stats_interval = default_stats_interval

    @staticmethod
    def event_dict(r: Any, with_payload: bool = False) -> Dict[str, Any]:
        out = {
            "id": r.id,
            "event_id": r.event_id,
            "site": r.site,
            "device": r.device,
            "ts": r.ts,
            "time": iso(r.ts),
            "verdict": r.verdict,
            "alert": bool(r.alert),
            "confidence": r.confidence,
            "track_id": r.track_id,
            "model_id": r.model_id,
            "received": r.received,
            "has_snapshot": bool(r.has_snapshot),
            "ack_by": r.ack_by,
            "ack_at": r.ack_at,
        }
        if with_payload:
            out["payload"] = json.loads(r.payload)
        return out

    def _event_query(self, site=None, device=None, verdicts=None, since=None, until=None, alert=None, unacked=None):
        cols = [c for c in events.c if c.name != "snapshot"] + [events.c.snapshot.isnot(None).label("has_snapshot")]
        q = sa.select(*cols)
        if site:
            q = q.where(events.c.site.in_(site))
        if device:
            q = q.where(events.c.device.in_(device))
        if verdicts:
            q = q.where(events.c.verdict.in_(verdicts))
        if alert is not None:
            q = q.where(events.c.alert == alert)
        if unacked:
            q = q.where(events.c.ack_at.is_(None))
        return _since_until(q, events.c.ts, since, until)

    def events(
        self, limit: int = 100, before_id: Optional[int] = None, with_payload: bool = False, **filters: Any
    ) -> Dict[str, Any]:
        q = self._event_query(**filters)
        if before_id is not None:
            q = q.where(events.c.id < before_id)
        q = q.order_by(events.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "events": [self.event_dict(r, with_payload) for r in rows],
            "next_before_id": rows[-1].id if more and rows else None,
        }

    def iter_events(self, max_rows: int = 1000000, **filters: Any) -> Iterable[Any]:
        q = self._event_query(**filters).order_by(events.c.id.asc()).limit(max_rows)
        with self.engine.connect() as conn:
            for r in conn.execution_options(stream_results=True, yield_per=1000).execute(q):
                yield r

    def event(self, event_id: str) -> Optional[Dict[str, Any]]:
        q = self._event_query().where(events.c.event_id == event_id)
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        return self.event_dict(r, with_payload=True) if r is not None else None

    def snapshot(self, event_id: str) -> Optional[bytes]:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(events.c.snapshot).where(events.c.event_id == event_id)).scalar()

    def count_events(self, **filters: Any) -> int:
        q = self._event_query(**filters).with_only_columns(sa.func.count()).order_by(None)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def ack(self, event_id: str, who: str, now: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """Acknowledge an event once (the first operator's name and time stay); the event, or None."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            conn.execute(
                events.update()
                .where(events.c.event_id == event_id, events.c.ack_at.is_(None))
                .values(ack_by=who, ack_at=now)
            )
        return self.event(event_id)

    def buckets(
        self,
        size: str = "hour",
        tz_offset_s: int = 0,
        site=None,
        device=None,
        since=None,
        until=None,
        by_device: bool = True,
    ) -> List[Dict[str, Any]]:
        """Per bucket (and site/device): people counted, non-compliant, compliance rate; events, alerts."""
        width = {"hour": 3600, "day": 86400}[size]
        off = int(tz_offset_s)

        def bucket(col):
            return ((col + off) // width) * width - off  # floor division on integer columns

        out: Dict[Tuple, Dict[str, Any]] = {}
        cb = bucket(counts.c.start_s).label("bucket")
        keys_c = [cb] + ([counts.c.site, counts.c.device] if by_device else [])
        q = sa.select(
            *keys_c,
            sa.func.sum(counts.c.total).label("people"),
            sa.func.sum(counts.c.non_compliant).label("non_compliant"),
        )
        if site:
            q = q.where(counts.c.site.in_(site))
        if device:
            q = q.where(counts.c.device.in_(device))
        q = _since_until(q, counts.c.start_s, since, until).group_by(*keys_c)
        eb = bucket(events.c.ts_s).label("bucket")
        keys_e = [eb] + ([events.c.site, events.c.device] if by_device else [])
        qe = sa.select(
            *keys_e, sa.func.count().label("events"), sa.func.sum(sa.case((events.c.alert, 1), else_=0)).label("alerts")
        )
        if site:
            qe = qe.where(events.c.site.in_(site))
        if device:
            qe = qe.where(events.c.device.in_(device))
        qe = _since_until(qe, events.c.ts, since, until).group_by(*keys_e)
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                k = (int(r.bucket),) + ((r.site, r.device) if by_device else ())
                out.setdefault(k, {"events": 0, "alerts": 0})
                out[k].update(people=int(r.people or 0), non_compliant=int(r.non_compliant or 0))
            for r in conn.execute(qe):
                k = (int(r.bucket),) + ((r.site, r.device) if by_device else ())
                out.setdefault(k, {"people": 0, "non_compliant": 0})
                out[k].update(events=int(r.events or 0), alerts=int(r.alerts or 0))
        rows = []
        for k in sorted(out):
            v = out[k]
            v.setdefault("people", 0)
            v.setdefault("non_compliant", 0)
            row = {"bucket": k[0], "size": size}
            if by_device:
                row.update(site=k[1], device=k[2])
            row.update(v)
            row["compliance_rate"] = (
                round((v["people"] - v["non_compliant"]) / float(v["people"]), 4) if v["people"] else None
            )
            rows.append(row)
        return rows

    def devices(
        self, now: Optional[float] = None, day_start: Optional[float] = None, last_n: int = 5
    ) -> List[Dict[str, Any]]:
        now = time.time() if now is None else now
        day_start = day_start if day_start is not None else now - 86400
        out = []
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(devices).order_by(devices.c.site, devices.c.device)).all()
            today_c = {
                (r.site, r.device): r
                for r in conn.execute(
                    sa.select(
                        counts.c.site,
                        counts.c.device,
                        sa.func.sum(counts.c.total).label("people"),
                        sa.func.sum(counts.c.non_compliant).label("nc"),
                    )
                    .where(counts.c.start_s >= int(day_start))
                    .group_by(counts.c.site, counts.c.device)
                )
            }
            today_e = {
                (r.site, r.device): r
                for r in conn.execute(
                    sa.select(
                        events.c.site,
                        events.c.device,
                        sa.func.count().label("n"),
                        sa.func.sum(sa.case((events.c.alert, 1), else_=0)).label("alerts"),
                        sa.func.sum(sa.case((sa.and_(events.c.alert, events.c.ack_at.is_(None)), 1), else_=0)).label(
                            "unacked"
                        ),
                    )
                    .where(events.c.ts >= day_start)
                    .group_by(events.c.site, events.c.device)
                )
            }
            for r in rows:
                key = (r.site, r.device)
                last = conn.execute(
                    sa.select(events.c.event_id, events.c.verdict, events.c.ts, events.c.alert)
                    .where(events.c.site == r.site, events.c.device == r.device)
                    .order_by(events.c.ts.desc())
                    .limit(last_n)
                ).all()
                c, e = today_c.get(key), today_e.get(key)
                people = int(c.people or 0) if c else 0
                nc = int(c.nc or 0) if c else 0
                live = liveness(r, now, self.default_stats_interval)
                out.append(
                    {
                        "site": r.site,
                        "device": r.device,
                        "state": live["state"],
                        "state_why": live["why"],
                        "stale_after_s": live["stale_after_s"],
                        "status": r.status_state,
                        "status_time": r.status_time,
                        "status_retained": r.status_retained,
                        "last_stats": r.last_stats,
                        "last_seen": r.last_seen,
                        "backend": r.backend,
                        "model_id": r.model_id,
                        "version": r.version,
                        "degraded": json.loads(r.degraded) if r.degraded else [],
                        "twin": twin(r, now),
                        "clock": clock(r),
                        "today": {
                            "people": people,
                            "non_compliant": nc,
                            "compliance_rate": round((people - nc) / float(people), 4) if people else None,
                            "events": int(e.n or 0) if e else 0,
                            "alerts": int(e.alerts or 0) if e else 0,
                            "unacked_alerts": int(e.unacked or 0) if e else 0,
                        },
                        "last_verdicts": [
                            {"event_id": l.event_id, "verdict": l.verdict, "ts": l.ts, "alert": bool(l.alert)}
                            for l in last
                        ],
                    }
                )
        return out

    def filter_values(self) -> Dict[str, List[str]]:
        with self.engine.connect() as conn:
            sites = sorted(set(conn.execute(sa.select(devices.c.site)).scalars()))
            devs = sorted(set(conn.execute(sa.select(devices.c.device)).scalars()))
        return {"sites": sites, "devices": devs, "verdicts": list(VERDICTS)}


# -- accounts -----------------------------------------------------------------------------------------------
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
