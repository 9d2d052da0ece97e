#!/usr/bin/env python3
"""Load benchmark for the central broker setup: N simulated kiosks -> shipped mosquitto (TLS + ACL) -> edge-alerts.

    .venv/bin/python benchmarks/broker_load.py [--kiosks 200] [--rate 1] [--duration 60] [--note "..."]

What it does (all on 127.0.0.1, in a throwaway directory):

1. makes a CA + server certificate with firmware-config/broker/make-certs.sh, a control-room account
   with add-controlroom.sh, and one account per kiosk with add-device.sh (user "<site>.<device>",
   may write only under maskwatch/<site>/<device>/#);
2. starts mosquitto with the shipped firmware-config/broker/mosquitto.conf (only the paths and the
   listener port rewritten);
3. connects every kiosk over TLS with its own credentials and a retained last will, as edge-maskd
   does (paho-mqtt, MQTT 3.1.1, QoS 1), driven by a few threads each running a selector over many
   clients (paho's external-loop API: loop_read / loop_write / loop_misc);
4. starts the control room, the real `edge-alerts --json --all-events` (subscribed to maskwatch/+/+/#
   over TLS as `controlroom`), waits until it has seen every kiosk's retained status;
5. every kiosk publishes one event per 1/rate seconds for `duration` seconds (phases spread evenly),
   built with edge.messages.event() at send time, so the payload's `ts` is the send time;
6. end-to-end latency = edge-alerts' receive time (`received_ts`, taken in its on_message) - `ts`.
   It checks that every event_id sent arrives, and reports msgs/s, latency percentiles, CPU use.

Results (with a description of the machine) go to benchmarks/results/broker_load-<arch>-<N>core.json.
This is a benchmark, not a test: it takes about duration + 15 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import os
import platform
import resource
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BROKER_FILES = ROOT / "firmware-config" / "broker"
SHIPPED_DIR = "/etc/mosquitto/maskwatch"
VENV_BIN = Path(sys.executable).parent


def log(msg: str) -> None:
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_conf(broker_dir: Path, port: int, workdir: Path) -> str:
    lines = []
    if os.geteuid() == 0:
        lines.append("user root")  # the throwaway files belong to root: don't drop to user mosquitto
    lines += [
        "persistence false",
        "log_dest file %s" % (workdir / "mosquitto.log"),
        "log_type error",
        "log_type warning",
    ]
    for line in (BROKER_FILES / "mosquitto.conf").read_text().splitlines():
        if line.strip() == "listener 8883":
            line = "listener %d 127.0.0.1" % port
        lines.append(line.replace(SHIPPED_DIR, str(broker_dir)))
    return "\n".join(lines) + "\n"


def run_script(name: str, *args: Any) -> str:
    p = subprocess.run(["bash", str(BROKER_FILES / name)] + [str(a) for a in args], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit("%s failed: %s" % (name, p.stderr))
    return p.stdout


# -- CPU accounting ---------------------------------------------------------------------------------------------
CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return float("nan")


def busy_processes(sample_s: float = 1.0, top: int = 4) -> List[Dict[str, Any]]:
    """Processes using the most CPU right now (a 1 s sample of /proc), to describe a busy machine honestly."""

    def snap() -> Dict[int, tuple]:
        out = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    raw = (d / "stat").read_text()
                    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
                    f = raw.rsplit(")", 1)[1].split()
                    out[int(d.name)] = (comm, int(f[11]) + int(f[12]))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    a = snap()
    time.sleep(sample_s)
    b = snap()
    rows = []
    for pid, (comm, t) in b.items():
        if pid in a and pid != os.getpid():
            pct = 100.0 * (t - a[pid][1]) / CLK / sample_s
            if pct >= 5:
                rows.append({"pid": pid, "comm": comm, "cpu_pct": round(pct, 1)})
    return sorted(rows, key=lambda r: -r["cpu_pct"])[:top]


def machine() -> Dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    osname = platform.platform()
    try:
        rel = dict(l.split("=", 1) for l in Path("/etc/os-release").read_text().splitlines() if "=" in l)
        osname = rel.get("PRETTY_NAME", osname).strip('"')
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1048576.0, 1)
    except OSError:
        pass
    import paho.mqtt

    mosq = subprocess.run(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"], capture_output=True, text=True
    ).stdout.splitlines()
    ossl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "arch": platform.machine(),
        "memory_gb": mem,
        "os": osname,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "mosquitto": mosq[0] if mosq else "?",
        "openssl": ossl,
    }


# -- the kiosks --------------------------------------------------------------------------------------------------
class Kiosk:
    __slots__ = ("site", "device", "client", "sock", "sent", "acked", "next_t", "inflight")

    def __init__(self, site: str, device: str) -> None:
        self.site, self.device = site, device
        self.client = None
        self.sock = None
        self.sent = self.acked = 0
        self.next_t = 0.0
        self.inflight = 0


class Driver(threading.Thread):
    """Drives many paho clients from one thread with a selector (paho's external event loop)."""

    def __init__(self, idx: int, kiosks: List[Kiosk], port: int, ca: Path, secrets: Path, rate: float) -> None:
        super().__init__(name="driver-%d" % idx, daemon=True)
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.kiosks, self.port, self.ca, self.secrets, self.rate = kiosks, port, ca, secrets, rate
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.publish_until = 0.0
        self.publish_from = float("inf")
        self.stop = threading.Event()
        self.sent_ids: List[str] = []
        self.connected = 0
        self.errors: List[str] = []
        self.connack = threading.Event()

    def connect_all(self) -> None:
        from edge import messages

        mqtt = self.mqtt
        for k in self.kiosks:
            user = "%s.%s" % (k.site, k.device)
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id="maskwatch-%s-%s" % (k.site, k.device),
                protocol=mqtt.MQTTv311,
                clean_session=True,
            )
            c.username_pw_set(user, (self.secrets / ("%s.password" % user)).read_text().strip())
            c.tls_set(ca_certs=str(self.ca))
            c.max_inflight_messages_set(20)
            t = time.time()
            offline = messages.status("offline", site=k.site, device=k.device, t=t)
            c.will_set("maskwatch/%s/%s/status" % (k.site, k.device), messages.dumps(offline), qos=1, retain=True)
            c.user_data_set(k)
            c.on_connect = self._on_connect
            c.on_publish = self._on_publish
            k.client = c
            c.connect("127.0.0.1", self.port, keepalive=30)
            k.sock = c.socket()
            self.sel.register(k.sock, selectors.EVENT_READ, k)

    def _on_connect(self, client, k, flags, rc, props=None) -> None:
        from edge import messages

        if rc.is_failure:
            self.errors.append("%s.%s: %s" % (k.site, k.device, rc))
            return
        self.connected += 1
        online = messages.status("online", site=k.site, device=k.device, t=time.time(), backend="benchmark")
        client.publish("maskwatch/%s/%s/status" % (k.site, k.device), messages.dumps(online), qos=1, retain=True)

    def _on_publish(self, client, k, mid, rc, props=None) -> None:
        k.acked += 1

    def _publish_event(self, k: Kiosk) -> None:
        from edge import messages
        from edge.types import Decision

        t = time.time()
        label = "without_mask" if (k.sent % 5 == 0) else "with_mask"
        d = Decision(
            track_id=k.sent + 1,
            label=label,
            confidence=0.9,
            probs={label: 0.9},
            box=(100, 80, 220, 230),
            frame_index=k.sent * 10,
            time=t,
            votes=5,
            first_seen=t - 1.0,
        )
        ev = messages.event(d, site=k.site, device=k.device, model_id="bench", source="camera0")
        info = k.client.publish("maskwatch/%s/%s/events" % (k.site, k.device), messages.dumps(ev), qos=1)
        if info.rc == self.mqtt.MQTT_ERR_SUCCESS:
            k.sent += 1
            self.sent_ids.append(ev["event_id"])
        else:
            self.errors.append("publish rc %s" % info.rc)

    def run(self) -> None:
        schedule: List[tuple] = []
        scheduled = False
        last_misc = 0.0
        while not self.stop.is_set():
            now = time.time()
            if not scheduled and now >= self.publish_from:
                for i, k in enumerate(self.kiosks):
                    heapq.heappush(schedule, (k.next_t, i))
                scheduled = True
            while schedule and schedule[0][0] <= now:
                t, i = heapq.heappop(schedule)
                k = self.kiosks[i]
                if t < self.publish_until:
                    self._publish_event(k)
                    heapq.heappush(schedule, (t + 1.0 / self.rate, i))
            timeout = 0.02
            if schedule:
                timeout = max(0.0, min(timeout, schedule[0][0] - time.time()))
            for key, _ in self.sel.select(timeout):
                k = key.data
                c = k.client
                c.loop_read()
                while c.socket() is not None and hasattr(c.socket(), "pending") and c.socket().pending():
                    c.loop_read()
            for k in self.kiosks:
                if k.client.want_write():
                    k.client.loop_write()
            if now - last_misc >= 1.0:
                last_misc = now
                for k in self.kiosks:
                    k.client.loop_misc()

    def disconnect_all(self) -> None:
        for k in self.kiosks:
            try:
                k.client.disconnect()
                k.client.loop_write()
            except Exception:  # noqa: BLE001
                pass


