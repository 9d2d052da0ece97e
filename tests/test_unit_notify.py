"""The daemon started as systemd/maskwatch.service starts it: READY=1 once frames flow, WATCHDOG=1 only while
they do (issue 8). The unit's own ExecStart= and Environment= are used; only the install prefix, the config
path and the variables systemd itself provides are mapped onto this test machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from test_install import unit_exec_and_env

from conftest import BIN, ROOT, SHIPPED_BUNDLE, free_port

UNIT = ROOT / "systemd" / "maskwatch.service"
WATCHDOG_USEC = 2_000_000  # 2 s here (the unit has 30 s): pings every 1 s while frames flow


def start_as_unit(tmp_path: Path, config_text: str):
    argv, env = unit_exec_and_env(UNIT)
    assert argv[0].endswith("/edge-maskd") and argv[1:3] == ["run", "--config"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text)
    argv = [str(BIN / "edge-maskd")] + argv[1:3] + [str(cfg)] + argv[4:]
    env["MASKWATCH_BUNDLE"] = str(SHIPPED_BUNDLE)  # the unit points at /opt/maskwatch/models/default
    state = tmp_path / "state"
    state.mkdir()
    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(0.1)
    full = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "MASKWATCH_CACHE": os.environ.get("MASKWATCH_CACHE", str(Path.home() / ".cache" / "maskwatch")),
        "NOTIFY_SOCKET": str(sock_path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "STATE_DIRECTORY": str(state),
    }
    full.update(env)
    proc = subprocess.Popen(argv, env=full, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "err.log", "w"))
    return proc, srv


def collect(proc, srv, until: float):
    msgs = []
    while proc.poll() is None and time.monotonic() < until:
        try:
            msgs.append((time.monotonic(), srv.recv(4096).decode()))
        except socket.timeout:
            pass
    return msgs


def test_unit_daemon_ready_and_watchdog_while_frames_flow(tmp_path, demo_clip, detector_dir, shipped_bundle):
    proc, srv = start_as_unit(tmp_path, "site: t\ndevice: d\nsource:\n  url: %s\n  realtime: true\n" % demo_clip)
    msgs = collect(proc, srv, time.monotonic() + 120)
    assert proc.wait(30) == 0, (tmp_path / "err.log").read_text()[-2000:]
    texts = [m for _, m in msgs]
    assert sum("READY=1" in m for m in texts) == 1
    first_ready = next(i for i, m in enumerate(texts) if "READY=1" in m)
    pings = [t for t, m in msgs if "WATCHDOG=1" in m]
    assert pings and all("WATCHDOG=1" not in m for m in texts[:first_ready])
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 10 and max(gaps) < WATCHDOG_USEC / 1e6  # never late while frames flow


def test_unit_daemon_stops_feeding_the_watchdog_when_frames_stop(tmp_path, detector_dir, shipped_bundle):
    # a camera that is not there: no frame is ever processed, so no READY and no WATCHDOG
    url = "rtsp://127.0.0.1:%d/none" % free_port()
    proc, srv = start_as_unit(tmp_path, "site: t\ndevice: d\nsource:\n  url: %s\n  reconnect_max_s: 0.5\n" % url)
    msgs = collect(proc, srv, time.monotonic() + 6)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    texts = [m for _, m in msgs]
    assert not any("WATCHDOG=1" in m or "READY=1" in m for m in texts), texts
    assert any("STATUS=" in m for m in texts)  # systemctl status still says what it is waiting for
