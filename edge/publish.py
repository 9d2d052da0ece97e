"""Where decisions go: stdout (no broker configured) or MQTT through the disk spool.

MQTT follows paho-mqtt 2's callback API (VERSION2). The status topic is retained:
`online` on every (re)connect, `offline` as the last will, `stopped` on a clean
exit. Events and counts are written to the spool first and deleted only on the
broker's PUBACK; a sender thread drains the spool in order whenever connected.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import ssl
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, TextIO, Tuple

from . import messages
from .config import TlsConfig
from .spool import Spool, SpoolFull

log = logging.getLogger(__name__)

QUICK_DROP_S = 5.0  # a connection the broker drops this soon after its CONNACK counts toward a takeover
TAKEOVER_DROPS = 3  # this many quick drops within TAKEOVER_WINDOW_S: another client has this client id
TAKEOVER_WINDOW_S = 120.0
TAKEOVER_LOG_S = 60.0  # the takeover error is logged at most this often
SPOOL_ERROR_LOG_S = 60.0  # a spool that cannot be written (disk full, I/O error) is logged at most this often
MAX_UNSPOOLED = 2000  # messages held in memory while the spool cannot be written (beyond: the oldest go; about
# 20 MB with snapshots, 2 MB without)


class Publisher:
    """Interface: `publish(kind, payload)` for events/counts/stats; `set_status`, `close`."""

    def start(self, status_payload: Dict[str, Any]) -> None:
        pass

    def publish(self, kind: str, payload: Dict[str, Any]) -> None:
        raise NotImplementedError

    def set_status(self, payload: Dict[str, Any]) -> None:
        pass

    def spool_depth(self) -> int:
        return 0

    def spool_dropped_by(self) -> Dict[str, int]:
        return {"events": 0, "counts": 0}

    def close(self, final_status: Optional[Dict[str, Any]] = None, timeout: float = 5.0) -> None:
        pass


class StdoutPublisher(Publisher):
    """JSON lines on stdout: events and counts (stats only with `verbose`), for demos and pipes."""

    def __init__(self, stream: Optional[TextIO] = None, kinds=("events", "counts")) -> None:
        self.stream = stream or sys.stdout
        self.kinds = kinds

    def publish(self, kind: str, payload: Dict[str, Any]) -> None:
        if kind in self.kinds:
            self.stream.write(json.dumps(payload, sort_keys=True) + "\n")
            self.stream.flush()


class MqttPublisher(Publisher):
    def __init__(
        self,
        *,
        host: str,
        port: int,
        site: str,
        device: str,
        spool: Spool,
        prefix: str = "maskwatch",
        client_id: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        tls: Optional[TlsConfig] = None,
        keepalive: int = 30,
        qos: int = 1,
        protocol: str = "3.1.1",
        inflight: int = 20,
        reconnect_max_s: float = 30.0,
        on_event: Optional[Callable[[str], None]] = None,
    ):
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.host, self.port, self.site, self.device, self.prefix = host, port, site, device, prefix
        self.spool, self.qos, self.inflight_max = spool, qos, inflight
        self.keepalive = keepalive
        self.rejected = 0
        self.undelivered: Optional[int] = None  # set by close()
        self.status_topic = messages.topic(prefix, site, device, "status")
        self.client_id = client_id or username or "maskwatch-%s-%s" % (site, device)
        proto = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        kw: Dict[str, Any] = {} if proto == mqtt.MQTTv5 else {"clean_session": True}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            # the account name when there is one: what the shipped broker forces anyway (use_username_as_clientid),
            # so a kiosk's id is never one another account could take
            client_id=self.client_id,
            protocol=proto,
            **kw,
        )
        self.client.max_inflight_messages_set(inflight)
        self.reconnect_max_s = int(max(1, reconnect_max_s))
        self.client.reconnect_delay_set(1, self.reconnect_max_s)
        # session takeover: a second client with this client id (a second kiosk flashed with the same account
        # or site/device) and the broker drops each connection as soon as the other connects. Noticed from
        # quick drops (MQTT 3.1.1 gives no reason) or MQTT 5's reason 142; each side then waits longer
        self.connected_at = 0.0
        self.quick_drops: Deque[float] = deque()
        self.takeovers = 0
        self.takeover_logged = -1e9
        self.min_delay = 1
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None and tls.enabled:
            self.client.tls_set(ca_certs=tls.ca, certfile=tls.cert, keyfile=tls.key, cert_reqs=ssl.CERT_REQUIRED)
            if tls.insecure:
                self.client.tls_insecure_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.connected = threading.Event()
        self.wake = threading.Event()
        self.stop_flag = threading.Event()
        self.acks: "queue.Queue[tuple]" = queue.Queue()
        self.inflight: Dict[int, int] = {}  # paho mid -> spool seq
        self.cursor = 0
        self.status_payload: Dict[str, Any] = {}
        self.last_error = ""
        self.connects = 0
        # the spool cannot be written (disk full, I/O error): messages wait here, go into the spool as soon as
        # it takes them again, and meanwhile straight to the broker when it is there (removed on its PUBACK)
        self.unspooled: Deque[Tuple[str, bytes, int]] = deque()
        self.direct: Dict[int, Tuple[str, bytes, int]] = {}  # paho mid -> message sent without the spool
        self.unspooled_lost = 0
        self.spool_error = ""
        self.spool_error_logged = -1e9
        self.spool_lock = threading.Lock()
        self.was_connected = False  # the sender's view: a new connection resends what may have been lost
        self.sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    # -- paho callbacks (network thread): never block here --------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self.last_error = str(reason_code)
            log.error("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        self.connects += 1
        self.connected_at = time.monotonic()
        log.info("MQTT connected to %s:%d%s", self.host, self.port, " (reconnect)" if self.connects > 1 else "")
        if self.status_payload:
            client.publish(self.status_topic, messages.dumps(self.status_payload), qos=1, retain=True)
        self.connected.set()
        self.wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if self.stop_flag.is_set():
            log.info("MQTT disconnected from %s:%d (closing)", self.host, self.port)
        elif self.connected.is_set():
            log.warning(
                "MQTT disconnected from %s:%d (%s); spooling until it is back", self.host, self.port, reason_code
            )
            self._count_drop(time.monotonic(), reason_code)
        self.connected.clear()
        self.wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        # the broker (or the way to it) is down: whatever dropped the connections before was not another client
        self.quick_drops.clear()

    def _count_drop(self, now: float, reason_code: Any) -> None:
        """A dropped connection: a takeover when MQTT 5 says so (reason 142), or when the broker has dropped this
        client soon after its CONNACK (QUICK_DROP_S plus the current wait) TAKEOVER_DROPS times within
        TAKEOVER_WINDOW_S, every reconnect in between accepted at once (a refused or failed one means a broker or
        network fault, and `_on_connect_fail` starts the count over). A takeover doubles the wait before
        reconnecting (up to mqtt's reconnect maximum), so that two kiosks with one client id do not throw each
        other off every second; a connection that lasted TAKEOVER_WINDOW_S resets it."""
        lasted = now - self.connected_at
        if lasted >= TAKEOVER_WINDOW_S and self.min_delay > 1:
            self.min_delay = 1
            self.client.reconnect_delay_set(1, self.reconnect_max_s)
        if lasted < QUICK_DROP_S + self.min_delay:  # backed off, the other client reconnects later: still quick
            self.quick_drops.append(now)
        while self.quick_drops and self.quick_drops[0] < now - TAKEOVER_WINDOW_S:
            self.quick_drops.popleft()
        taken = getattr(reason_code, "value", None) == 142  # MQTT 5 "Session taken over"
        if not taken and len(self.quick_drops) < TAKEOVER_DROPS:
            return
        self.takeovers += 1
        self.min_delay = min(self.reconnect_max_s, self.min_delay * 2)
        self.client.reconnect_delay_set(self.min_delay, self.reconnect_max_s)
        if now - self.takeover_logged >= TAKEOVER_LOG_S:
            self.takeover_logged = now
            log.error(
                "MQTT: %s: %s connecting to %s:%d with this kiosk's client id %r (a second kiosk "
                "flashed with the same mqtt account or site/device?): the broker drops one whenever the other "
                "connects. Give each kiosk its own device name and account (firmware-config/broker/add-device.sh). "
                "Reconnecting every %d s meanwhile; events wait in the spool",
                "the broker says the session was taken over"
                if taken
                else "the broker dropped this connection %d times in %d s, each soon after connecting"
                % (len(self.quick_drops), TAKEOVER_WINDOW_S),
                "another client is" if taken else "most likely another client is",
                self.host,
                self.port,
                self.client_id,
                self.min_delay,
            )

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        # MQTT 5 brokers say when they refuse a publish (135: not authorized, e.g. an ACL for another
        # site/device); it will never be accepted, so it is logged, counted and removed, not retried forever
        failed = reason_code is not None and getattr(reason_code, "is_failure", False)
        self.acks.put((mid, str(reason_code) if failed else ""))
        self.wake.set()

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self, status_payload: Dict[str, Any]) -> None:
        offline = dict(status_payload, state="offline")
        offline.pop("camera", None)
        self.client.will_set(self.status_topic, messages.dumps(offline), qos=1, retain=True)
        self.status_payload = status_payload
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self.sender.start()

    def set_status(self, payload: Dict[str, Any]) -> None:
        self.status_payload = payload
        if self.connected.is_set():
            self.client.publish(self.status_topic, messages.dumps(payload), qos=1, retain=True)

    def publish(self, kind: str, payload: Dict[str, Any]) -> None:
        t = messages.topic(self.prefix, self.site, self.device, kind)
        data = messages.dumps(payload)
        if kind == "stats":  # telemetry: current value only, never spooled
            if self.connected.is_set():
                self.client.publish(t, data, qos=0)
            return
        try:
            self.spool.put(t, data, qos=self.qos)
        except SpoolFull as exc:
            log.debug("%s", exc)  # counted, and logged once a minute with the totals, by the spool
        except sqlite3.Error as exc:
            with self.spool_lock:
                if len(self.unspooled) >= MAX_UNSPOOLED:
                    self.unspooled.popleft()
                    self.unspooled_lost += 1
                self.unspooled.append((t, data, self.qos))
            self._spool_failed(exc)
        self.wake.set()

    def _spool_failed(self, exc: Exception) -> None:
        self.spool_error = str(exc)
        now = time.monotonic()
        if now - self.spool_error_logged >= SPOOL_ERROR_LOG_S:
            self.spool_error_logged = now
            log.error(
                "spool %s cannot be written (%s): %d messages wait in memory, sent straight to the broker while "
                "it is there and spooled again once the spool takes them (free space on its disk)%s",
                self.spool.path,
                exc,
                len(self.unspooled),
                "; %d lost so far (more than %d waited)" % (self.unspooled_lost, MAX_UNSPOOLED)
                if self.unspooled_lost
                else "",
            )

    def _respool(self) -> None:
        """Messages held in memory go into the spool, in order, as soon as it takes them."""
        with self.spool_lock:
            while self.unspooled:
                topic, data, qos = self.unspooled[0]
                try:
                    self.spool.put(topic, data, qos=qos)
                except SpoolFull as exc:
                    log.debug("%s", exc)
                except sqlite3.Error as exc:
                    self.spool_error = str(exc)
                    return
                self.unspooled.popleft()
            if self.spool_error:
                log.info("spool %s takes messages again", self.spool.path)
                self.spool_error = ""

    def spool_depth(self) -> int:
        return self._waiting() if self.undelivered is None else self.undelivered

    def spool_dropped_by(self) -> Dict[str, int]:
        return dict(self.spool.dropped_by)

    def _drain_acks(self) -> None:
        while True:
            try:
                mid, refused = self.acks.get_nowait()
            except queue.Empty:
                return
            if self.direct.pop(mid, None) is not None:  # sent without the spool: delivered, nothing to delete
                continue
            seq = self.inflight.pop(mid, None)
            if seq is not None:
                if refused:
                    self.rejected += 1
                    topic = next((r[1] for r in self.spool.peek(seq - 1, 1) if r[0] == seq), "?")
                    log.error(
                        "broker refused the message on %s (%s): check that mqtt.username may publish under "
                        "%s/%s/%s/ (the broker ACL)",
                        topic,
                        refused,
                        self.prefix,
                        self.site,
                        self.device,
                    )
                self.spool.ack(seq)

    def _send_loop(self) -> None:
        while not self.stop_flag.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            try:
                self._send_once()
            except sqlite3.Error as exc:  # the spool's disk failed under a read or a delete: say so, keep going
                self._spool_failed(exc)
                time.sleep(1.0)

    def _send_once(self) -> None:
        self._drain_acks()
        if self.unspooled:
            self._respool()
        if not self.connected.is_set():
            self.was_connected = False
            return
        if not self.was_connected:
            self.spool.report_drops()  # what was lost while the broker was away, said once it is back
            # fresh session: whatever was in flight may be lost; resend everything still spooled, in order,
            # and what was sent without the spool goes back to wait in memory
            self.inflight.clear()
            self.cursor = 0
            self._take_back_direct()
            self.was_connected = True
        room = self.inflight_max - len(self.inflight) - len(self.direct)
        if room <= 0:
            return
        for seq, topic, payload, qos, retain in self.spool.peek(self.cursor, room):
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                return
            if qos == 0:
                self.spool.ack(seq)
            else:
                self.inflight[info.mid] = seq
            self.cursor = seq
            room -= 1
        if self.spool.depth() > len(self.inflight):
            self.wake.set()
        # then what the spool could not take, straight to the broker (newer than anything spooled)
        with self.spool_lock:
            waiting: List[Tuple[str, bytes, int]] = [
                self.unspooled.popleft() for _ in range(min(room, len(self.unspooled)))
            ]
        for i, (topic, data, qos) in enumerate(waiting):
            info = self.client.publish(topic, data, qos=qos)
            if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                with self.spool_lock:
                    self.unspooled.extendleft(reversed(waiting[i:]))
                return
            if qos > 0:
                self.direct[info.mid] = (topic, data, qos)
        if self.unspooled:
            self.wake.set()

    def _take_back_direct(self) -> None:
        """Messages sent without the spool and not acknowledged go back to wait in memory, first and in order."""
        with self.spool_lock:
            self.unspooled.extendleft(reversed(list(self.direct.values())))
        self.direct.clear()

    def _waiting(self) -> int:
        """Messages not yet acknowledged by the broker: spooled, and held in memory or sent without the spool."""
        return self.spool.depth() + len(self.unspooled) + len(self.direct)

    def flush(self, timeout: float) -> bool:
        """Wait until nothing waits (all acknowledged) or `timeout` passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._waiting() == 0:
                return True
            self.wake.set()
            time.sleep(0.05)
        return self._waiting() == 0

    def close(self, final_status: Optional[Dict[str, Any]] = None, timeout: float = 5.0) -> None:
        if self.connected.is_set():
            self.flush(timeout)
        if final_status is not None and self.connected.is_set():
            info = self.client.publish(self.status_topic, messages.dumps(final_status), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError) as exc:
                log.warning(
                    "the final status %r was not delivered (%s): the retained status may read the old "
                    "state until the broker publishes this device's will",
                    final_status.get("state"),
                    exc,
                )
            else:
                if not info.is_published():
                    log.warning(
                        "the final status %r was not acknowledged within 2 s: the retained status may "
                        "read the old state",
                        final_status.get("state"),
                    )
        elif final_status is not None:
            log.warning(
                "broker %s:%d unreachable at exit: the final status %r was not sent",
                self.host,
                self.port,
                final_status.get("state"),
            )
        self.stop_flag.set()
        self.wake.set()
        self.client.disconnect()
        self.client.loop_stop()
        if self.sender.is_alive():
            self.sender.join(timeout=2.0)
        # what the spool could not take and the broker did not acknowledge: into the spool if it takes it now
        self._take_back_direct()
        self._respool()
        left = self.spool.depth()
        if left:
            log.warning("%d messages stay in the spool %s; they are sent on the next start", left, self.spool.path)
        lost = len(self.unspooled)
        if lost or self.unspooled_lost:
            log.error(
                "%d messages were neither spooled (%s) nor acknowledged by the broker, and are lost",
                lost + self.unspooled_lost,
                self.spool_error or "the spool could not be written",
            )
        self.undelivered = self.spool.depth()  # what stays for the next start (the spool is closed below)
        self.spool.close()
