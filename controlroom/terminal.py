"""The terminal view of edge-alerts: per-device state, alert lines, summary tables, --json lines."""

from __future__ import annotations

import argparse
import collections
import json
import shlex
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from maskwatch_protocol import KIND_TYPES as KINDS
from maskwatch_protocol import (
    NON_COMPLIANT,
    VERDICTS,
    clock_skew,
    clock_why,
    next_starts,
    parse_iso,
    process_start,
    stats_time,
)

from .common import Warner, clean, iso_now, local_time, split_values
from .homeassistant import ha_discovery
from .hooks import HookRunner
from .payloads import PayloadChecker

TWINS_REPEAT_S = 600.0  # two kiosks under one name are said again at most this often while it goes on


class Device:
    __slots__ = (
        "site",
        "device",
        "state",
        "state_time",
        "last_seen",
        "events",
        "alerts",
        "malformed",
        "counts",
        "backend",
        "model_id",
        "degraded",
        "start",
        "prev_start",
        "twins_said",
        "clock_off",
    )

    def __init__(self, site: str, device: str) -> None:
        self.site, self.device = site, device
        self.state: Optional[str] = None
        self.state_time: Optional[float] = None
        self.last_seen: Optional[float] = None
        self.events = self.alerts = self.malformed = 0
        self.counts: Optional[Dict[str, Any]] = None
        self.backend: Optional[str] = None
        self.model_id: Optional[str] = None
        self.degraded: List[str] = []
        self.start: Optional[float] = None  # when the process sending this device's stats started (kiosk clock)
        self.prev_start: Optional[float] = None
        self.twins_said: Optional[float] = None
        self.clock_off = False  # its clock was last seen CLOCK_SKEW_WARN_S or more from this machine's

    def as_dict(self) -> Dict[str, Any]:
        c = self.counts or {}
        return {
            "site": self.site,
            "device": self.device,
            "state": self.state,
            "events": self.events,
            "alerts": self.alerts,
            "malformed": self.malformed,
            "last_seen": self.last_seen,
            "window_end": c.get("window_end"),
            "window_total": c.get("total"),
            "compliance_rate": c.get("compliance_rate"),
        }


