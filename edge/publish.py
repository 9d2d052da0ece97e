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
import ssl
import sys
import threading
import time
from typing import Any, Callable, Dict, Optional, TextIO

from . import messages
from .config import TlsConfig
from .spool import Spool, SpoolFull

log = logging.getLogger(__name__)


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
        proto = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        kw: Dict[str, Any] = {} if proto == mqtt.MQTTv5 else {"clean_session": True}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            # the account name when there is one: what the shipped broker forces anyway (use_username_as_clientid),
            # so a kiosk's id is never one another account could take
            client_id=client_id or username or "maskwatch-%s-%s" % (site, device),
            protocol=proto,
            **kw,
        )
        self.client.max_inflight_messages_set(inflight)
        self.client.reconnect_delay_set(1, int(max(1, reconnect_max_s)))
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None and tls.enabled:
            self.client.tls_set(ca_certs=tls.ca, certfile=tls.cert, keyfile=tls.key, cert_reqs=ssl.CERT_REQUIRED)
            if tls.insecure:
                self.client.tls_insecure_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
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
        self.sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    # -- paho callbacks (network thread): never block here --------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            self.last_error = str(reason_code)
            log.error("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        self.connects += 1
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
        self.connected.clear()
        self.wake.set()

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
        self.wake.set()

    def spool_depth(self) -> int:
        return self.spool.depth() if self.undelivered is None else self.undelivered

    def spool_dropped_by(self) -> Dict[str, int]:
        return dict(self.spool.dropped_by)

    def _drain_acks(self) -> None:
        while True:
            try:
                mid, refused = self.acks.get_nowait()
            except queue.Empty:
                return
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
        was_connected = False
        while not self.stop_flag.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            self._drain_acks()
            if not self.connected.is_set():
                was_connected = False
                continue
            if not was_connected:
                self.spool.report_drops()  # what was lost while the broker was away, said once it is back
                # fresh session: whatever was in flight may be lost; resend everything still spooled, in order
                self.inflight.clear()
                self.cursor = 0
                was_connected = True
            room = self.inflight_max - len(self.inflight)
            if room <= 0:
                continue
            for seq, topic, payload, qos, retain in self.spool.peek(self.cursor, room):
                info = self.client.publish(topic, payload, qos=qos, retain=retain)
                if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                    break
                if qos == 0:
                    self.spool.ack(seq)
                else:
                    self.inflight[info.mid] = seq
                self.cursor = seq
            if self.spool.depth() > len(self.inflight):
                self.wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until the spool is empty (all acknowledged) or `timeout` passes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.spool.depth() == 0:
                return True
            self.wake.set()
            time.sleep(0.05)
        return self.spool.depth() == 0

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
        left = self.spool.depth()
        if left:
            log.warning("%d messages stay in the spool %s; they are sent on the next start", left, self.spool.path)
        self.undelivered = self.spool.depth()  # what stays for the next start (the spool is closed below)
        self.spool.close()