# -- the control room --------------------------------------------------------------------------------------------
class ControlRoom:
    def __init__(self, args: List[str]) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "edge-alerts")] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.status = 0
        self.events: Dict[str, float] = {}
        self.dups = 0
        self.summary: Optional[Dict[str, Any]] = None
        self.stderr: List[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            o = json.loads(line)
            with self.lock:
                if o["kind"] == "status":
                    self.status += 1
                elif o["kind"] == "event":
                    eid = o["payload"]["event_id"]
                    if eid in self.events:
                        self.dups += 1
                    self.events[eid] = (o["received_ts"] - o["payload"]["ts"], o["received_ts"])
                elif o["kind"] == "summary" and o.get("final"):
                    self.summary = o

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())


def pct(values: List[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    i = min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))
    return v[i]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kiosks", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1.0, help="events per second per kiosk (default 1)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of publishing (default 60)")
    ap.add_argument("--threads", type=int, default=2, help="kiosk driver threads (default 2)")
    ap.add_argument("--note", action="append", default=[], help="added to the JSON (e.g. what else runs)")
    ap.add_argument("--out", help="default benchmarks/results/broker_load-<arch>-<cores>core.json")
    ap.add_argument("--keep", action="store_true", help="keep the throwaway directory")
    a = ap.parse_args(argv)
    for tool in ("mosquitto_passwd", "openssl"):
        if not shutil.which(tool):
            raise SystemExit("%s is needed (apt-get install mosquitto openssl)" % tool)
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    out = (
        Path(a.out)
        if a.out
        else ROOT
        / "benchmarks"
        / "results"
        / ("broker_load-%s-%dcore.json" % (platform.machine(), os.cpu_count() or 0))
    )
    work = Path(tempfile.mkdtemp(prefix="maskwatch-broker-load-"))
    bdir = work / "maskwatch"
    log("machine: sampling what else runs on it")
    others = busy_processes()
    load_before = os.getloadavg()

    t0 = time.monotonic()
    run_script("make-certs.sh", "-d", bdir / "certs", "127.0.0.1", "localhost")
    run_script("add-controlroom.sh", "-d", bdir, "-H", "127.0.0.1")
    kiosks = [Kiosk("site%02d" % (i // 20), "kiosk-%03d" % i) for i in range(a.kiosks)]
    for k in kiosks:
        run_script("add-device.sh", "-d", bdir, "-H", "127.0.0.1", k.site, k.device)
    accounts_s = time.monotonic() - t0
    log("%d kiosk accounts + control room + certificates in %.1f s" % (a.kiosks, accounts_s))

    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(shipped_conf(bdir, port, work))
    broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cr: Optional[ControlRoom] = None
    drivers: List[Driver] = []
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if broker.poll() is not None:
                    raise SystemExit("mosquitto exited: %s" % broker.stderr.read().decode())
                time.sleep(0.05)
        ca, secrets = bdir / "certs" / "ca.crt", bdir / "secrets"
        per = (a.kiosks + a.threads - 1) // a.threads
        drivers = [Driver(i, kiosks[i * per : (i + 1) * per], port, ca, secrets, a.rate) for i in range(a.threads)]
        t1 = time.monotonic()
        for d in drivers:
            d.connect_all()
            d.start()
        deadline = time.monotonic() + 60
        while sum(d.connected for d in drivers) < a.kiosks and time.monotonic() < deadline:
            if any(d.errors for d in drivers):
                raise SystemExit("kiosk login failed: %s" % [e for d in drivers for e in d.errors][:3])
            time.sleep(0.05)
        connect_s = time.monotonic() - t1
        log("%d kiosks connected over TLS in %.1f s" % (sum(d.connected for d in drivers), connect_s))

        expected = int(round(a.kiosks * a.rate * a.duration))
        cr = ControlRoom(
            [
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ca",
                str(ca),
                "--username",
                "controlroom",
                "--password-file",
                str(secrets / "controlroom.password"),
                "--json",
                "--all-events",
                "--summary-s",
                "0",
                "--count",
                str(expected),
                "--timeout",
                str(a.duration + 60),
            ]
        )
        deadline = time.monotonic() + 30
        while cr.status < a.kiosks and time.monotonic() < deadline:
            time.sleep(0.05)
        if cr.status < a.kiosks:
            raise SystemExit("edge-alerts saw %d of %d retained statuses: %s" % (cr.status, a.kiosks, cr.stderr))
        log("edge-alerts is subscribed (saw all %d retained statuses); publishing for %.0f s" % (a.kiosks, a.duration))
        start = time.time() + 0.5
        for i, k in enumerate(kiosks):
            k.next_t = start + (i / float(a.kiosks)) / a.rate
        cpu0 = {
            "mosquitto": proc_cpu_s(broker.pid),
            "edge_alerts": proc_cpu_s(cr.proc.pid),
            "benchmark_process": resource.getrusage(resource.RUSAGE_SELF).ru_utime
            + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
        }
        for d in drivers:
            d.publish_until = start + a.duration
            d.publish_from = start
        time.sleep(max(0.0, start + a.duration - time.time()))
        wall = time.time() - start
        cpu1 = {
            "mosquitto": proc_cpu_s(broker.pid),
            "edge_alerts": proc_cpu_s(cr.proc.pid),
            "benchmark_process": resource.getrusage(resource.RUSAGE_SELF).ru_utime
            + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
        }
        sent_ids = [e for d in drivers for e in d.sent_ids]
        log("sent %d events; waiting for edge-alerts to receive them" % len(sent_ids))
        try:
            cr.proc.wait(30)
        except subprocess.TimeoutExpired:
            cr.proc.send_signal(signal.SIGTERM)
            cr.proc.wait(10)
        time.sleep(0.5)
        acked = sum(k.acked for k in kiosks)
        for d in drivers:
            d.stop.set()
            d.join(5)
            d.disconnect_all()
    finally:
        if cr is not None and cr.proc.poll() is None:
            cr.proc.kill()
        for d in drivers:
            d.stop.set()
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()

    got = cr.events
    missing = [e for e in sent_ids if e not in got]
    lat = [got[e][0] * 1000.0 for e in sent_ids if e in got]
    recv_times = sorted(v[1] for v in got.values())
    span = (recv_times[-1] - recv_times[0]) if len(recv_times) > 1 else float("nan")
    cpu = {k: round(100.0 * (cpu1[k] - cpu0[k]) / wall, 1) for k in cpu0}
    result = {
        "benchmark": "broker_load",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/broker_load.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "config": {
            "kiosks": a.kiosks,
            "rate_hz_per_kiosk": a.rate,
            "duration_s": a.duration,
            "driver_threads": a.threads,
            "mqtt": "3.1.1, QoS 1, TLS 1.2+ (own CA), one user/password per kiosk, retained status + last will",
            "broker": "mosquitto with firmware-config/broker/mosquitto.conf (paths and port rewritten), "
            "ACL from add-device.sh/add-controlroom.sh, on 127.0.0.1",
            "control_room": "edge-alerts --json --all-events (subprocess, TLS, jsonschema validation, dedup)",
            "latency": "edge-alerts receive time (on_message) minus the event's ts (set when the kiosk publishes, "
            "rounded to 1 ms by edge.messages); same host, same clock",
        },
        "results": {
            "events_sent": len(sent_ids),
            "events_acked_by_broker": acked - a.kiosks,
            "events_received_unique": sum(1 for e in sent_ids if e in got),
            "events_missing": len(missing),
            "duplicates_seen": cr.dups + (cr.summary or {}).get("totals", {}).get("duplicates", 0),
            "malformed": (cr.summary or {}).get("totals", {}).get("malformed"),
            "send_rate_msgs_s": round(len(sent_ids) / wall, 1),
            "receive_rate_msgs_s": round(len(got) / span, 1) if span == span and span > 0 else None,
            "latency_ms": {
                "p50": round(pct(lat, 50), 2),
                "p90": round(pct(lat, 90), 2),
                "p99": round(pct(lat, 99), 2),
                "max": round(max(lat), 2) if lat else None,
                "mean": round(sum(lat) / len(lat), 2) if lat else None,
            },
            "setup": {"accounts_s": round(accounts_s, 1), "tls_connect_all_s": round(connect_s, 2)},
            "cpu_pct_of_one_core_while_publishing": cpu,
            "cpu_note": "benchmark_process = the 200 simulated kiosks (TLS, paho) + reading edge-alerts' output",
        },
        "machine": dict(
            machine(),
            loadavg_before=[round(x, 2) for x in load_before],
            loadavg_after=[round(x, 2) for x in os.getloadavg()],
            other_busy_processes=others,
        ),
        "notes": a.note
        + [
            "acked counts the PUBACKs for events (the kiosks' retained 'online' statuses are subtracted)",
            "edge-alerts and mosquitto are single-threaded; the kiosks run in this process (Python GIL), so the "
            "whole run stays within 2 cores",
        ],
    }
    if cr.stderr:
        result["edge_alerts_stderr"] = cr.stderr[-10:]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    r = result["results"]
    log(
        "received %d/%d unique events (%d missing, %s duplicates); %.1f msgs/s; latency p50 %.1f ms, p99 %.1f ms"
        % (
            r["events_received_unique"],
            r["events_sent"],
            r["events_missing"],
            r["duplicates_seen"],
            r["receive_rate_msgs_s"] or 0,
            r["latency_ms"]["p50"],
            r["latency_ms"]["p99"],
        )
    )
    log("wrote %s" % out)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log("kept %s" % work)
    return 0 if not missing else 1


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
