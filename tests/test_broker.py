"""The shipped central-broker setup (firmware-config/broker/) on a real mosquitto on 127.0.0.1.

The broker runs the shipped mosquitto.conf with only its paths and its listener port rewritten;
certificates and accounts come from the shipped make-certs.sh / add-device.sh / add-controlroom.sh.
Also imported by test_alerts.py (ShippedBroker, shipped_conf, device_event, MqttProbe).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from conftest import ROOT, Mosquitto, free_port

mqtt = pytest.importorskip("paho.mqtt.client")

BROKER_FILES = ROOT / "firmware-config" / "broker"
SHIPPED_DIR = "/etc/mosquitto/maskwatch"
DEVICES = [("lobby", "k1"), ("lobby", "k2"), ("garage", "k1")]


# -- helpers shared with test_alerts.py -------------------------------------------------------------------
def shipped_conf(broker_dir: Path, port: int) -> str:
    """firmware-config/broker/mosquitto.conf with only the paths and the listener rewritten (never the rules)."""
    out = []
    listeners = 0
    for line in (BROKER_FILES / "mosquitto.conf").read_text().splitlines():
        if line.strip().startswith("listener "):
            assert line.strip() == "listener 8883", line
            line = "listener %d 127.0.0.1" % port
            listeners += 1
        out.append(line.replace(SHIPPED_DIR, str(broker_dir)))
    assert listeners == 1
    return "\n".join(out) + "\n"


def script(name: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(
        ["bash", str(BROKER_FILES / name)] + [str(a) for a in args], capture_output=True, text=True, timeout=60
    )
    if check and p.returncode != 0:
        raise AssertionError("%s %s failed (%d):\n%s%s" % (name, args, p.returncode, p.stdout, p.stderr))
    return p


def make_broker_dir(d: Path, devices=DEVICES) -> Path:
    """Certificates, a control-room account and device accounts, made by the shipped scripts."""
    script("make-certs.sh", "-d", d / "certs", "127.0.0.1", "localhost")
    script("add-controlroom.sh", "-d", d, "-H", "127.0.0.1")
    script("add-controlroom.sh", "-d", d, "-H", "127.0.0.1", "controlroom2")  # a second instance, own account
    for site, device in devices:
        script("add-device.sh", "-d", d, "-H", "127.0.0.1", site, device)
    return d


def device_event(
    site: str,
    device: str,
    label: str = "without_mask",
    event_id: Optional[str] = None,
    t: Optional[float] = None,
    track_id: int = 7,
) -> Dict:
    """A real event payload, built like the daemon builds it."""
    from edge import messages
    from edge.types import Decision

    t = time.time() if t is None else t
    d = Decision(
        track_id=track_id,
        label=label,
        confidence=0.93,
        probs={label: 0.93, "with_mask": 0.07} if label != "with_mask" else {"with_mask": 0.93, "without_mask": 0.07},
        box=(10, 20, 110, 140),
        frame_index=42,
        time=t,
        votes=5,
        first_seen=t - 1.5,
    )
    return messages.event(d, site=site, device=device, model_id="test-model", source="camera0", event_id=event_id)


class MqttProbe:
    """A paho client as a device or the control room would use it; records what happens."""

    def __init__(
        self,
        port: int,
        user: Optional[str] = None,
        password: Optional[str] = None,
        ca: Optional[Path] = None,
        v5: bool = True,
        client_id: Optional[str] = None,
        tls: bool = True,
        will: Optional[Tuple[str, bytes]] = None,
    ) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or "probe-%s-%d" % (user or "anon", id(self)),
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(ca_certs=str(ca) if ca else None)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.port = port
        self.connack = threading.Event()
        self.connect_rc = None
        self.acks: Dict[int, object] = {}
        self.subacks: List[object] = []
        self.messages: List[Tuple[str, bytes, bool]] = []
        self.disconnected = threading.Event()
        self.cond = threading.Condition()
        c = self.client
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_disconnect = lambda *a: self.disconnected.set()

    def _on_connect(self, client, userdata, flags, rc, props=None):
        self.connect_rc = rc
        self.connack.set()

    def _on_publish(self, client, userdata, mid, rc, props=None):
        with self.cond:
            self.acks[mid] = rc
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, rcs, props=None):
        with self.cond:
            self.subacks.extend(rcs)
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self.cond.notify_all()

    def start(self, expect_ok: bool = True) -> "MqttProbe":
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connack.wait(10), "no CONNACK"
        if expect_ok:
            assert not self.connect_rc.is_failure, str(self.connect_rc)
        return self

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False, timeout: float = 10):
        """Publish and (QoS 1) wait for the PUBACK; returns its reason code."""
        if isinstance(payload, dict):
            from edge import messages

            payload = messages.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return None
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.acks, timeout), "no PUBACK for %s" % topic
            return self.acks[info.mid]

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10):
        n = len(self.subacks)
        self.client.subscribe(topic, qos)
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.subacks) > n, timeout), "no SUBACK"
            return self.subacks[n]

    def wait_messages(self, n: int, timeout: float = 10) -> List[Tuple[str, bytes, bool]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


class ShippedBroker:
    def __init__(self, broker_dir: Path, workdir: Path) -> None:
        self.dir = broker_dir
        self.port = free_port()
        self.ca = broker_dir / "certs" / "ca.crt"
        self.mosquitto = Mosquitto(workdir, extra_conf=shipped_conf(broker_dir, self.port), port=self.port)

    def password(self, user: str) -> str:
        return (self.dir / "secrets" / ("%s.password" % user)).read_text().strip()

    def password_file(self, user: str) -> Path:
        return self.dir / "secrets" / ("%s.password" % user)

    def probe(self, user: Optional[str], **kw) -> MqttProbe:
        return MqttProbe(self.port, user, self.password(user) if user else None, ca=self.ca, **kw)

    def start(self) -> "ShippedBroker":
        self.mosquitto.start()
        return self

    def stop(self) -> None:
        self.mosquitto.stop()

    def log(self) -> str:
        return self.mosquitto.log.read_text(errors="replace") if self.mosquitto.log.exists() else ""


@pytest.fixture(scope="session")
def broker_dir(tmp_path_factory) -> Path:
    if not shutil.which("mosquitto_passwd") or not shutil.which("openssl"):
        pytest.fail("mosquitto_passwd and openssl are needed (apt-get install mosquitto openssl)")
    return make_broker_dir(tmp_path_factory.mktemp("broker") / "maskwatch")


@pytest.fixture
def shipped_broker(broker_dir, tmp_path):
    b = ShippedBroker(broker_dir, tmp_path).start()
    probes: List[MqttProbe] = []
    b.probes = probes
    yield b
    for p in probes:
        try:
            p.stop()
        except Exception:  # noqa: BLE001
            pass
    b.stop()


def started(broker: ShippedBroker, user: Optional[str], **kw) -> MqttProbe:
    p = broker.probe(user, **kw).start()
    broker.probes.append(p)
    return p


# -- the files themselves --------------------------------------------------------------------------------
def test_scripts_are_shellcheck_clean():
    sc = shutil.which("shellcheck")
    if not sc:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = sorted(str(p) for p in BROKER_FILES.glob("*.sh"))
    assert len(scripts) >= 4
    p = subprocess.run([sc, "-x"] + scripts, capture_output=True, text=True, cwd=str(BROKER_FILES))
    assert p.returncode == 0, p.stdout + p.stderr
    for s in scripts:
        text = Path(s).read_text()
        if not s.endswith("accounts.sh"):
            assert "set -euo pipefail" in text, s


def _directives(path: Path) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.setdefault(key, []).append(value.strip())
    return out


def test_shipped_config_rules():
    d = _directives(BROKER_FILES / "mosquitto.conf")
    assert d["listener"] == ["8883"]
    assert d["allow_anonymous"] == ["false"]
    assert d["require_certificate"] == ["false"]
    assert d["password_file"] == [SHIPPED_DIR + "/passwd"]
    assert d["acl_file"] == [SHIPPED_DIR + "/acl"]
    for k in ("certfile", "keyfile", "cafile"):
        assert d[k][0].startswith(SHIPPED_DIR + "/certs/")
    # the ACL template: deny by default, the control room only reads, no rule before the first `user`
    acl = [
        l.strip()
        for l in (BROKER_FILES / "acl").read_text().splitlines()
        if l.strip() and not l.strip().startswith("#")
    ]
    assert acl == ["user controlroom", "topic read maskwatch/#"]
    assert "pattern" not in " ".join(acl)


def test_add_device_is_idempotent_and_prints_a_valid_kiosk_config(tmp_path):
    d = tmp_path / "maskwatch"
    script("make-certs.sh", "-d", d / "certs", "127.0.0.1")
    kiosk = tmp_path / "kiosk"
    first = script("add-device.sh", "-d", d, "-H", "broker.example", "--kiosk-dir", kiosk, "hall", "door-2")
    pw = (d / "secrets" / "hall.door-2.password").read_text()
    again = script("add-device.sh", "-d", d, "-H", "broker.example", "--kiosk-dir", kiosk, "hall", "door-2")
    assert again.stdout == first.stdout
    assert (d / "secrets" / "hall.door-2.password").read_text() == pw
    acl = (d / "acl").read_text()
    assert acl.count("user hall.door-2\n") == 1
    assert "user hall.door-2\ntopic write maskwatch/hall/door-2/#\n" in acl
    assert [l.split(":")[0] for l in (d / "passwd").read_text().splitlines()] == ["hall.door-2"]
    assert oct((d / "secrets" / "hall.door-2.password").stat().st_mode & 0o777) == "0o600"
    rotated = script(
        "add-device.sh", "-d", d, "-H", "broker.example", "--kiosk-dir", kiosk, "--rotate", "hall", "door-2"
    )
    assert (d / "secrets" / "hall.door-2.password").read_text() != pw
    assert rotated.stdout == first.stdout
    assert (d / "acl").read_text() == acl
    # the snippet is a valid edge-maskd config once the two files are on the kiosk
    kiosk.mkdir()
    shutil.copy(d / "secrets" / "hall.door-2.password", kiosk / "mqtt-password")
    shutil.copy(d / "certs" / "ca.crt", kiosk / "broker-ca.crt")
    cfg_file = tmp_path / "kiosk.yaml"
    cfg_file.write_text(first.stdout + "source:\n  url: entrance.mp4\n")
    from edge.config import load_config, mqtt_password

    cfg = load_config(cfg_file)
    assert (cfg.site, cfg.device) == ("hall", "door-2")
    m = cfg.mqtt
    assert (m.host, m.port, m.username) == ("broker.example", 8883, "hall.door-2")
    assert m.tls.enabled and m.tls.ca == str(kiosk / "broker-ca.crt")
    assert mqtt_password(cfg) == (d / "secrets" / "hall.door-2.password").read_text().strip()
    # names that would break the topic or the "<site>.<device>" user name are refused
    for bad in (("ha/ll", "d"), ("hall", "d+"), ("a.b", "c"), ("hall", "#"), ("", "x"), ("h all", "x")):
        p = script("add-device.sh", "-d", d, *bad, check=False)
        assert p.returncode != 0 and "error" in p.stderr, bad
    assert (d / "acl").read_text() == acl
    p = script("add-controlroom.sh", "-d", d, "a.b", check=False)
    assert p.returncode != 0


def test_make_certs_san_and_chain(tmp_path):
    d = tmp_path / "certs"
    script("make-certs.sh", "-d", d, "127.0.0.1", "broker.example")
    ca_before = (d / "ca.crt").read_bytes()
    text = subprocess.run(
        ["openssl", "x509", "-in", str(d / "server.crt"), "-noout", "-text"], capture_output=True, text=True, check=True
    ).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:broker.example" in text
    assert "TLS Web Server Authentication" in text
    # re-issuing keeps the CA (kiosks keep trusting the broker)
    script("make-certs.sh", "-d", d, "127.0.0.1", "broker.example", "10.0.0.5")
    assert (d / "ca.crt").read_bytes() == ca_before
    subprocess.run(
        ["openssl", "verify", "-CAfile", str(d / "ca.crt"), str(d / "server.crt")], check=True, capture_output=True
    )
    script("make-certs.sh", "-d", d, "--client", "lobby.k1")
    subprocess.run(
        ["openssl", "verify", "-CAfile", str(d / "ca.crt"), str(d / "client-lobby.k1.crt")],
        check=True,
        capture_output=True,
    )
    assert oct((d / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert script("make-certs.sh", "-d", d, "bad host!", check=False).returncode != 0


# -- the rules, enforced by a real mosquitto running the shipped config ---------------------------------
@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_anonymous_and_wrong_passwords_are_refused(shipped_broker, v5):
    anon = shipped_broker.probe(None, v5=v5).start(expect_ok=False)
    shipped_broker.probes.append(anon)
    assert anon.connect_rc.is_failure
    assert anon.connect_rc.value in (5, 135), str(anon.connect_rc)  # not authorized
    bad = MqttProbe(shipped_broker.port, "lobby.k1", "not-the-password", ca=shipped_broker.ca, v5=v5)
    bad.start(expect_ok=False)
    shipped_broker.probes.append(bad)
    assert bad.connect_rc.is_failure
    # a known device's password does not open another account
    swapped = MqttProbe(
        shipped_broker.port, "lobby.k2", shipped_broker.password("lobby.k1"), ca=shipped_broker.ca, v5=v5
    ).start(expect_ok=False)
    shipped_broker.probes.append(swapped)
    assert swapped.connect_rc.is_failure


def test_device_may_publish_only_under_its_own_prefix(shipped_broker):
    watch = started(shipped_broker, "controlroom")
    assert not watch.subscribe("maskwatch/#").is_failure
    k1 = started(shipped_broker, "lobby.k1")
    own = device_event("lobby", "k1")
    assert k1.publish("maskwatch/lobby/k1/events", own).value == 0
    forged = [
        ("maskwatch/lobby/k2/events", device_event("lobby", "k2"), False),
        ("maskwatch/garage/k1/events", device_event("garage", "k1"), False),
        ("maskwatch/lobby/k1x/events", device_event("lobby", "k1x"), False),
        (
            "maskwatch/lobby/k2/status",
            {
                "schema_version": 1,
                "type": "status",
                "state": "offline",
                "site": "lobby",
                "device": "k2",
                "time": "2024-01-01T00:00:00.000Z",
            },
            True,
        ),
        ("maskwatch/lobby/events", device_event("lobby", "k1"), False),
        ("other/topic", b"x", False),
    ]
    for topic, payload, retain in forged:
        rc = k1.publish(topic, payload, retain=retain)
        assert rc.value == 135, (topic, str(rc))  # MQTT 5 PUBACK: Not authorized
    marker = device_event("lobby", "k1")
    assert k1.publish("maskwatch/lobby/k1/events", marker).value == 0
    got = watch.wait_messages(2)
    time.sleep(0.3)
    got = [m[0] for m in watch.messages]
    assert got == ["maskwatch/lobby/k1/events", "maskwatch/lobby/k1/events"], got
    assert "Denied PUBLISH" in shipped_broker.log()


def test_mqtt311_device_cannot_inject_either(shipped_broker):
    """MQTT 3.1.1 has no negative PUBACK: the broker acknowledges and drops; nobody receives it."""
    watch = started(shipped_broker, "controlroom")
    watch.subscribe("maskwatch/#")
    k2 = started(shipped_broker, "lobby.k2", v5=False)
    k2.publish("maskwatch/lobby/k1/events", device_event("lobby", "k1"))
    k2.publish("maskwatch/lobby/k2/events", device_event("lobby", "k2"))
    msgs = watch.wait_messages(1)
    time.sleep(0.3)
    assert [m[0] for m in watch.messages] == ["maskwatch/lobby/k2/events"], msgs


def test_devices_cannot_read(shipped_broker):
    spy = started(shipped_broker, "lobby.k1")
    for t in ("maskwatch/#", "maskwatch/lobby/k1/#", "#"):
        spy.subscribe(t)  # mosquitto 2.0 grants the SUBSCRIBE but delivers nothing the ACL does not allow
    watch = started(shipped_broker, "controlroom")
    watch.subscribe("maskwatch/#")
    k2 = started(shipped_broker, "lobby.k2")
    assert k2.publish("maskwatch/lobby/k2/events", device_event("lobby", "k2")).value == 0
    assert spy.publish("maskwatch/lobby/k1/events", device_event("lobby", "k1")).value == 0
    assert len(watch.wait_messages(2)) == 2
    time.sleep(0.3)
    assert spy.messages == []


def _vanish(broker: ShippedBroker, user: str, will_topic: str) -> None:
    """Connect with a last will, then drop the TCP connection without DISCONNECT (the broker sends the will)."""
    p = broker.probe(user, will=(will_topic, b'{"schema_version":1,"type":"status","state":"offline"}'))
    try:
        p.start(expect_ok=False)
    except AssertionError:
        pass  # a broker may also refuse such a CONNECT outright
    p.client.loop_stop()  # no reconnect, no DISCONNECT
    sock = p.client.socket()
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def test_forged_last_will_is_never_delivered(shipped_broker):
    watch = started(shipped_broker, "controlroom")
    watch.subscribe("maskwatch/+/+/status")
    _vanish(shipped_broker, "lobby.k1", "maskwatch/lobby/k1/status")  # its own: delivered (the control)
    assert [m[0] for m in watch.wait_messages(1, timeout=5)] == ["maskwatch/lobby/k1/status"]
    _vanish(shipped_broker, "lobby.k1", "maskwatch/lobby/k2/status")  # another device's: never
    time.sleep(1.0)
    assert [m[0] for m in watch.messages] == ["maskwatch/lobby/k1/status"]


def test_controlroom_reads_everything_and_publishes_nothing(shipped_broker):
    watch = started(shipped_broker, "controlroom")
    assert not watch.subscribe("maskwatch/+/+/#").is_failure
    other = started(shipped_broker, "controlroom2")
    for topic in ("maskwatch/lobby/k1/events", "maskwatch/lobby/k1/status", "maskwatch/x", "alerts/out", "$SYS/x"):
        rc = other.publish(topic, device_event("lobby", "k1"), retain=topic.endswith("status"))
        assert rc.value == 135, (topic, str(rc))
    for site, device in DEVICES:
        d = started(shipped_broker, "%s.%s" % (site, device))
        assert d.publish("maskwatch/%s/%s/events" % (site, device), device_event(site, device)).value == 0
    msgs = watch.wait_messages(3)
    time.sleep(0.3)
    assert sorted(m[0] for m in watch.messages) == sorted("maskwatch/%s/%s/events" % d for d in DEVICES), msgs


def test_shared_subscription_splits_events_between_controlroom_consumers(shipped_broker):
    a = started(shipped_broker, "controlroom")
    b = started(shipped_broker, "controlroom2")  # one account per instance: the broker forces client id = user
    for p in (a, b):
        assert not p.subscribe("$share/alerts/maskwatch/+/+/events").is_failure
    k1 = started(shipped_broker, "lobby.k1")
    ids = []
    for i in range(20):
        ev = device_event("lobby", "k1", track_id=i + 1)
        ids.append(ev["event_id"])
        assert k1.publish("maskwatch/lobby/k1/events", ev).value == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(a.messages) + len(b.messages) < 20:
        time.sleep(0.05)
    import json

    got_a = [json.loads(m[1])["event_id"] for m in a.messages]
    got_b = [json.loads(m[1])["event_id"] for m in b.messages]
    assert sorted(got_a + got_b) == sorted(ids)  # every event once, to one member of the group
    assert got_a and got_b


def test_tls_needs_the_generated_ca(shipped_broker):
    ok = started(shipped_broker, "lobby.k1")
    assert ok.connect_rc.value == 0
    # the system CA store does not know the broker's private CA
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="no-ca", protocol=mqtt.MQTTv5)
    c.username_pw_set("lobby.k1", shipped_broker.password("lobby.k1"))
    c.tls_set()
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect("127.0.0.1", shipped_broker.port)
    # another CA (another deployment's) is not trusted either
    other = shipped_broker.mosquitto.workdir / "other"
    script("make-certs.sh", "-d", other, "127.0.0.1")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="other-ca", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(other / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect("127.0.0.1", shipped_broker.port)
    # plain MQTT on the TLS port gets no CONNACK
    plain = shipped_broker.probe("lobby.k1", tls=False)
    plain.client.connect("127.0.0.1", shipped_broker.port)
    plain.client.loop_start()
    try:
        assert not plain.connack.wait(2)
    finally:
        plain.client.loop_stop()
    # the certificate names the broker: another name fails the host name check
    ctx = ssl.create_default_context(cafile=str(shipped_broker.ca))
    with socket.create_connection(("127.0.0.1", shipped_broker.port), timeout=5) as s:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(s, server_hostname="wrong.example")


def test_oversized_packets_are_dropped_by_the_broker(shipped_broker):
    watch = started(shipped_broker, "controlroom")
    watch.subscribe("maskwatch/#")
    k1 = started(shipped_broker, "lobby.k1")
    k1.client.publish("maskwatch/lobby/k1/events", b"x" * 300000, qos=1)
    assert k1.disconnected.wait(5)
    k2 = started(shipped_broker, "lobby.k2")
    assert k2.publish("maskwatch/lobby/k2/events", device_event("lobby", "k2")).value == 0
    watch.wait_messages(1)
    time.sleep(0.3)
    assert [m[0] for m in watch.messages] == ["maskwatch/lobby/k2/events"]


def test_broker_reload_picks_up_a_new_device(shipped_broker):
    """add-device.sh on a running broker + SIGHUP (systemctl reload): the new kiosk gets in."""
    import signal as _signal

    script("add-device.sh", "-d", shipped_broker.dir, "-H", "127.0.0.1", "annex", "k9")
    shipped_broker.mosquitto.proc.send_signal(_signal.SIGHUP)
    deadline = time.monotonic() + 5
    while True:
        p = shipped_broker.probe("annex.k9").start(expect_ok=False)
        shipped_broker.probes.append(p)
        if not p.connect_rc.is_failure or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not p.connect_rc.is_failure, str(p.connect_rc)
    assert not p.publish("maskwatch/annex/k9/events", device_event("annex", "k9")).is_failure
    assert p.publish("maskwatch/lobby/k1/events", device_event("lobby", "k1")).value == 135


# -- hardening: one kiosk cannot knock another offline ----------------------------------------------------------
@pytest.mark.parametrize("stolen_id", ["maskwatch-lobby-k1", "lobby.k1"])
def test_a_kiosk_cannot_take_over_another_kiosks_client_id(shipped_broker, stolen_id):
    """lobby.k2 logs in with its own account but lobby.k1's client id (the old default, or its user name): the
    shipped broker replaces the client id by the user name, so lobby.k1 stays connected and its will is not sent."""
    b = shipped_broker
    watcher = started(b, "controlroom")
    watcher.subscribe("maskwatch/lobby/k1/status")
    victim = started(
        b,
        "lobby.k1",
        client_id=stolen_id if stolen_id != "lobby.k1" else "maskwatch-lobby-k1",
        will=("maskwatch/lobby/k1/status", b'{"state":"offline"}'),
    )
    victim.publish("maskwatch/lobby/k1/status", b'{"state":"online"}', retain=True)
    watcher.wait_messages(1)
    for _ in range(3):
        attacker = b.probe("lobby.k2", client_id=stolen_id).start()
        time.sleep(0.3)
        attacker.stop()
    time.sleep(0.5)
    assert not victim.disconnected.is_set(), "the victim was disconnected by a client-id takeover"
    states = [json.loads(p)["state"] for t, p, r in watcher.messages]
    assert "offline" not in states, states
    # and the victim still publishes
    assert not victim.publish("maskwatch/lobby/k1/events", b"{}").is_failure
