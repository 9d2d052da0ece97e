"""The MQTT session of the control room's programs: TLS, login, subscriptions on every (re)connect.

Connection problems become :class:`controlroom.common.Fatal` with one line saying what to fix.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import threading
from typing import Any, Dict, List, Optional

from .common import Fatal, UsageError, split_values

SESSION_EXPIRY_S = 7 * 86400


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
                subs += [
                    "$share/%s/%s/events" % (args.share, base),
                    "$share/%s/%s/counts" % (args.share, base),
                    base + "/status",
                ]
            else:
                subs.append(base + "/#")
    return subs


class Session:
    """The paho client: connect (errors become Fatal), subscribe on every (re)connect, watch the login."""

    def __init__(
        self,
        args: argparse.Namespace,
        monitor: Any,
        password: Optional[str],
        topics: Optional[List[str]] = None,
        manual_ack: bool = False,
        name: str = "edge-alerts",
    ) -> None:
        """`monitor` has warn(str) and on_message(topic, payload, retained); with manual_ack=True it has
        on_mqtt_message(msg) instead and acknowledges each message itself (:meth:`ack`) once it is stored."""
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.args, self.monitor = args, monitor
        self.where = "%s:%d" % (args.host, args.port)
        self.v5 = args.protocol == "5"
        kw: Dict[str, Any] = {}
        if not self.v5:
            kw["clean_session"] = not args.persistent
        client_id = args.client_id or "%s-%s-%d" % (name, socket.gethostname().split(".")[0][:40], os.getpid())
        self.topics = topics
        self.manual_ack = manual_ack
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            manual_ack=manual_ack,
            **kw,
        )
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
        if hasattr(self.monitor, "reconnected"):
            self.monitor.reconnected()  # packet ids of the previous connection must not be acknowledged now
        if self.ever_connected:
            self.monitor.warn("reconnected to broker %s" % self.where)
        self.ever_connected = True
        topics = self.topics or subscriptions(self.args)
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
                self.where,
                refused[0][1],
                self.args.prefix,
            )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not self.connack.is_set():
            self.fatal = "broker %s closed the connection before answering the login (%s)%s" % (
                self.where,
                reason_code,
                "" if self.args.tls else "; is it a TLS port? (--ca / --tls)",
            )
            self.connack.set()
        elif self.connected and not self.closing:
            self.monitor.warn("lost the connection to broker %s (%s); reconnecting" % (self.where, reason_code))
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        if reason_code is not None and reason_code.is_failure and not self.ha_refused:
            self.ha_refused = True
            self.monitor.warn(
                "broker %s refused the Home Assistant discovery messages (%s): the account needs "
                "write access to %s/# (add-controlroom.sh --ha)" % (self.where, reason_code, self.args.ha_prefix)
            )

    def _on_message(self, client, userdata, msg) -> None:
        if self.manual_ack:
            self.monitor.on_mqtt_message(msg)
        else:
            self.monitor.on_message(msg.topic, msg.payload, bool(msg.retain))

    def ack(self, mid: int, qos: int) -> None:
        """PUBACK a QoS 1 message (manual_ack): call only after it is safely stored. Thread-safe."""
        if qos > 0:
            self.client.ack(mid, qos)

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
            raise Fatal(
                "TLS: the certificate of broker %s is not trusted (%s)%s"
                % (
                    self.where,
                    exc.verify_message or exc.reason or exc,
                    "" if a.ca else "; pass the broker's CA with --ca",
                )
            )
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
def add_broker_args(p: argparse.ArgumentParser, prog: str) -> None:
    """The broker options shared by edge-alerts and edge-controlroom serve."""
    c = p.add_argument_group("broker")
    c.add_argument(
        "--host",
        default=os.environ.get("MASKWATCH_MQTT_HOST", "localhost"),
        help="broker host (default $MASKWATCH_MQTT_HOST or localhost)",
    )
    c.add_argument("--port", type=int, help="broker port (default 8883 with TLS, else 1883)")
    c.add_argument("--protocol", choices=("3.1.1", "5"), help="MQTT version (default 3.1.1; 5 with --share)")
    c.add_argument("--client-id", help="MQTT client id (default %s-<host>-<pid>)" % prog)
    c.add_argument(
        "--persistent",
        action="store_true",
        help="keep the session on the broker (needs --client-id): QoS 1 events sent while "
        "%s was away are delivered when it comes back" % prog,
    )
    c.add_argument("--keepalive", type=int, default=30, help="seconds (default 30)")
    c.add_argument("--connect-timeout", type=float, default=10.0, help="seconds (default 10)")
    c.add_argument(
        "--username", default=os.environ.get("MASKWATCH_MQTT_USERNAME"), help="default $MASKWATCH_MQTT_USERNAME"
    )
    c.add_argument(
        "--password", help="visible to other users in `ps`: prefer --password-file or $MASKWATCH_MQTT_PASSWORD"
    )
    c.add_argument("--password-file", help="file holding the password (first line)")
    c.add_argument("--tls", action="store_true", help="TLS with the system's CA store (implied by --ca/--cert)")
    c.add_argument("--ca", help="CA certificate (PEM) that signed the broker's certificate")
    c.add_argument("--cert", help="client certificate (PEM), if the broker asks for one")
    c.add_argument("--key", help="client key (PEM)")
    c.add_argument(
        "--insecure",
        action="store_true",
        help="do not check the broker's host name against its certificate (the chain is still verified)",
    )


def check_broker_args(args: argparse.Namespace) -> Optional[str]:
    """TLS/port defaults and the password (or None) of the broker options; raises UsageError."""
    if args.persistent and not args.client_id:
        raise UsageError("--persistent needs a fixed --client-id (the broker keeps the session under it)")
    if args.key and not args.cert:
        raise UsageError("--key goes with --cert")
    args.tls = bool(args.tls or args.ca or args.cert)
    if args.port is None:
        args.port = 8883 if args.tls else 1883
    password = args.password
    if password is None and args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                "cannot read --password-file %s (%s)" % (args.password_file, getattr(exc, "strerror", None) or exc)
            )
    if password is None:
        password = os.environ.get("MASKWATCH_MQTT_PASSWORD") if args.username else None
    if password is not None and not args.username:
        raise UsageError("a password needs --username")
    return password
