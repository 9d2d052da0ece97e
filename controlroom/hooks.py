"""`--exec CMD` hooks run for alerts (edge-alerts), in worker threads with a bounded queue."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Tuple

from .common import clean


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
            self.warn(
                "--exec hook is busy (%d alerts queued): alert %s not handed to it"
                % (self.q.qsize(), env.get("MASKWATCH_EVENT_ID", "?"))
            )

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
                    proc = subprocess.Popen(
                        self.cmd, stdin=subprocess.PIPE, stdout=sys.stderr.fileno(), env=env, start_new_session=True
                    )
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
                        self.warn(
                            "--exec hook exited with status %d for alert %s"
                            % (proc.returncode, extra.get("MASKWATCH_EVENT_ID", "?"))
                        )
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