class Monitor:
    """Everything that happens to a received message; called from paho's network thread."""

    MAX_DEVICES = 20000
    MAX_EVENT_IDS = 200000

    def __init__(self, args: argparse.Namespace, out=None, err=None) -> None:
        self.args = args
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.warn = Warner(self.err)
        self.checker = PayloadChecker(use_jsonschema=not args.no_jsonschema)
        self.prefix = args.prefix.rstrip("/")
        self.sites = set(split_values(args.site))
        self.devices_filter = set(split_values(args.device))
        self.verdicts = set(split_values(args.verdict))
        if not self.verdicts:
            self.verdicts = set(VERDICTS) if args.all_events else set(NON_COMPLIANT)
        self.lock = threading.RLock()
        self.devices: Dict[Tuple[str, str], Device] = {}
        self.seen: "collections.OrderedDict[str, None]" = collections.OrderedDict()
        self.n: "collections.Counter[str]" = (
            collections.Counter()
        )  # events, accepted, alerts, duplicates, malformed, filtered, ...
        self.accepted = 0
        self.done = threading.Event()
        self.broken_pipe = False
        self.publish: Optional[Callable[[str, bytes], None]] = None  # set by Session (--ha-discovery)
        self.announced: Dict[Tuple[str, str], str] = {}
        self.hooks: Optional[HookRunner] = None
        if args.exec_cmd:
            self.hooks = HookRunner(
                shlex.split(args.exec_cmd), args.exec_jobs, args.exec_queue, args.exec_timeout, self.warn
            )

    # -- output --------------------------------------------------------------------------------------
    def emit(self, line: str) -> None:
        if self.broken_pipe:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except BrokenPipeError:
            self.broken_pipe = True
            self.done.set()
        except (OSError, ValueError):
            pass

    def emit_json(self, obj: Dict[str, Any]) -> None:
        self.emit(json.dumps(obj, sort_keys=True, separators=(",", ":")))

    def bell(self) -> None:
        stream = self.err if self.args.json else self.out
        try:
            stream.write("\a")
            stream.flush()
        except (OSError, ValueError):
            pass

    # -- message handling ----------------------------------------------------------------------------
    def on_message(self, topic: str, data: bytes, retained: bool = False, received: Optional[float] = None) -> None:
        received = time.time() if received is None else received
        try:
            with self.lock:
                self._handle(topic, data, retained, received)
        except Exception as exc:  # noqa: BLE001 - a bad message must never stop the control room
            self.n["malformed"] += 1
            self.warn("%s: could not handle the message (%s: %s)" % (clean(topic), type(exc).__name__, clean(exc)))

    def _bad(self, topic: str, why: str, dev: Optional[Device] = None, size: Optional[int] = None) -> None:
        self.n["malformed"] += 1
        if dev is not None:
            dev.malformed += 1
        self.warn("%s: %s%s" % (clean(topic), why, "" if size is None else " [%d bytes]" % size))

    def _handle(self, topic: str, data: bytes, retained: bool, received: float) -> None:
        self.n["messages"] += 1
        rest = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else None
        parts = rest.split("/") if rest is not None else []
        if len(parts) != 3 or parts[2] not in KINDS or not parts[0] or not parts[1]:
            self._bad(
                topic,
                "unexpected topic (expected %s/<site>/<device>/<%s>)" % (self.prefix, "|".join(KINDS)),
                size=len(data),
            )
            return
        site, device, kind = parts
        if (self.sites and site not in self.sites) or (self.devices_filter and device not in self.devices_filter):
            self.n["filtered"] += 1
            return
        dev = self.devices.get((site, device))
        if dev is None:
            if len(self.devices) >= self.MAX_DEVICES:
                self._bad(topic, "too many devices (%d) to track another one" % self.MAX_DEVICES)
                return
            dev = self.devices[(site, device)] = Device(site, device)
        if kind == "status" and not data:
            # an empty retained message clears the device's status: it was retired
            dev.state, dev.state_time = None, received
            return
        if len(data) > self.args.max_bytes:
            self._bad(
                topic, "payload too large (%d bytes > --max-bytes %d): ignored" % (len(data), self.args.max_bytes), dev
            )
            return
        payload, why = self.checker.parse(kind, data)
        if payload is None:
            self._bad(topic, why or "invalid payload", dev, len(data))
            return
        if payload.get("site") != site or payload.get("device") != device:
            self._bad(
                topic,
                "payload claims to be from %s/%s: ignored (the topic decides)"
                % (clean(payload.get("site"), 40), clean(payload.get("device"), 40)),
                dev,
            )
            return
        dev.last_seen = received
        if kind == "events":
            self._event(topic, dev, payload, data, retained, received)
        elif kind == "status":
            self._status(topic, dev, payload, retained, received)
        elif kind == "counts":
            dev.counts = payload
            self.n["counts"] += 1
            if self.args.json:
                self.emit_json(self._record("counts", topic, dev, payload, retained, received))
        else:
            self.n["stats"] += 1
            if not retained:
                self._stats(dev, payload, received)

    def _stats(self, dev: Device, payload: Dict[str, Any], received: float) -> None:
        self._clock(dev, payload, received)
        self._twins(dev, payload, received)

    def _clock(self, dev: Device, payload: Dict[str, Any], received: float) -> None:
        """A kiosk clock off this machine's by CLOCK_SKEW_WARN_S or more (maskwatch_protocol.clock_skew: stats
        are never sent late) is said when it goes off, and when it is back in step."""
        why = clock_why(clock_skew(stats_time(payload), received))
        if (why is not None) == dev.clock_off:
            return
        dev.clock_off = why is not None
        line = why or "the kiosk's clock is back in step with this machine's"
        self._notice(
            dev,
            "clock",
            received,
            line,
            "%-28s %s" % (clean("%s/%s" % (dev.site, dev.device), 60), clean(line, 300)),
            off=dev.clock_off,
        )

    def _twins(self, dev: Device, payload: Dict[str, Any], received: float) -> None:
        """Two kiosks under one name: their stats' process starts take turns (maskwatch_protocol.next_starts);
        said once, then again at most every TWINS_REPEAT_S while it goes on."""
        dev.start, dev.prev_start, twins = next_starts(dev.start, dev.prev_start, process_start(payload))
        if not twins or (dev.twins_said is not None and received - dev.twins_said < TWINS_REPEAT_S):
            return
        dev.twins_said = received
        line = "two kiosks report as %s/%s: their stats come from processes started at %s and %s, taking turns" % (
            dev.site,
            dev.device,
            local_time(dev.prev_start, "%Y-%m-%d %H:%M:%S"),
            local_time(dev.start, "%Y-%m-%d %H:%M:%S"),
        )
        self._notice(dev, "twins", received, line, "%s (give each its own device name and account)" % clean(line, 200))

    def _notice(self, dev: Device, kind: str, received: float, why: str, text: str, **extra: Any) -> None:
        """Something the stats tell about a device (`kind`: clock, twins): a JSON record with --json, else a line
        headed by the time and the kind in capitals."""
        if self.args.json:
            self.emit_json(
                {
                    "kind": kind,
                    "site": dev.site,
                    "device": dev.device,
                    "received": iso_now(received),
                    "received_ts": round(received, 6),
                    **extra,
                    "why": why,
                }
            )
        else:
            self.emit("%s  %-6s %s" % (local_time(received, "%Y-%m-%d %H:%M:%S"), kind.upper(), text))

    def _record(
        self, kind: str, topic: str, dev: Device, payload: Dict[str, Any], retained: bool, received: float, **extra: Any
    ) -> Dict[str, Any]:
        rec = {
            "kind": kind,
            "topic": topic,
            "site": dev.site,
            "device": dev.device,
            "retained": retained,
            "received": iso_now(received),
            "received_ts": round(received, 6),
            "payload": payload,
        }
        rec.update(extra)
        return rec

    def _event(
        self, topic: str, dev: Device, payload: Dict[str, Any], data: bytes, retained: bool, received: float
    ) -> None:
        eid = payload["event_id"]
        if eid in self.seen:
            self.seen.move_to_end(eid)
            self.n["duplicates"] += 1
            return
        self.seen[eid] = None
        if len(self.seen) > self.MAX_EVENT_IDS:
            self.seen.popitem(last=False)
        self.n["events"] += 1
        dev.events += 1
        verdict = payload["verdict"]
        alert = verdict in NON_COMPLIANT
        if alert:
            dev.alerts += 1
            self.n["alerts"] += 1
        if verdict not in self.verdicts:
            return
        self.accepted += 1
        if self.args.json:
            self.emit_json(self._record("event", topic, dev, payload, retained, received, alert=alert))
        else:
            self.emit(
                "%s  %-6s %-28s %-22s %5.2f  track %s%s"
                % (
                    local_time(payload["ts"], "%Y-%m-%d %H:%M:%S"),
                    "ALERT" if alert else "event",
                    clean("%s/%s" % (dev.site, dev.device), 60),
                    verdict,
                    payload["confidence"],
                    payload["track_id"],
                    "  (retained)" if retained else "",
                )
            )
        if alert:
            if self.args.bell:
                self.bell()
            if self.hooks is not None:
                self.hooks.submit(
                    data,
                    {
                        "MASKWATCH_TOPIC": topic,
                        "MASKWATCH_SITE": dev.site,
                        "MASKWATCH_DEVICE": dev.device,
                        "MASKWATCH_VERDICT": verdict,
                        "MASKWATCH_EVENT_ID": eid,
                        "MASKWATCH_CONFIDENCE": str(payload["confidence"]),
                    },
                )
        if self.args.count and self.accepted >= self.args.count:
            self.done.set()

    def _status(self, topic: str, dev: Device, payload: Dict[str, Any], retained: bool, received: float) -> None:
        self.n["status"] += 1
        previous, was_degraded = dev.state, dev.degraded
        dev.state = payload["state"]
        dev.state_time = parse_iso(payload["time"]) or received
        dev.backend = payload.get("backend")
        dev.model_id = payload.get("model_id")
        dev.degraded = list(payload.get("degraded") or [])
        if self.args.ha_discovery and self.publish is not None:
            self._announce(dev, payload)
        if self.args.json:
            self.emit_json(self._record("status", topic, dev, payload, retained, received))
        elif previous != dev.state or was_degraded != dev.degraded:
            # a kiosk that stays online but turns degraded (camera grey, faces too small, accelerator gone), or
            # recovers, says so as a state change does: the reason carries what to do, so it is not cut short
            extra = []
            if dev.backend:
                extra.append("backend %s" % clean(dev.backend, 30))
            if dev.degraded:
                extra.append("degraded: %s" % clean("; ".join(str(d) for d in dev.degraded), 400))
            elif was_degraded and previous == dev.state:
                extra.append("no longer degraded")
            self.emit(
                "%s  %-6s %-28s %-22s since %s%s%s"
                % (
                    local_time(received, "%Y-%m-%d %H:%M:%S"),
                    "STATUS",
                    clean("%s/%s" % (dev.site, dev.device), 60),
                    dev.state,
                    local_time(dev.state_time, "%Y-%m-%d %H:%M:%S"),
                    "  (%s)" % "; ".join(extra) if extra else "",
                    "  (retained)" if retained else "",
                )
            )

    def _announce(self, dev: Device, payload: Dict[str, Any]) -> None:
        msgs = ha_discovery(self.prefix, self.args.ha_prefix, dev.site, dev.device, payload)
        data = [(t, json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()) for t, cfg in msgs]
        fingerprint = repr(data)
        if self.announced.get((dev.site, dev.device)) == fingerprint:
            return
        self.announced[(dev.site, dev.device)] = fingerprint
        for topic, body in data:
            self.publish(topic, body)  # type: ignore[misc]
        self.n["ha_discovery"] += len(data)

    # -- summary -------------------------------------------------------------------------------------
    def totals(self) -> Dict[str, Any]:
        with self.lock:
            out: Dict[str, Any] = {
                k: int(self.n[k])
                for k in (
                    "messages",
                    "events",
                    "alerts",
                    "duplicates",
                    "malformed",
                    "filtered",
                    "status",
                    "counts",
                    "stats",
                )
            }
            out["accepted_events"] = self.accepted
            out["warnings_suppressed"] = self.warn.suppressed
            out["validator"] = self.checker.engine
            if self.args.ha_discovery:
                out["ha_discovery_published"] = int(self.n["ha_discovery"])
            if self.hooks is not None:
                out["exec"] = self.hooks.stats()
            return out

    def summary_json(self, final: bool) -> Dict[str, Any]:
        with self.lock:
            devices = [self.devices[k].as_dict() for k in sorted(self.devices)]
        return {
            "kind": "summary",
            "final": final,
            "time": iso_now(time.time()),
            "totals": self.totals(),
            "devices": devices,
        }

    def summary_text(self, final: bool) -> str:
        with self.lock:
            devs = [self.devices[k] for k in sorted(self.devices)]
            states = collections.Counter(d.state or "unknown" for d in devs)
            head = "-- maskwatch %s %s: %d device%s (%s) --" % (
                "final summary" if final else "summary",
                local_time(time.time(), "%Y-%m-%d %H:%M:%S"),
                len(devs),
                "" if len(devs) == 1 else "s",
                ", ".join("%d %s" % (n, s) for s, n in sorted(states.items())) or "none",
            )
            rows = [("SITE/DEVICE", "STATE", "SINCE", "EVENTS", "ALERTS", "LAST WINDOW", "PEOPLE", "COMPLIANCE", "BAD")]
            people = compliant = 0
            for d in devs:
                c = d.counts
                if c:
                    end = parse_iso(c["window_end"])
                    window = "%s (%ss)" % (local_time(end), _num(c["window_s"]))
                    total = int(c["total"])
                    people += total
                    compliant += total - sum(int(c["counts"].get(v, 0)) for v in NON_COMPLIANT)
                    rate = "-" if c["compliance_rate"] is None else "%.1f%%" % (100.0 * c["compliance_rate"])
                    ctotal = str(total)
                else:
                    window, ctotal, rate = "-", "-", "-"
                rows.append(
                    (
                        clean("%s/%s" % (d.site, d.device), 48),
                        d.state or "?",
                        local_time(d.state_time),
                        str(d.events),
                        str(d.alerts),
                        window,
                        ctotal,
                        rate,
                        str(d.malformed),
                    )
                )
            overall = "%.1f%%" % (100.0 * compliant / people) if people else "-"
            rows.append(
                (
                    "all devices",
                    "",
                    "",
                    str(sum(d.events for d in devs)),
                    str(sum(d.alerts for d in devs)),
                    "",
                    str(people),
                    overall,
                    str(sum(d.malformed for d in devs)),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        right = {3, 4, 6, 7, 8}
        lines = [head]
        for r in rows:
            lines.append(
                "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            )
        t = self.totals()
        tail = "events: %d unique, %d duplicates dropped; %d malformed messages ignored" % (
            t["events"],
            t["duplicates"],
            t["malformed"],
        )
        if "exec" in t:
            tail += "; --exec: %(run)d run, %(failed)d failed, %(dropped)d dropped" % t["exec"]
        lines.append(tail)
        return "\n".join(lines)

    def summary(self, final: bool = False) -> None:
        if self.args.json:
            self.emit_json(self.summary_json(final))
        else:
            self.emit(self.summary_text(final))


def _num(v: Any) -> str:
    return ("%d" % v) if isinstance(v, (int, float)) and float(v).is_integer() else "%.1f" % v
