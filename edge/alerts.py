"""edge-alerts: the control room's live view of every entrance.

Subscribes to ``<prefix>/+/+/#`` on the central broker (or, with ``--share GROUP`` and
MQTT 5, to ``$share/GROUP/<prefix>/+/+/events`` and ``.../counts`` so that several
consumers split the load, plus the plain retained ``status`` topics) and shows:

* alerts as they arrive: non-compliant verdicts by default, every event with
  ``--all-events``, or the verdicts named with ``--verdict``;
* each device's availability from its retained ``status`` (online / offline (last
  will) / stopped);
* a periodic plain-text summary: per device the state, events and alerts seen, the
  latest counts window and its compliance rate.

``--json`` prints one JSON object per line instead (every accepted event, status and
counts message, then a final summary line), for piping into other tools. ``--bell`` and
``--exec CMD`` react to alerts; ``--ha-discovery`` publishes Home Assistant MQTT discovery
configs for every kiosk seen.

Events are delivered at least once: they are de-duplicated by ``event_id`` and the
duplicates are counted. Payloads that are not JSON, not a JSON object, of an unknown
``schema_version``, or that do not match edge/schemas/*.schema.json (checked with
jsonschema when it is installed, else with a small built-in checker of the same
schemas) are reported on stderr as warnings and counted; they never stop the program.
The site and device of a message are taken from its topic (which the broker's ACL ties
to the device's account); a payload that claims another site or device is rejected.

Only paho-mqtt (>= 2, callback API VERSION2) and the standard library are needed; it
runs on Python 3.8. Exit status: 0 done (--count reached, --timeout without --count,
or stopped by SIGINT/SIGTERM), 1 cannot connect / TLS failure / login refused /
subscriptions refused, 2 usage error, 3 --timeout expired before --count events.
"""
from __future__ import annotations

import argparse
import collections
import datetime as _dt
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

PROG = "edge-alerts"
# The same values as edge.messages (not imported: that module pulls in numpy via edge.types,
# and the control room needs only paho-mqtt). tests/test_alerts.py keeps them in step.
SCHEMA_VERSION = 1
NON_COMPLIANT = ("without_mask", "mask_weared_incorrect")
VERDICTS = ("with_mask", "without_mask", "mask_weared_incorrect")
# topic kind -> schema file / payload "type"
KINDS = {"events": "event", "status": "status", "counts": "counts", "stats": "stats"}
SCHEMA_DIR = Path(__file__).resolve().with_name("schemas")
EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
SESSION_EXPIRY_S = 7 * 86400


class Fatal(Exception):
    """Reported as one line `edge-alerts: error: ...` and exit status 1."""


class UsageError(Exception):
    """Reported as one line `edge-alerts: error: ...` and exit status 2."""


# -- payload checking ------------------------------------------------------------------------------------
def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    return False


def mini_validate(instance: Any, schema: Dict[str, Any], root: Dict[str, Any], path: str = "") -> Optional[str]:
    """The subset of JSON Schema 2020-12 that edge/schemas uses; returns the first problem or None."""
    where = path or "payload"
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return "%s: unsupported $ref %s" % (where, ref)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        err = mini_validate(instance, target, root, path)
        if err:
            return err
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, t) for t in types):
            return "%s: expected %s, got %s" % (where, " or ".join(types), _type_name(instance))
    if "const" in schema and not _json_equal(instance, schema["const"]):
        return "%s: must be %s" % (where, json.dumps(schema["const"]))
    if "enum" in schema and not any(_json_equal(instance, e) for e in schema["enum"]):
        return "%s: %s is not one of %s" % (where, _short(json.dumps(instance)), ", ".join(schema["enum"]))
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            return "%s: %s is less than %s" % (where, instance, schema["minimum"])
        if "maximum" in schema and instance > schema["maximum"]:
            return "%s: %s is greater than %s" % (where, instance, schema["maximum"])
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            return "%s: shorter than %d characters" % (where, schema["minLength"])
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            return "%s: %s does not match %s" % (where, _short(json.dumps(instance)), schema["pattern"])
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            return "%s: fewer than %d items" % (where, schema["minItems"])
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            return "%s: more than %d items" % (where, schema["maxItems"])
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(instance):
                err = mini_validate(item, schema["items"], root, "%s/%d" % (path, i) if path else str(i))
                if err:
                    return err
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                return "%s: required field %r is missing" % (where, key)
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            sub = "%s/%s" % (path, key) if path else str(key)
            if key in props:
                err = mini_validate(value, props[key], root, sub)
            elif extra is False:
                err = "%s: unexpected field %s" % (where, _short(json.dumps(key)))
            elif isinstance(extra, dict):
                err = mini_validate(value, extra, root, sub)
            else:
                err = None
            if err:
                return err
    return None


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(v), type(v).__name__)


