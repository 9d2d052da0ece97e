"""From the broker to the database: check each message, store it, then acknowledge it.

paho's network thread parses and checks a message (JSON, schema_version, the JSON Schema, topic vs
payload) and queues it; one writer thread stores what is queued in batches, one transaction each,
and only after the commit sends the PUBACKs (paho-mqtt 2 ``manual_ack=True`` + ``client.ack``). A
crash (even ``kill -9``) between receipt and commit leaves the message unacknowledged: the broker
delivers it again, and the unique ``event_id`` makes the second copy a no-op.

A message that can never be stored (not JSON, wrong schema, wrong topic) is acknowledged at once,
logged and counted: redelivering it would not make it valid. While the database is unreachable the
writer retries the same batch without acknowledging anything; the bounded queue then stops paho's
thread, and the broker holds the rest (the session is persistent).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import sqlalchemy as sa

from maskwatch_protocol import parse_topic

from .db import Writer
from .payloads import PayloadChecker

log = logging.getLogger("controlroom.ingest")


class Hub:
    """In-process fan-out of what the web page shows live (server-sent events)."""

    def __init__(self, max_queue: int = 1000) -> None:
        self.lock = threading.Lock()
        self.subs: List["queue.Queue[Dict[str, Any]]"] = []
        self.max_queue = max_queue

    def subscribe(self) -> "queue.Queue[Dict[str, Any]]":
        q: "queue.Queue[Dict[str, Any]]" = queue.Queue(self.max_queue)
        with self.lock:
            self.subs.append(q)
        return q

    def unsubscribe(self, q: "queue.Queue[Dict[str, Any]]") -> None:
        with self.lock:
            if q in self.subs:
                self.subs.remove(q)

    def publish(self, kind: str, data: Any) -> None:
        with self.lock:
            subs = list(self.subs)
        for q in subs:
            try:
                q.put_nowait({"kind": kind, "data": data})
            except queue.Full:  # a stuck browser: it reloads what it missed when it reconnects
                pass


class Ingestor:
    def __init__(
        self,
        writer: Writer,
        hub: Hub,
        prefix: str = "maskwatch",
        max_bytes: int = 262144,
        use_jsonschema: bool = True,
        batch: int = 500,
        queue_size: int = 5000,
        batch_wait_s: float = 0.05,
    ) -> None:
        self.writer, self.hub = writer, hub
        self.prefix = prefix.rstrip("/")
        self.max_bytes = max_bytes
        self.checker = PayloadChecker(use_jsonschema=use_jsonschema)
        self.q: "queue.Queue[Dict[str, Any]]" = queue.Queue(queue_size)
        self.batch, self.batch_wait_s = batch, batch_wait_s
        self.ack: Optional[Callable[[int, int], None]] = None  # set to the session's ack
        self.generation = 0  # bumped on every (re)connect: packet ids of an older connection are not acked
        self.stats = {"received": 0, "stored_events": 0, "duplicates": 0, "rejected": 0, "batches": 0, "db_errors": 0}
        self.lock = threading.Lock()
        self.rejected_kinds: Dict[Tuple[str, str], int] = {}  # (site/device, reason) -> messages dropped
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self.last_error: Optional[str] = None

    def start(self) -> None:
        self.thread.start()

    def warn(self, msg: str) -> None:
        log.warning("%s", msg)

    def reconnected(self) -> None:
        with self.lock:
            self.generation += 1

    # paho's network thread -------------------------------------------------------------------------
    def on_mqtt_message(self, msg: Any) -> None:
        received = time.time()
        with self.lock:
            self.stats["received"] += 1
            gen = self.generation
        item = self.check(msg.topic, msg.payload, bool(msg.retain), received)
        if item is None:
            self._ack(msg.mid, msg.qos, gen)
            return
        item.update(mid=msg.mid, qos=msg.qos, gen=gen)
        while not self.stopping.is_set():
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def check(self, topic: str, data: bytes, retained: bool, received: float) -> Optional[Dict[str, Any]]:
        parts = parse_topic(self.prefix, topic)
        if parts is None:
            return self._reject(topic, "unexpected topic (expected %s/<site>/<device>/<kind>)" % self.prefix)
        site, device, kind = parts
        if kind == "status" and not data:
            return {
                "kind": kind,
                "site": site,
                "device": device,
                "payload": None,
                "retained": retained,
                "received": received,
            }
        if len(data) > self.max_bytes:
            return self._reject(topic, "payload too large (%d bytes > %d)" % (len(data), self.max_bytes))
        payload, why = self.checker.parse(kind, data)
        if payload is None:
            return self._reject(topic, why or "invalid payload")
        if payload.get("site") != site or payload.get("device") != device:
            return self._reject(
                topic,
                "payload claims to be from %r/%r (the topic decides)" % (payload.get("site"), payload.get("device")),
            )
        return {
            "kind": kind,
            "site": site,
            "device": device,
            "payload": payload,
            "retained": retained,
            "received": received,
        }

    def _reject(self, topic: str, why: str) -> Optional[Dict[str, Any]]:
        """Drop a message and say why: loudly (ERROR) the first time a device's messages are dropped for a reason,
        then counted (stats, and a DEBUG line), so a misconfigured kiosk is named once, not 10,000 times."""
        parts = topic.split("/")
        key = ("/".join(parts[1:3]) if len(parts) > 3 else topic[:80], why.split(" (")[0][:80])
        with self.lock:
            self.stats["rejected"] += 1
            first = key not in self.rejected_kinds
            self.rejected_kinds[key] = self.rejected_kinds.get(key, 0) + 1
        if first:
            log.error(
                "%s: %s: dropped (every further message dropped for this reason from %s is counted in the "
                "stats, not logged)",
                topic[:200],
                why,
                key[0],
            )
        else:
            log.debug("%s: %s: dropped", topic[:200], why)
        return None

    def _ack(self, mid: int, qos: int, gen: int) -> None:
        if self.ack is None or qos == 0:
            return
        with self.lock:
            current = gen == self.generation
        if current:
            try:
                self.ack(mid, qos)
            except Exception as exc:  # noqa: BLE001 - the connection may be gone; the broker redelivers
                log.debug("ack %d failed: %s", mid, exc)

    # the writer thread ---------------------------------------------------------------------------------
    def _take(self) -> List[Dict[str, Any]]:
        try:
            first = self.q.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        end = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch:
            left = end - time.monotonic()
            try:
                batch.append(self.q.get(timeout=max(0.0, left)) if left > 0 else self.q.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        backoff = 0.5
        while not (self.stopping.is_set() and self.q.empty()):
            batch = self._take()
            if not batch:
                continue
            while True:
                try:
                    result = self.writer.write(batch)
                    break
                except sa.exc.SQLAlchemyError as exc:
                    with self.lock:
                        self.stats["db_errors"] += 1
                    self.last_error = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
                    log.error(
                        "database write failed (%s); retrying in %.1f s, nothing acknowledged", self.last_error, backoff
                    )
                    if self.stopping.wait(backoff):
                        return  # not stored, not acknowledged: the broker delivers it again
                    backoff = min(backoff * 2, 10.0)
            backoff = 0.5
            self.last_error = None
            for it in batch:
                self._ack(it["mid"], it["qos"], it["gen"])
            n_events = sum(1 for it in batch if it["kind"] == "events")
            with self.lock:
                self.stats["batches"] += 1
                self.stats["stored_events"] += len(result["events"])
                self.stats["duplicates"] += n_events - len(result["events"])
            for r in result["events"]:
                self.hub.publish("event", _event_msg(r))
            for dev in result["devices"]:
                self.hub.publish("device", {"site": dev[0], "device": dev[1]})

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.thread.join(timeout)


def _event_msg(r: Dict[str, Any]) -> Dict[str, Any]:
    from maskwatch_protocol import iso

    return {
        "event_id": r["event_id"],
        "site": r["site"],
        "device": r["device"],
        "ts": r["ts"],
        "time": iso(r["ts"]),
        "verdict": r["verdict"],
        "alert": r["alert"],
        "confidence": r["confidence"],
        "track_id": r["track_id"],
        "model_id": r["model_id"],
        "received": r["received"],
        "has_snapshot": r.get("snapshot") is not None,
        "ack_by": None,
        "ack_at": None,
    }
