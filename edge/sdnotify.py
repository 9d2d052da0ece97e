"""systemd's notify protocol (Type=notify, WatchdogSec) without a libsystemd dependency.

READY=1 is sent once the first frame has gone through the whole pipeline;
WATCHDOG=1 only while frames keep being processed, so a wedged camera or
detector makes systemd restart the service instead of it pretending to be fine.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Optional


class Notifier:
    def __init__(self, address: Optional[str] = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_s = int(usec) / 1e6 if usec and (not pid or pid == str(os.getpid())) else 0.0
        self.sock: Optional[socket.socket] = None
        if self.address:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.setblocking(False)  # a full notify queue must never wedge the frame loop
        self.last_status = ("", 0.0)
        self.last_ping = 0.0
        self.ready = False

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, msg: str) -> bool:
        if self.sock is None or not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        try:
            self.sock.sendto(msg.encode(), addr)
            return True
        except OSError:
            return False

    def notify_ready(self, status: str = "") -> None:
        if not self.ready:
            self.ready = True
            self.send("READY=1" + ("\nSTATUS=%s" % status if status else ""))

    def status(self, text: str, min_interval: float = 5.0) -> None:
        """STATUS= line for `systemctl status`; repeated text is sent at most every `min_interval` s."""
        now = time.monotonic()
        if text == self.last_status[0] and now - self.last_status[1] < min_interval:
            return
        self.last_status = (text, now)
        self.send("STATUS=%s" % text)

    def frame_processed(self, now: Optional[float] = None) -> None:
        """Call after each processed frame; pings at half the watchdog interval (or every 1 s without one)."""
        now = time.monotonic() if now is None else now
        period = self.watchdog_s / 2.0 if self.watchdog_s else 1.0
        if now - self.last_ping >= period:
            self.last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")