def _short(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON" % name)


class PayloadChecker:
    """Parse and check payloads against edge/schemas/*.schema.json (jsonschema if available)."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR, use_jsonschema: bool = True) -> None:
        self.schemas: Dict[str, Dict[str, Any]] = {}
        for kind, name in KINDS.items():
            self.schemas[kind] = json.loads((schema_dir / ("%s.schema.json" % name)).read_text())
        self.validators: Dict[str, Any] = {}
        if use_jsonschema:
            try:
                import jsonschema  # noqa: F401
                from jsonschema.validators import validator_for
            except ImportError:
                pass
            else:
                for kind, schema in self.schemas.items():
                    self.validators[kind] = validator_for(schema)(schema)
        self.engine = "jsonschema" if self.validators else "built-in"

    def parse(self, kind: str, data: bytes) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
        """(payload, None) or (None, why it was rejected)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, "payload is not UTF-8 text (%s)" % exc.reason
        try:
            payload = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            return None, "payload is not usable JSON (nested too deeply)"
        except ValueError as exc:
            return None, "payload is not valid JSON (%s)" % _short(str(exc), 100)
        if not isinstance(payload, dict):
            return None, "payload is a JSON %s, not an object" % _type_name(payload)
        version = payload.get("schema_version")
        if not (_is_type(version, "integer") and version == SCHEMA_VERSION):
            return None, "unsupported schema_version %s (this edge-alerts reads version %d)" % (
                _short(json.dumps(version), 40), SCHEMA_VERSION)
        err = self.check(kind, payload)
        if err:
            return None, "payload does not match the %s schema: %s" % (KINDS[kind], err)
        return payload, None

    def check(self, kind: str, payload: Dict[str, Any]) -> Optional[str]:
        validator = self.validators.get(kind)
        if validator is None:
            return mini_validate(payload, self.schemas[kind], self.schemas[kind])
        try:
            from jsonschema.exceptions import best_match

            err = best_match(validator.iter_errors(payload))
        except RecursionError:
            return "nested too deeply"
        if err is None:
            return None
        where = "/".join(str(p) for p in err.absolute_path) or "payload"
        return "%s: %s" % (where, _short(err.message, 160))


# -- small helpers ---------------------------------------------------------------------------------------
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(s: Any, n: int = 120) -> str:
    """Safe to print on a terminal: no control characters (escape sequences), bounded length."""
    return _short(_UNPRINTABLE.sub("?", str(s)), n)


def parse_iso(s: Any) -> Optional[float]:
    if not isinstance(s, str):
        return None
    try:
        return _dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def local_time(t: Optional[float], fmt: str = "%H:%M:%S") -> str:
    if t is None:
        return "-"
    try:
        return time.strftime(fmt, time.localtime(t))
    except (ValueError, OverflowError, OSError):
        return "?"


def iso_now(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def split_values(values: Optional[List[str]]) -> List[str]:
    out: List[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


class Warner:
    """Warnings on stderr, at most `burst` at once and `rate` per second after that (a flood is summarised)."""

    def __init__(self, stream=None, burst: int = 50, rate: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.burst, self.rate = float(burst), rate
        self.tokens = float(burst)
        self.last = time.monotonic()
        self.suppressed = 0
        self.lock = threading.Lock()

    def __call__(self, msg: str) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens < 1.0:
                self.suppressed += 1
                return
            self.tokens -= 1.0
            note = ""
            if self.suppressed:
                note = " (%d more warnings were suppressed)" % self.suppressed
                self.suppressed = 0
            try:
                self.stream.write("%s: warning: %s%s\n" % (PROG, msg, note))
                self.stream.flush()
            except (OSError, ValueError):
                pass


class HookRunner:
    """`--exec CMD` for each alert: JSON payload on stdin, at most `jobs` at once, a bounded queue.

    Runs in worker threads so a slow hook never stalls the MQTT loop; when the queue is full
    the alert is not handed to the hook (counted as dropped, with a warning). A hook running
    longer than `timeout` is killed (with its process group).
    """

    def __init__(self, cmd: List[str], jobs: int, queue_size: int, timeout: float, warn: Callable[[str], None]):
        self.cmd, self.timeout, self.warn = cmd, timeout, warn
        self.q: "queue.Queue[Tuple[bytes, Dict[str, str]]]" = queue.Queue(maxsize=queue_size)
        self.ran = self.failed = self.dropped = 0
        self.busy = 0
        self.running: List[subprocess.Popen] = []
        self.stopping = False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, name="exec-%d" % i, daemon=True) for i in range(jobs)]
        for t in self.threads:
            t.start()

    def submit(self, data: bytes, env: Dict[str, str]) -> None:
        try:
            self.q.put_nowait((data, env))
        except queue.Full:
            with self.lock:
                self.dropped += 1
            self.warn("--exec hook is busy (%d alerts queued): alert %s not handed to it"
                      % (self.q.qsize(), env.get("MASKWATCH_EVENT_ID", "?")))

    def _work(self) -> None:
        while not self.stopping:
            try:
                data, extra = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            env = dict(os.environ)
            env.update(extra)
            with self.lock:
                if self.stopping:
                    self.dropped += 1
                    continue
                self.busy += 1
                try:
                    proc: Optional[subprocess.Popen] = subprocess.Popen(
                        self.cmd, stdin=subprocess.PIPE, stdout=sys.stderr.fileno(), env=env, start_new_session=True)
                    self.running.append(proc)
                except OSError as exc:
                    proc = None
                    why = exc.strerror or str(exc)
            ok = False
            if proc is None:
                self.warn("--exec %s: cannot run it (%s)" % (clean(self.cmd[0]), why))
            else:
                try:
                    proc.communicate(data, timeout=self.timeout)
                    ok = proc.returncode == 0
                    if not ok and not self.stopping:
                        self.warn("--exec hook exited with status %d for alert %s"
                                  % (proc.returncode, extra.get("MASKWATCH_EVENT_ID", "?")))
                except subprocess.TimeoutExpired:
                    _killpg(proc)
                    proc.wait()
                    self.warn("--exec hook still running after %g s: killed" % self.timeout)
                except OSError:
                    proc.wait()
            with self.lock:
                if proc is not None and proc in self.running:
                    self.running.remove(proc)
                self.busy -= 1
                self.ran += 1
                if not ok:
                    self.failed += 1

    def close(self, wait_s: float) -> None:
        """Let queued hooks finish for up to `wait_s`; then kill what still runs and drop what still waits."""
        end = time.monotonic() + wait_s
        while time.monotonic() < end and (self.busy or not self.q.empty()):
            time.sleep(0.05)
        with self.lock:
            self.stopping = True
            killed = list(self.running)
        for proc in killed:
            _killpg(proc)
        left = 0
        while True:
            try:
                self.q.get_nowait()
                left += 1
            except queue.Empty:
                break
        for t in self.threads:
            t.join(2.0)
        with self.lock:
            self.dropped += left
        if killed or left:
            self.warn("exiting: %d --exec hooks killed, %d queued alerts not handed to --exec" % (len(killed), left))

    def stats(self) -> Dict[str, int]:
        with self.lock:
            return {"run": self.ran, "failed": self.failed, "dropped": self.dropped}


def _killpg(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


# -- Home Assistant MQTT discovery --------------------------------------------------------------------------
def _ha_id(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", s)


def ha_discovery(prefix: str, ha_prefix: str, site: str, device: str,
                 status: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """Retained config messages so that Home Assistant's MQTT integration shows the kiosk as a device.

    Home Assistant then reads the kiosk's own topics (it needs an account that may read <prefix>/#
    and read/write <ha_prefix>/#: add-controlroom.sh --ha homeassistant).
    """
    base = "%s/%s/%s" % (prefix, site, device)
    node = "maskwatch_%s_%s" % (_ha_id(site), _ha_id(device))
    dev = {"identifiers": [node], "name": "maskwatch %s/%s" % (site, device), "manufacturer": "maskwatch",
           "model": "edge-maskd (%s)" % status.get("backend", "?")}
    if status.get("version"):
        dev["sw_version"] = status["version"]
    avail = {"availability_topic": base + "/status", "payload_available": "online", "payload_not_available": "offline",
             "availability_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}"}
    entities = [
        ("binary_sensor", "online", {"name": "Online", "state_topic": base + "/status", "device_class": "connectivity",
                                     "value_template": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}"}),
        ("sensor", "compliance", dict(avail, name="Compliance rate", state_topic=base + "/counts",
                                      unit_of_measurement="%", state_class="measurement", icon="mdi:face-mask",
                                      value_template="{{ (value_json.compliance_rate * 100) | round(1) "
                                                     "if value_json.compliance_rate is not none else None }}")),
        ("sensor", "people", dict(avail, name="People (last window)", state_topic=base + "/counts",
                                  state_class="measurement", unit_of_measurement="people",
                                  value_template="{{ value_json.total }}")),
        ("sensor", "non_compliant", dict(avail, name="Non-compliant (last window)", state_topic=base + "/counts",
                                         state_class="measurement", unit_of_measurement="people",
                                         value_template="{{ value_json.total - value_json.counts.with_mask }}")),
        ("sensor", "last_verdict", dict(avail, name="Last verdict", state_topic=base + "/events",
                                        json_attributes_topic=base + "/events",
                                        value_template="{{ value_json.verdict }}")),
    ]
    out = []
    for component, key, cfg in entities:
        cfg = dict(cfg, unique_id="%s_%s" % (node, key), device=dev)
        out.append(("%s/%s/%s/%s/config" % (ha_prefix, component, node, key), cfg))
    return out


# -- state -------------------------------------------------------------------------------------------------
class Device:
    __slots__ = ("site", "device", "state", "state_time", "last_seen", "events", "alerts", "malformed",
                 "counts", "backend", "model_id", "degraded")

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

    def as_dict(self) -> Dict[str, Any]:
        c = self.counts or {}
        return {"site": self.site, "device": self.device, "state": self.state, "events": self.events,
                "alerts": self.alerts, "malformed": self.malformed, "last_seen": self.last_seen,
                "window_end": c.get("window_end"), "window_total": c.get("total"),
                "compliance_rate": c.get("compliance_rate")}


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
        self.n = collections.Counter()  # events, accepted, alerts, duplicates, malformed, filtered, ...
        self.accepted = 0
        self.done = threading.Event()
        self.broken_pipe = False
        self.publish: Optional[Callable[[str, bytes], None]] = None  # set by Session (--ha-discovery)
        self.announced: Dict[Tuple[str, str], str] = {}
        self.hooks: Optional[HookRunner] = None
        if args.exec_cmd:
            self.hooks = HookRunner(shlex.split(args.exec_cmd), args.exec_jobs, args.exec_queue, args.exec_timeout,
                                    self.warn)

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
            self.warn("%s: could not handle the message (%s: %s)" % (clean(topic), type(exc).__name__,
                                                                     clean(exc)))

    def _bad(self, topic: str, why: str, dev: Optional[Device] = None, size: Optional[int] = None) -> None:
        self.n["malformed"] += 1
        if dev is not None:
            dev.malformed += 1
        self.warn("%s: %s%s" % (clean(topic), why, "" if size is None else " [%d bytes]" % size))

    def _handle(self, topic: str, data: bytes, retained: bool, received: float) -> None:
        self.n["messages"] += 1
        rest = topic[len(self.prefix) + 1:] if topic.startswith(self.prefix + "/") else None
        parts = rest.split("/") if rest is not None else []
        if len(parts) != 3 or parts[2] not in KINDS or not parts[0] or not parts[1]:
            self._bad(topic, "unexpected topic (expected %s/<site>/<device>/<%s>)"
                      % (self.prefix, "|".join(KINDS)), size=len(data))
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
            self._bad(topic, "payload too large (%d bytes > --max-bytes %d): ignored" % (len(data), self.args.max_bytes),
                      dev)
            return
        payload, why = self.checker.parse(kind, data)
        if payload is None:
            self._bad(topic, why or "invalid payload", dev, len(data))
            return
        if payload.get("site") != site or payload.get("device") != device:
            self._bad(topic, "payload claims to be from %s/%s: ignored (the topic decides)"
                      % (clean(payload.get("site"), 40), clean(payload.get("device"), 40)), dev)
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

    def _record(self, kind: str, topic: str, dev: Device, payload: Dict[str, Any], retained: bool,
                received: float, **extra: Any) -> Dict[str, Any]:
        rec = {"kind": kind, "topic": topic, "site": dev.site, "device": dev.device, "retained": retained,
               "received": iso_now(received), "received_ts": round(received, 6), "payload": payload}
        rec.update(extra)
        return rec

    def _event(self, topic: str, dev: Device, payload: Dict[str, Any], data: bytes, retained: bool,
               received: float) -> None:
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
            self.emit("%s  %-6s %-28s %-22s %5.2f  track %s%s" % (
                local_time(payload["ts"], "%Y-%m-%d %H:%M:%S"), "ALERT" if alert else "event",
                clean("%s/%s" % (dev.site, dev.device), 60), verdict, payload["confidence"], payload["track_id"],
                "  (retained)" if retained else ""))
        if alert:
            if self.args.bell:
                self.bell()
            if self.hooks is not None:
                self.hooks.submit(data, {"MASKWATCH_TOPIC": topic, "MASKWATCH_SITE": dev.site,
                                         "MASKWATCH_DEVICE": dev.device, "MASKWATCH_VERDICT": verdict,
                                         "MASKWATCH_EVENT_ID": eid,
                                         "MASKWATCH_CONFIDENCE": str(payload["confidence"])})
        if self.args.count and self.accepted >= self.args.count:
            self.done.set()

    def _status(self, topic: str, dev: Device, payload: Dict[str, Any], retained: bool, received: float) -> None:
        self.n["status"] += 1
        previous = dev.state
        dev.state = payload["state"]
        dev.state_time = parse_iso(payload["time"]) or received
        dev.backend = payload.get("backend")
        dev.model_id = payload.get("model_id")
        dev.degraded = list(payload.get("degraded") or [])
        if self.args.ha_discovery and self.publish is not None:
            self._announce(dev, payload)
        if self.args.json:
            self.emit_json(self._record("status", topic, dev, payload, retained, received))
        elif previous != dev.state:
            extra = []
            if dev.backend:
                extra.append("backend %s" % clean(dev.backend, 30))
            if dev.degraded:
                extra.append("degraded: %s" % clean(", ".join(str(d) for d in dev.degraded), 80))
            self.emit("%s  %-6s %-28s %-22s since %s%s%s" % (
                local_time(received, "%Y-%m-%d %H:%M:%S"), "STATUS", clean("%s/%s" % (dev.site, dev.device), 60),
                dev.state, local_time(dev.state_time, "%Y-%m-%d %H:%M:%S"),
                "  (%s)" % "; ".join(extra) if extra else "", "  (retained)" if retained else ""))

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
            out: Dict[str, Any] = {k: int(self.n[k]) for k in ("messages", "events", "alerts", "duplicates",
                                                               "malformed", "filtered", "status", "counts",
                                                               "stats")}
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
        return {"kind": "summary", "final": final, "time": iso_now(time.time()), "totals": self.totals(),
                "devices": devices}

    def summary_text(self, final: bool) -> str:
        with self.lock:
            devs = [self.devices[k] for k in sorted(self.devices)]
            states = collections.Counter(d.state or "unknown" for d in devs)
            head = "-- maskwatch %s %s: %d device%s (%s) --" % (
                "final summary" if final else "summary", local_time(time.time(), "%Y-%m-%d %H:%M:%S"), len(devs),
                "" if len(devs) == 1 else "s", ", ".join("%d %s" % (n, s) for s, n in sorted(states.items())) or "none")
            rows = [("SITE/DEVICE", "STATE", "SINCE", "EVENTS", "ALERTS", "LAST WINDOW", "PEOPLE", "COMPLIANCE",
                     "BAD")]
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
                rows.append((clean("%s/%s" % (d.site, d.device), 48), d.state or "?", local_time(d.state_time),
                             str(d.events), str(d.alerts), window, ctotal, rate, str(d.malformed)))
            overall = "%.1f%%" % (100.0 * compliant / people) if people else "-"
            rows.append(("all devices", "", "", str(sum(d.events for d in devs)), str(sum(d.alerts for d in devs)),
                         "", str(people), overall, str(sum(d.malformed for d in devs))))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        right = {3, 4, 6, 7, 8}
        lines = [head]
        for r in rows:
            lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        t = self.totals()
        tail = "events: %d unique, %d duplicates dropped; %d malformed messages ignored" % (
            t["events"], t["duplicates"], t["malformed"])
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


# -- MQTT --------------------------------------------------------------------------------------------------
def subscriptions(args: argparse.Namespace) -> List[str]:
    prefix = args.prefix.rstrip("/")
    sites = split_values(args.site) or ["+"]
    devices = split_values(args.device) or ["+"]
    subs = []
    for s in sites:
        for d in devices:
            base = "%s/%s/%s" % (prefix, s, d)
            if args.share:
                # shared: each message goes to one member of the group; status stays plain (retained,
                # and every consumer needs every device's availability)
                subs += ["$share/%s/%s/events" % (args.share, base), "$share/%s/%s/counts" % (args.share, base),
                         base + "/status"]
            else:
                subs.append(base + "/#")
    return subs


class Session:
    """The paho client: connect (errors become Fatal), subscribe on every (re)connect, watch the login."""

    def __init__(self, args: argparse.Namespace, monitor: Monitor, password: Optional[str]) -> None:
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.args, self.monitor = args, monitor
        self.where = "%s:%d" % (args.host, args.port)
        self.v5 = args.protocol == "5"
        kw: Dict[str, Any] = {}
        if not self.v5:
            kw["clean_session"] = not args.persistent
        client_id = args.client_id or "edge-alerts-%s-%d" % (socket.gethostname().split(".")[0][:40], os.getpid())
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311, **kw)
        self.client.connect_timeout = args.connect_timeout
        self.client.reconnect_delay_set(1, 30)
        if args.username:
            self.client.username_pw_set(args.username, password)
        if args.tls:
            self.client.tls_set_context(tls_context(args))
            if args.insecure:
                self.client.tls_insecure_set(True)
        if args.debug:
            import logging

            logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
            self.client.enable_logger()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.ha_refused = False
        if args.ha_discovery:
            monitor.publish = lambda topic, body: self.client.publish(topic, body, qos=1, retain=True)
        self.connack = threading.Event()
        self.fatal: Optional[str] = None
        self.connected = False
        self.ever_connected = False
        self.closing = False
        self.pending_subs: Dict[int, List[str]] = {}
        self.refused_subs: List[str] = []
        self.granted_subs = 0

    # paho callbacks (network thread) -------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            hint = ""
            if not self.args.username:
                hint = "; it needs a user name and password (--username, --password-file)"
            self.fatal = "broker %s refused the login (%s)%s" % (self.where, reason_code, hint)
            self.connack.set()
            return
        self.connected = True
        if self.ever_connected:
            self.monitor.warn("reconnected to broker %s" % self.where)
        self.ever_connected = True
        topics = subscriptions(self.args)
        result, mid = client.subscribe([(t, 1) for t in topics])
        if result != self.mqtt.MQTT_ERR_SUCCESS:
            self.fatal = "could not subscribe on broker %s (%s)" % (self.where, self.mqtt.error_string(result))
        else:
            self.pending_subs[mid] = topics
        self.connack.set()

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties=None) -> None:
        topics = self.pending_subs.pop(mid, [])
        refused = [(t, rc) for t, rc in zip(topics, reason_code_list) if rc.is_failure]
        self.granted_subs = len(topics) - len(refused)
        for t, rc in refused:
            self.monitor.warn("broker %s refused the subscription %s (%s)" % (self.where, t, rc))
        if topics and len(refused) == len(topics):
            self.fatal = "broker %s refused every subscription (%s): may this account read %s/#?" % (
                self.where, refused[0][1], self.args.prefix)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not self.connack.is_set():
            self.fatal = ("broker %s closed the connection before answering the login (%s)%s" % (
                self.where, reason_code, "" if self.args.tls else "; is it a TLS port? (--ca / --tls)"))
            self.connack.set()
        elif self.connected and not self.closing:
            self.monitor.warn("lost the connection to broker %s (%s); reconnecting" % (self.where, reason_code))
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        if reason_code is not None and reason_code.is_failure and not self.ha_refused:
            self.ha_refused = True
            self.monitor.warn("broker %s refused the Home Assistant discovery messages (%s): the account needs "
                              "write access to %s/# (add-controlroom.sh --ha)" % (self.where, reason_code,
                                                                                  self.args.ha_prefix))

    def _on_message(self, client, userdata, msg) -> None:
        self.monitor.on_message(msg.topic, msg.payload, bool(msg.retain))

    # lifecycle -----------------------------------------------------------------------------------------
    def connect(self) -> None:
        a = self.args
        kw: Dict[str, Any] = {}
        if self.v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            kw["clean_start"] = not a.persistent
            if a.persistent:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                kw["properties"] = props
        try:
            self.client.connect(a.host, a.port, keepalive=a.keepalive, **kw)
        except socket.gaierror as exc:
            raise Fatal("cannot resolve the broker host %r (%s)" % (a.host, exc.strerror or exc))
        except ssl.SSLCertVerificationError as exc:
            raise Fatal("TLS: the certificate of broker %s is not trusted (%s)%s" % (
                self.where, exc.verify_message or exc.reason or exc,
                "" if a.ca else "; pass the broker's CA with --ca"))
        except ssl.SSLError as exc:
            raise Fatal("TLS handshake with broker %s failed (%s)" % (self.where, exc.reason or exc))
        except ConnectionRefusedError:
            raise Fatal("cannot connect to broker %s (connection refused)" % self.where)
        except (socket.timeout, TimeoutError):
            raise Fatal("cannot connect to broker %s (timed out after %.0f s)" % (self.where, a.connect_timeout))
        except OSError as exc:
            raise Fatal("cannot connect to broker %s (%s)" % (self.where, exc.strerror or exc))
        except ValueError as exc:  # paho: bad host/port arguments
            raise Fatal("cannot connect to broker %s (%s)" % (self.where, exc))
        self.client.loop_start()
        if not self.connack.wait(a.connect_timeout):
            raise Fatal("broker %s did not answer the login within %.0f s" % (self.where, a.connect_timeout))
        if self.fatal:
            raise Fatal(self.fatal)

    def close(self) -> None:
        self.closing = True
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001
            pass
        self.client.loop_stop()


def tls_context(args: argparse.Namespace) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
        if args.cert:
            ctx.load_cert_chain(args.cert, args.key)
    except FileNotFoundError as exc:
        raise Fatal("TLS: %s not found" % (exc.filename or exc))
    except (ssl.SSLError, OSError) as exc:
        raise Fatal("TLS: cannot load the CA/certificate files (%s)" % (getattr(exc, "reason", None) or exc))
    return ctx


# -- command line -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Live view of maskwatch alerts, device status and compliance from every entrance.",
        epilog="examples:\n"
               "  edge-alerts --host broker.example --ca ca.crt --username controlroom --password-file pw\n"
               "  edge-alerts ... --json --all-events | jq .\n"
               "  edge-alerts ... --share alerts --exec 'notify-send maskwatch'   (MQTT 5 load sharing)\n"
               "exit status: 0 done, 1 cannot connect / login refused, 2 usage, 3 --timeout before --count")
    c = p.add_argument_group("broker")
    c.add_argument("--host", default=os.environ.get("MASKWATCH_MQTT_HOST", "localhost"),
                   help="broker host (default $MASKWATCH_MQTT_HOST or localhost)")
    c.add_argument("--port", type=int, help="broker port (default 8883 with TLS, else 1883)")
    c.add_argument("--protocol", choices=("3.1.1", "5"), help="MQTT version (default 3.1.1; 5 with --share)")
    c.add_argument("--client-id", help="MQTT client id (default edge-alerts-<host>-<pid>)")
    c.add_argument("--persistent", action="store_true",
                   help="keep the session on the broker (needs --client-id): QoS 1 events sent while "
                        "edge-alerts was away are delivered when it comes back")
    c.add_argument("--keepalive", type=int, default=30, help="seconds (default 30)")
    c.add_argument("--connect-timeout", type=float, default=10.0, help="seconds (default 10)")
    c.add_argument("--username", default=os.environ.get("MASKWATCH_MQTT_USERNAME"),
                   help="default $MASKWATCH_MQTT_USERNAME")
    c.add_argument("--password", help="visible to other users in `ps`: prefer --password-file or "
                                      "$MASKWATCH_MQTT_PASSWORD")
    c.add_argument("--password-file", help="file holding the password (first line)")
    c.add_argument("--tls", action="store_true", help="TLS with the system's CA store (implied by --ca/--cert)")
    c.add_argument("--ca", help="CA certificate (PEM) that signed the broker's certificate")
    c.add_argument("--cert", help="client certificate (PEM), if the broker asks for one")
    c.add_argument("--key", help="client key (PEM)")
    c.add_argument("--insecure", action="store_true", help="do not check the broker's host name against its "
                                                           "certificate (the chain is still verified)")
    s = p.add_argument_group("what to show")
    s.add_argument("--prefix", default="maskwatch", help="topic prefix (default maskwatch)")
    s.add_argument("--share", metavar="GROUP", help="MQTT 5 shared subscription: consumers with the same GROUP "
                                                    "split the events and counts between them")
    s.add_argument("--site", action="append", help="only this site (repeatable, or comma-separated)")
    s.add_argument("--device", action="append", help="only this device (repeatable, or comma-separated)")
    s.add_argument("--verdict", action="append",
                   help="show events with this verdict (repeatable; %s)" % ", ".join(VERDICTS))
    s.add_argument("--all-events", action="store_true", help="show every event, not just non-compliant ones")
    s.add_argument("--json", action="store_true", help="one JSON object per line on stdout (events, status, "
                                                       "counts, summaries)")
    s.add_argument("--summary-s", type=float, default=60.0,
                   help="print the summary table every this many seconds (default 60; 0: only at exit)")
    s.add_argument("--max-bytes", type=int, default=262144, help="ignore larger payloads (default 262144)")
    s.add_argument("--no-jsonschema", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--ha-discovery", action="store_true",
                   help="publish retained Home Assistant MQTT discovery configs for every kiosk seen (the account "
                        "needs write access to <ha-prefix>/#: add-controlroom.sh --ha)")
    s.add_argument("--ha-prefix", default="homeassistant", help="Home Assistant discovery prefix (default "
                                                               "homeassistant)")
    a = p.add_argument_group("on alerts")
    a.add_argument("--bell", action="store_true", help="ring the terminal bell on each alert")
    a.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                   help="run CMD for each alert (split like a shell command line, not run by a shell) with the "
                        "event's JSON on stdin and MASKWATCH_SITE/_DEVICE/_VERDICT/_EVENT_ID/_TOPIC in the "
                        "environment; its output goes to stderr")
    a.add_argument("--exec-jobs", type=int, default=2, help="hooks running at once (default 2)")
    a.add_argument("--exec-queue", type=int, default=100, help="alerts waiting for a hook before new ones are "
                                                               "dropped (default 100)")
    a.add_argument("--exec-timeout", type=float, default=30.0, help="kill a hook after this many seconds "
                                                                    "(default 30)")
    e = p.add_argument_group("when to stop")
    e.add_argument("--count", type=int, help="exit after this many shown events")
    e.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.add_argument("--debug", action="store_true", help="log the MQTT traffic and show tracebacks")
    p.add_argument("--version", action="version", version="%(prog)s " + _version())
    return p


def _version() -> str:
    try:
        from . import __version__

        return __version__
    except ImportError:
        return "?"


_LEVEL = re.compile(r"^[^/+#\x00]+$")


def check_args(args: argparse.Namespace) -> Optional[str]:
    """Fill defaults that depend on other options; the password (or None). Raises UsageError."""
    for name in ("site", "device"):
        for v in split_values(getattr(args, name)):
            if not _LEVEL.match(v):
                raise UsageError("--%s %r: one topic level, without / + or #" % (name, v))
    for v in split_values(args.verdict):
        if v not in VERDICTS:
            raise UsageError("--verdict %r: choose from %s" % (v, ", ".join(VERDICTS)))
    if not args.ha_prefix.strip("/") or any(ch in args.ha_prefix for ch in "+#"):
        raise UsageError("--ha-prefix %r: a topic prefix without + or #" % args.ha_prefix)
    if not args.prefix.strip("/") or any(ch in args.prefix for ch in "+#"):
        raise UsageError("--prefix %r: a topic prefix without + or #" % args.prefix)
    if args.share:
        if not _LEVEL.match(args.share):
            raise UsageError("--share %r: a group name without / + or #" % args.share)
        if args.protocol == "3.1.1":
            raise UsageError("--share needs MQTT 5 (shared subscriptions): drop --protocol 3.1.1")
        args.protocol = "5"
    args.protocol = args.protocol or "3.1.1"
    if args.persistent and not args.client_id:
        raise UsageError("--persistent needs a fixed --client-id (the broker keeps the session under it)")
    if args.key and not args.cert:
        raise UsageError("--key goes with --cert")
    args.tls = bool(args.tls or args.ca or args.cert)
    if args.port is None:
        args.port = 8883 if args.tls else 1883
    for name in ("count", "exec_jobs", "exec_queue", "max_bytes"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError("--%s must be at least 1" % name.replace("_", "-"))
    for name in ("timeout", "summary_s", "exec_timeout", "connect_timeout"):
        v = getattr(args, name)
        if v is not None and v < 0:
            raise UsageError("--%s must not be negative" % name.replace("_", "-"))
    if args.exec_cmd:
        try:
            cmd = shlex.split(args.exec_cmd)
        except ValueError as exc:
            raise UsageError("--exec: %s" % exc)
        if not cmd:
            raise UsageError("--exec: empty command")
        if shutil.which(cmd[0]) is None:
            raise UsageError("--exec: %s: command not found" % cmd[0])
    password = args.password
    if password is None and args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError("cannot read --password-file %s (%s)" % (args.password_file,
                                                                     getattr(exc, "strerror", None) or exc))
    if password is None:
        password = os.environ.get("MASKWATCH_MQTT_PASSWORD") if args.username else None
    if password is not None and not args.username:
        raise UsageError("a password needs --username")
    return password


def run(args: argparse.Namespace, password: Optional[str]) -> int:
    monitor = Monitor(args)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old_term = signal.signal(signal.SIGTERM, on_signal)
    session = Session(args, monitor, password)
    status = EXIT_OK
    try:
        session.connect()
        start = time.monotonic()
        next_summary = start + args.summary_s if args.summary_s else None
        while not (stop.is_set() or monitor.done.is_set()):
            if session.fatal:
                raise Fatal(session.fatal)
            now = time.monotonic()
            if args.timeout is not None and now - start >= args.timeout:
                if args.count:
                    monitor.warn("--timeout %g s expired after %d of --count %d events"
                                 % (args.timeout, monitor.accepted, args.count))
                    status = EXIT_TIMEOUT
                break
            if next_summary is not None and now >= next_summary:
                monitor.summary(final=False)
                next_summary = now + args.summary_s
            stop.wait(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
        signal.signal(signal.SIGTERM, old_term)
        if monitor.hooks is not None:
            monitor.hooks.close(args.exec_timeout)
    if monitor.broken_pipe:
        return status
    monitor.summary(final=True)
    return status


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        password = check_args(args)
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise Fatal("paho-mqtt is not installed (pip install 'paho-mqtt>=2')")
        return run(args, password)
    except UsageError as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return EXIT_USAGE
    except Fatal as exc:
        sys.stderr.write("%s: error: %s\n" % (PROG, exc))
        return EXIT_FATAL
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001
        if args.debug:
            raise
        sys.stderr.write("%s: error: internal error: %s: %s (run with --debug for a traceback)\n"
                         % (PROG, type(exc).__name__, exc))
        return EXIT_FATAL
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, OSError, ValueError):
            # stdout's reader went away (e.g. `| head`): don't let the interpreter complain at exit
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
